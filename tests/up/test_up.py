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
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from chromactl.config import parse_config
from chromactl.localstack import run_dir_for
from chromactl.up import plan

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
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True
    )
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
    done = subprocess.run(
        [CHROMACTL, "up", *args], capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=cwd
    )
    assert done.returncode != 0, done.stdout + done.stderr
    # The message is wrapped to the terminal width: compare with whitespace collapsed.
    done.stderr = " ".join(done.stderr.split())
    return done


def heartbeat(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=5).status_code


def add_and_count(url: str, add: bool, token: str | None = None) -> int:
    import chromadb

    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    client = chromadb.HttpClient(host=host, port=int(port), headers=headers)
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


def test_json_line_token_and_data_kept_across_runs_and_clean_stop(tmp_path: Path, running: list[Up]) -> None:
    data, port = tmp_path / "data", free_port()
    up = start_up(data, port, "--json")
    running.append(up)
    report = json.loads(up.output[-1])
    token = report["token"]
    run_dir = run_dir_for(data.absolute())
    assert token.startswith("ck_") and report == {
        "url": f"http://127.0.0.1:{port}",
        "console_url": f"http://127.0.0.1:{port}/console/",
        "token": token,
        "header": f"Authorization: Bearer {token}",
        "ca": None,
        "metrics_url": report["metrics_url"],
        "data_dir": str(data.absolute()),
        "logs": str(run_dir),
    }
    # The token file: owner-only, the gateway's credential.
    assert (run_dir / "token").read_text().strip() == token
    assert (run_dir / "token").stat().st_mode & 0o777 == 0o600
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/api/v2/tenants/default_tenant", timeout=5).status_code == 401
    assert add_and_count(url, add=True, token=token) == 3
    metrics = httpx.get(report["metrics_url"], timeout=5).text
    assert "chromactl_gateway" in metrics
    # The console: the printed address, signed in with the printed token, shows the collection.
    with httpx.Client(base_url=url, timeout=10) as browser:
        assert browser.get(report["console_url"]).headers["location"].startswith("/console/sign-in")
        assert browser.post("/console/sign-in", data={"method": "token", "token": token}).status_code == 200
        home = browser.get(report["console_url"]).text
        assert "default_database" in home
        collections = browser.get("/console/t/default_tenant/d/default_database/").text
        assert "up-test" in collections
        records = browser.get("/console/t/default_tenant/d/default_database/c/up-test/").text
        assert all(f"<code>{i}</code>" in records for i in "abc")
    code, stderr = up.stop(signal.SIGINT)
    assert code == 0, stderr
    assert "stopped" in stderr
    assert nobody_listens(port)  # the gateway (and Chroma) went away with it

    again = start_up(data, port, "--json")
    running.append(again)
    assert json.loads(again.output[-1])["token"] == token  # reused, not regenerated
    assert add_and_count(url, add=False, token=token) == 3
    code, _ = again.stop(signal.SIGTERM)
    assert code == 0
    assert nobody_listens(port)


def test_banner_example_works_and_default_data_dir(tmp_path: Path, running: list[Up]) -> None:
    port = free_port()
    up = start_up(None, port, cwd=tmp_path)  # type: ignore[arg-type]
    running.append(up)
    text = "".join(up.output)
    assert f"is running at http://127.0.0.1:{port}" in text
    assert (tmp_path / ".chroma-data" / "chroma.sqlite3").exists()
    token = (tmp_path / ".chroma-data.run" / "token").read_text().strip()
    assert f"  token:   {token}" in text and f"Authorization: Bearer {token}" in text
    assert "  metrics: http://127.0.0.1:" in text
    assert run_example(text).isdigit()  # the heartbeat, through the gateway with the token
    assert up.stop()[0] == 0


def run_example(banner: str) -> str:
    """Run the banner's Python example as printed; its output."""
    lines = banner.split("Connect from Python:")[1].split("Press Ctrl-C")[0].strip().splitlines()
    example = [line.strip() for line in lines]
    assert example[0] == "import chromadb" and example[-1] == "print(client.heartbeat())"
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(example)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_no_auth(tmp_path: Path, running: list[Up]) -> None:
    port = free_port()
    up = start_up(tmp_path / "data", port, "--no-auth")
    running.append(up)
    text = "".join(up.output)
    assert "token:" not in text and "WARNING: --no-auth" in text
    assert httpx.get(f"http://127.0.0.1:{port}/api/v2/tenants/default_tenant", timeout=5).status_code == 200
    assert run_example(text).isdigit()
    assert not (tmp_path / "data.run" / "token").exists()


def test_tls_local_ca_reused(tmp_path: Path, running: list[Up]) -> None:
    data, port = tmp_path / "data", free_port()
    up = start_up(data, port, "--tls")
    running.append(up)
    text = "".join(up.output)
    ca = run_dir_for(data.absolute()) / "tls" / "ca.crt"
    assert f"is running at https://localhost:{port}" in text and f"  ca:      {ca}" in text
    assert (ca.parent / "tls.key").stat().st_mode & 0o777 == 0o600
    assert run_example(text).isdigit()  # ssl=True, verified with the printed CA
    with pytest.raises(httpx.ConnectError):  # not trusted without the CA
        httpx.get(f"https://localhost:{port}/api/v2/heartbeat", timeout=5)
    first = ca.read_bytes()
    assert up.stop()[0] == 0
    again = start_up(data, port, "--tls", "--json")
    running.append(again)
    report = json.loads(again.output[-1])
    assert report["ca"] == str(ca) and ca.read_bytes() == first  # clients keep trusting it
    trusted = ssl.create_default_context(cafile=str(ca))
    assert httpx.get(f"https://localhost:{port}/api/v2/heartbeat", verify=trusted, timeout=5).is_success


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
    script = (
        f"mount --bind -o ro {tmp_path} {tmp_path} && "
        f"exec {CHROMACTL} up --port {free_port()} --data-dir {data}"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
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


def test_data_from_a_newer_chroma_is_refused_untouched(tmp_path: Path, running: list[Up]) -> None:
    data = _fresh_data(tmp_path, running)
    db = data / "chroma.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO migrations (dir, version, filename, sql, hash) "
            "VALUES ('sysdb', 99, '00099-from-the-future.sqlite.sql', '', '')"
        )
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
    p = plan(tmp_path / "d", 8123, chroma_port=8124, metrics_port=8125)
    settings = parse_config(yaml.safe_load(p.files["chromactl.yaml"][0]))
    assert settings.chroma.url == "http://127.0.0.1:8124"  # behind the gateway
    assert settings.chroma.persist_path == (tmp_path / "d").absolute()
    gw = settings.gateway
    assert (gw.listen_address, gw.port, gw.metrics_port) == ("127.0.0.1", 8123, 8125)
    assert gw.auth.token is not None
    assert gw.auth.token.credentials[0].token_file == run_dir_for((tmp_path / "d").absolute()) / "token"
    assert p.files["token"] == (p.token + "\n", 0o600)
    server = yaml.safe_load(p.files["chroma.yaml"][0])
    assert server["persist_path"] == str((tmp_path / "d").absolute())
    assert (server["port"], server["listen_address"]) == (8124, "127.0.0.1")
    assert [proc.name for proc in p.processes] == ["chroma", "gateway"]
    assert not (tmp_path / "d").exists() and not run_dir_for(tmp_path / "d").exists()


def test_chroma_failing_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "chroma.sqlite3").mkdir(parents=True)  # passes the checks, Chroma cannot open it
    port = free_port()
    done = run_fail("--port", str(port), "--data-dir", str(data))
    assert done.returncode == 1
    assert "chroma exited with code" in done.stderr
    assert "unable to open database file" in done.stderr  # from Chroma's own log
    assert nobody_listens(port)


def test_backup_and_restore_find_the_local_stack(tmp_path: Path, running: list[Up]) -> None:
    """In the directory of `make run`, `chromactl backup create --repo DIR` finds the running stack
    (its gateway holds writes, its token) and `chromactl restore --repo DIR` its stopped data."""
    port = free_port()
    up = start_up(None, port, cwd=tmp_path)  # type: ignore[arg-type]
    running.append(up)
    token = (tmp_path / ".chroma-data.run" / "token").read_text().strip()
    assert add_and_count(f"http://127.0.0.1:{port}", True, token) == 3
    backups = tmp_path / "backups"

    def chromactl(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CHROMACTL_CONFIG"}
        return subprocess.run(
            [CHROMACTL, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
        )

    made = chromactl("backup", "create", "--repo", str(backups), "--json")
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["outcome"] == "success"
    manifest = json.loads((backups / result["snapshot_id"] / "manifest.json").read_text())
    assert manifest["consistency"] == "online"  # through the running gateway's write hold
    refused = chromactl("restore", "--repo", str(backups))  # Chroma still runs on that directory
    assert refused.returncode == 2 and "is running on" in " ".join(refused.stderr.split())

    assert up.stop()[0] == 0
    restored = chromactl("restore", "--repo", str(backups), "--force", "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["target"] == str(tmp_path / ".chroma-data")
    again = start_up(None, port, cwd=tmp_path)  # type: ignore[arg-type]
    running.append(again)
    assert add_and_count(f"http://127.0.0.1:{port}", False, token) == 3


def test_continuous_backup_brings_back_every_write_after_ctrl_c(tmp_path: Path, running: list[Up]) -> None:
    """`chromactl up --continuous-backup DIR`: writes after the base snapshot are shipped, and
    `chromactl restore --to-time latest` brings them all back."""
    port, backups = free_port(), tmp_path / "backups"
    up = start_up(None, port, "--continuous-backup", "backups", cwd=tmp_path)  # type: ignore[arg-type]
    running.append(up)
    assert any(f"continuous, to {backups}" in line for line in up.output)
    # The base snapshot the stack takes as it starts; the writes below go to the journal.
    deadline = time.monotonic() + 60
    while not any(backups.glob("*/manifest.json")):
        assert time.monotonic() < deadline, "no base snapshot"
        time.sleep(0.2)
    token = (tmp_path / ".chroma-data.run" / "token").read_text().strip()
    assert add_and_count(f"http://127.0.0.1:{port}", True, token) == 3
    assert up.stop()[0] == 0
    env = {k: v for k, v in os.environ.items() if k != "CHROMACTL_CONFIG"}
    restored = subprocess.run(
        [CHROMACTL, "restore", "--from", str(backups), "--to-time", "latest", "--force", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["journal_entries"] >= 1  # the writes came from the journal
    again = start_up(None, port, cwd=tmp_path)  # type: ignore[arg-type]
    running.append(again)
    assert add_and_count(f"http://127.0.0.1:{port}", False, token) == 3


def test_an_online_backup_of_a_tls_stack_trusts_its_ca(tmp_path: Path, running: list[Up]) -> None:
    """With `chromactl up --tls`, `backup create` finds the https gateway and trusts the
    stack's own CA; against an https gateway named by hand, `--ca-file` is what makes it work."""
    port = free_port()
    running.append(start_up(None, port, "--tls", cwd=tmp_path))  # type: ignore[arg-type]
    run_dir = tmp_path / ".chroma-data.run"
    env = {k: v for k, v in os.environ.items() if k != "CHROMACTL_CONFIG"}
    env["ADMIN_TOKEN"] = (run_dir / "token").read_text().strip()

    def chromactl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CHROMACTL, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
        )

    found = chromactl("backup", "create", "--repo", str(tmp_path / "found"), "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["outcome"] == "success"

    # A config of its own (as on another machine): the gateway and its CA come from the flags.
    config = tmp_path / "backup.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "chroma": {"persist_path": str(tmp_path / ".chroma-data")},
                "backup": {"token_env": "ADMIN_TOKEN"},
            }
        )
    )
    by_hand = ["backup", "create", "--config", str(config), "--repo", str(tmp_path / "by-hand"), "--json"]
    gateway = ["--gateway", f"https://localhost:{port}"]
    untrusted = chromactl(*by_hand, *gateway)
    assert untrusted.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in json.loads(untrusted.stdout)["error"]
    trusted = chromactl(*by_hand, *gateway, "--ca-file", str(run_dir / "tls" / "ca.crt"))
    assert trusted.returncode == 0, trusted.stderr
    made = json.loads(trusted.stdout)
    manifest = json.loads((tmp_path / "by-hand" / made["snapshot_id"] / "manifest.json").read_text())
    assert manifest["consistency"] == "online"
