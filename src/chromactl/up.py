"""``chromactl up``: the local stack.

Starts the pip-installed Chroma on this machine, with its data in a directory
the user chooses, configured by files generated in a run directory beside the
data: ``chroma.yaml`` (the server's config) and ``chromactl.yaml`` (the same
chromactl config format the Helm chart renders). The stack is a list of
:class:`Process` started in order and stopped in reverse, so another component
(the gateway) is one more entry in :func:`plan`.

Nothing is created or changed before every check has passed: the port is free,
the data directory is writable, and its data is not from a newer Chroma.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import yaml

from chromactl.config import ChromaSettings, Settings
from chromactl.errors import ChromactlError

DEFAULT_DATA_DIR = Path(".chroma-data")
DEFAULT_PORT = 8000
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
SQLITE_FILE = "chroma.sqlite3"


class UpError(ChromactlError):
    """The stack cannot start with these settings; nothing was changed."""

    exit_code = 2


class StartError(ChromactlError):
    """A process of the stack failed to start or stopped on its own."""

    exit_code = 1


@dataclass(frozen=True)
class Process:
    """One process of the local stack."""

    name: str
    argv: list[str]
    #: Polled until it answers 200: the process is ready.
    health_url: str
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What ``up`` starts and what it tells the user."""

    data_dir: Path
    run_dir: Path
    url: str
    port: int
    processes: list[Process]
    files: dict[str, str]
    token: str | None = None
    ca: str | None = None


# --------------------------------------------------------------------------- checks


def run_dir_for(data_dir: Path) -> Path:
    """The generated files and logs live beside the data: ``<data>.run``."""
    return data_dir.with_name(data_dir.name + ".run")


def check_port_free(port: int, host: str = HOST) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: connections of a previous run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UpError(
                    f"port {port} on {host} is already in use; stop what uses it "
                    f"or choose another with --port"
                ) from None
            raise UpError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path("/")


def check_writable(data_dir: Path) -> None:
    """The data directory and the run directory beside it must be writable (or creatable)."""
    for path in (data_dir, run_dir_for(data_dir)):
        existing = _nearest_existing(path)
        if not existing.is_dir():
            raise UpError(f"cannot use {path}: {existing} exists and is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UpError(f"cannot write to {existing} (needed for {path}): permission denied "
                          f"or read-only file system; choose another --data-dir")
    db = data_dir / SQLITE_FILE
    if db.exists() and not os.access(db, os.R_OK | os.W_OK):
        raise UpError(f"{db} is not writable; choose another --data-dir")


_MIGRATION_NAME = re.compile(rb"\d{5}-[a-z0-9-]+\.sqlite\.sql")


def known_migrations() -> set[str]:
    """File names of the schema migrations the installed Chroma can apply.

    The Python package ships some as files; the 1.x server (the Rust bindings)
    embeds its own, which can be newer, so both are read.
    """
    known: set[str] = set()
    root = resources.files("chromadb") / "migrations"
    for directory in root.iterdir():
        if directory.is_dir():
            known |= {f.name for f in directory.iterdir() if f.name.endswith(".sqlite.sql")}
    spec = importlib.util.find_spec("chromadb_rust_bindings")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for binary in Path(location).glob("*.so"):
            known |= {m.decode() for m in _MIGRATION_NAME.findall(binary.read_bytes())}
    return known


def applied_migrations(db: Path) -> set[str]:
    """File names of the migrations recorded in ``chroma.sqlite3`` (opened read-only)."""
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UpError(f"cannot read {db}: {exc}") from None
    try:
        rows = conn.execute("SELECT dir, filename FROM migrations").fetchall()
    except sqlite3.Error as exc:
        raise UpError(f"{db} is not a Chroma database ({exc}); choose another --data-dir") from None
    finally:
        conn.close()
    return {str(filename) for _dir, filename in rows}


def check_data_version(data_dir: Path, version: str) -> None:
    db = data_dir / SQLITE_FILE
    if not db.is_file():
        return
    unknown = sorted(applied_migrations(db) - known_migrations())
    if unknown:
        listed = ", ".join(unknown)
        raise UpError(
            f"{data_dir} was written by a newer Chroma than the installed chromadb {version} "
            f"(unknown schema migrations: {listed}); upgrade chromadb "
            f"(pip install -U chromadb) or choose another --data-dir. Nothing was changed."
        )


# --------------------------------------------------------------------------- plan


def chroma_version() -> str:
    try:
        return metadata.version("chromadb")
    except metadata.PackageNotFoundError:
        raise UpError("chromadb is not installed: pip install 'chromactl[chroma]'") from None


def chroma_executable() -> str:
    beside = Path(sys.executable).with_name("chroma")
    if beside.exists():
        return str(beside)
    found = shutil.which("chroma")
    if found is None:
        raise UpError("the `chroma` command was not found: pip install 'chromactl[chroma]'")
    return found


def plan(data_dir: Path, port: int) -> Plan:
    """The processes, generated files and URL of the stack (nothing is started)."""
    data_dir = data_dir.expanduser().absolute()
    run_dir = run_dir_for(data_dir)
    version = chroma_version()
    chroma_config = run_dir / "chroma.yaml"
    chroma_url = f"http://{HOST}:{port}"
    server = {"port": port, "listen_address": HOST, "persist_path": str(data_dir),
              "allow_reset": False}
    settings = Settings(chroma=ChromaSettings(url=chroma_url, persist_path=data_dir,
                                              version=version))
    files = {
        "chroma.yaml": yaml.safe_dump(server, sort_keys=False),
        # The chromactl config format the chart renders; sections left out take their defaults.
        "chromactl.yaml": yaml.safe_dump({"chroma": settings.chroma.model_dump(mode="json")},
                                         sort_keys=False),
    }
    chroma = Process("chroma", [chroma_executable(), "run", str(chroma_config)],
                     f"{chroma_url}/api/v2/healthcheck")
    return Plan(data_dir, run_dir, chroma_url, port, [chroma], files)


def check(p: Plan) -> None:
    """Every check, before anything is created."""
    for process in p.processes:
        port = int(process.health_url.split(":")[2].split("/")[0])
        check_port_free(port)
    check_writable(p.data_dir)
    check_data_version(p.data_dir, chroma_version())


# --------------------------------------------------------------------------- run


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if chromactl dies without stopping us."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Stop(Exception):
    """A signal asked the stack to stop."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM,
                                                          signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _lock(run_dir: Path, data_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "up.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise UpError(f"another `chromactl up` (pid {lock.read().strip() or '?'}) "
                          f"is using {data_dir}") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    except OSError:
        return ""
    return "\n".join(f"  | {line}" for line in lines)


class Stack:
    """The running processes of a :class:`Plan`."""

    def __init__(self, p: Plan) -> None:
        self.plan = p
        self.procs: list[tuple[Process, subprocess.Popen[bytes], Path]] = []

    def log_path(self, process: Process) -> Path:
        return self.plan.run_dir / f"{process.name}.log"

    def start(self) -> None:
        for process in self.plan.processes:
            log_path = self.log_path(process)
            env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
            env |= process.env
            with log_path.open("ab") as log:
                proc = subprocess.Popen(process.argv, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True, preexec_fn=_die_with_parent)
            self.procs.append((process, proc, log_path))
            self._wait_ready(process, proc, log_path)

    def _wait_ready(self, process: Process, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                code = proc.poll()
                if code is not None:
                    raise StartError(f"{process.name} exited with code {code} while starting; "
                                     f"last lines of {log}:\n{_tail(log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(process.health_url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise StartError(f"{process.name} was not ready after "
                                     f"{READY_TIMEOUT_S:.0f}s; last lines of {log}:\n{_tail(log)}")
                time.sleep(0.2)

    def watch(self) -> None:
        """Return when a process stops on its own (an error); signals raise _Stop."""
        while True:
            for process, proc, log in self.procs:
                code = proc.poll()
                if code is not None:
                    raise StartError(f"{process.name} stopped (exit code {code}); "
                                     f"last lines of {log}:\n{_tail(log)}")
            time.sleep(0.5)

    def stop(self) -> None:
        for _process, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT_S)


def banner(p: Plan, version: str) -> str:
    host, port = HOST, p.port
    return "\n".join([
        f"Chroma {version} is running at {p.url}",
        f"  data: {p.data_dir}",
        f"  logs: {p.run_dir}",
        "",
        "Connect from Python:",
        "",
        "  import chromadb",
        f'  client = chromadb.HttpClient(host="{host}", port={port})',
        "  print(client.heartbeat())",
        "",
        "Press Ctrl-C to stop.",
    ])


def up(data_dir: Path, port: int, *, as_json: bool, out: IO[str] = sys.stdout,
       err: IO[str] = sys.stderr) -> None:
    """Check, start, report, and run until a signal; stop everything on the way out."""
    p = plan(data_dir, port)
    check(p)
    with _stop_on_signals():
        stack = Stack(p)
        try:
            with _lock(p.run_dir, p.data_dir):
                p.data_dir.mkdir(parents=True, exist_ok=True)
                for name, text in p.files.items():
                    (p.run_dir / name).write_text(text)
                print(f"starting Chroma on {p.url} (data in {p.data_dir}) ...", file=err,
                      flush=True)
                stack.start()
                if as_json:
                    print(json.dumps({"url": p.url, "token": p.token, "ca": p.ca}), file=out,
                          flush=True)
                else:
                    print(banner(p, chroma_version()), file=out, flush=True)
                stack.watch()
        except _Stop as stop:
            print(f"stopping ({stop}) ...", file=err, flush=True)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            stack.stop()
    print("stopped.", file=err, flush=True)
