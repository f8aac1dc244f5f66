"""``chromactl up``: real Chroma, real ports, bounded waits."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from chromactl.config import parse_config
from chromactl.up import plan, run_dir_for

CHROMACTL = str(Path(sys.executable).with_name("chromactl"))
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Up:
    proc: subprocess.Popen[str]
    port: int
    output: list[str]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, stderr = self.proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            _, stderr = self.proc.communicate(timeout=STOP_TIMEOUT_S)
            raise AssertionError(f"chromactl up did not stop on signal {sig}:\n{stderr}") from None
        return self.proc.returncode, stderr


def start_up(data_dir: Path, port: int, *extra: str, cwd: Path | None = None) -> Up:
    """Start ``chromactl up`` and read stdout until it reports ready (bounded)."""
    argv = [CHROMACTL, "up", "--port", str(port), *extra]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, start_new_session=True)
    up = Up(proc, port, [])
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    if not ready:
        up.stop(signal.SIGKILL)
        raise AssertionError("chromactl up printed nothing")
    while True:
        line = proc.stdout.readline()
        if not line:
            code, stderr = up.stop()
            raise AssertionError(f"chromactl up exited {code} before ready:\n{stderr}")
        up.output.append(line)
        if "--json" in extra or "Press Ctrl-C" in line:
            return up


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Up]]:
    """Every ``up`` a test starts is stopped at the end."""
    started: list[Up] = []
    yield started
    for up in started:
        if up.proc.poll() is None:
            up.stop()


def run_fail(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CHROMACTL, "up", *args], capture_output=True, text=True,
                          timeout=START_TIMEOUT_S, cwd=cwd)
    assert done.returncode != 0, done.stdout + done.stderr
    # The message is wrapped to the terminal width: compare with whitespace collapsed.
    done.stderr = " ".join(done.stderr.split())
    return done


def heartbeat(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=5).status_code


def add_and_count(url: str, add: bool) -> int:
    import chromadb

    host, port = url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    col = client.get_or_create_collection("up-test", embedding_function=None)
    if add:
        col.add(ids=["a", "b", "c"], embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return col.count()


def nobody_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# --------------------------------------------------------------------------- tests


def test_json_line_data_kept_across_runs_and_clean_stop(tmp_path: Path, running: list[Up]
                                                       ) -> None:
    data, port = tmp_path / "data", free_port()
    up = start_up(data, port, "--json")
    running.append(up)
    assert json.loads(up.output[-1]) == {"url": f"http://127.0.0.1:{port}", "token": None,
                                         "ca": None}
    assert add_and_count(f"http://127.0.0.1:{port}", add=True) == 3
    code, stderr = up.stop(signal.SIGINT)
    assert code == 0, stderr
    assert "stopped" in stderr
    assert nobody_listens(port)  # Chroma went away with it

    again = start_up(data, port, "--json")
    running.append(again)
    assert add_and_count(f"http://127.0.0.1:{port}", add=False) == 3
    code, _ = again.stop(signal.SIGTERM)
    assert code == 0
    assert nobody_listens(port)


def test_banner_example_works_and_default_data_dir(tmp_path: Path, running: list[Up]) -> None:
    port = free_port()
    up = start_up(None, port, cwd=tmp_path)  # type: ignore[arg-type]
    running.append(up)
    text = "".join(up.output)
    assert f"http://127.0.0.1:{port}" in text
    assert (tmp_path / ".chroma-data" / "chroma.sqlite3").exists()
    example = [line.strip() for line in text.splitlines() if line.startswith("  ")
               and not line.strip().startswith(("data:", "logs:"))]
    assert len(example) == 3 and example[0] == "import chromadb"
    done = subprocess.run([sys.executable, "-c", "\n".join(example)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()  # the heartbeat
    assert up.stop()[0] == 0


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_fail("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2
    assert f"port {port}" in done.stderr and "in use" in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_data_dir_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run_fail("--port", str(free_port()), "--data-dir", str(blocker / "data"))
    assert done.returncode == 2
    assert "not a directory" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_read_only_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    script = (f"mount --bind -o ro {tmp_path} {tmp_path} && "
              f"exec {CHROMACTL} up --port {free_port()} --data-dir {data}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                          text=True, timeout=START_TIMEOUT_S)
    assert done.returncode == 2, done.stderr
    assert "read-only" in done.stderr and str(data) in done.stderr.replace("\n", "")
    assert list(data.iterdir()) == [] and not run_dir_for(data).exists()


def _fresh_data(tmp_path: Path, running: list[Up]) -> Path:
    data, port = tmp_path / "data", free_port()
    up = start_up(data, port, "--json")
    running.append(up)
    assert up.stop()[0] == 0
    shutil.rmtree(run_dir_for(data))
    return data


def test_data_from_a_newer_chroma_is_refused_untouched(tmp_path: Path, running: list[Up]
                                                       ) -> None:
    data = _fresh_data(tmp_path, running)
    db = data / "chroma.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO migrations (dir, version, filename, sql, hash) "
                     "VALUES ('sysdb', 99, '00099-from-the-future.sqlite.sql', '', '')")
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    done = run_fail("--port", str(free_port()), "--data-dir", str(data))
    assert done.returncode == 2
    assert "newer Chroma" in done.stderr and "00099-from-the-future" in done.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not run_dir_for(data).exists()


def test_not_a_chroma_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    sqlite3.connect(data / "chroma.sqlite3").close()
    done = run_fail("--port", str(free_port()), "--data-dir", str(data))
    assert done.returncode == 2
    assert "not a Chroma database" in done.stderr


def test_second_up_on_the_same_data_is_refused(tmp_path: Path, running: list[Up]) -> None:
    data = tmp_path / "data"
    first = start_up(data, free_port(), "--json")
    running.append(first)
    done = run_fail("--port", str(free_port()), "--data-dir", str(data))
    assert done.returncode == 2
    assert "another `chromactl up`" in done.stderr
    assert heartbeat(first.port) == 200  # the first one is untouched


def test_generated_config_is_the_chart_format(tmp_path: Path) -> None:
    p = plan(tmp_path / "d", 8123)
    settings = parse_config(yaml.safe_load(p.files["chromactl.yaml"]))
    assert settings.chroma.url == "http://127.0.0.1:8123"
    assert settings.chroma.persist_path == (tmp_path / "d").absolute()
    server = yaml.safe_load(p.files["chroma.yaml"])
    assert server["persist_path"] == str((tmp_path / "d").absolute())
    assert server["port"] == 8123
    assert [proc.name for proc in p.processes] == ["chroma"]


def test_chroma_failing_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "chroma.sqlite3").mkdir(parents=True)  # passes the checks, Chroma cannot open it
    port = free_port()
    done = run_fail("--port", str(port), "--data-dir", str(data))
    assert done.returncode == 1
    assert "chroma exited with code" in done.stderr
    assert "unable to open database file" in done.stderr  # from Chroma's own log
    assert nobody_listens(port)
