"""``chromactl up``: the local stack.

Starts the pip-installed Chroma on this machine on a loopback port, and the chromactl
gateway in front of it on ``--port`` (token auth, metrics, optional TLS), as the chart runs
them in a pod. The data lives in a directory the user chooses; the generated files live in a
run directory beside it: ``chroma.yaml`` (the server's config), ``chromactl.yaml`` (the same
chromactl config format the Helm chart renders), ``token`` (mode 0600, made at the first start
and reused) and with ``--tls`` ``tls/`` (a local CA and a server certificate, reused). The
stack is a list of :class:`Process` started in order and stopped in reverse.

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
import ssl
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

from chromactl import chromadata, selfsigned
from chromactl.config import ChromaSettings, Settings
from chromactl.errors import ChromactlError
from chromactl.gateway.tokens import generate_token
from chromactl.localstack import HOST, LOCK_NAME, run_dir_for

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 20
SQLITE_FILE = chromadata.SQLITE_NAME


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
    #: How the health check verifies HTTPS: a CA file, or True for the system's CAs.
    verify: str | bool = True
    #: Ports it listens on (checked free before anything starts).
    ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What ``up`` starts and what it tells the user."""

    data_dir: Path
    run_dir: Path
    url: str
    port: int
    processes: list[Process]
    #: Generated files, relative to the run directory: path -> (text, mode).
    files: dict[str, tuple[str, int]]
    token: str | None = None
    ca: str | None = None
    metrics_url: str | None = None
    #: Where continuous backup ships the journal (and takes its base snapshots), if on.
    backup_target: str | None = None

    @property
    def header(self) -> str | None:
        """The header clients send, with the token."""
        return f"Authorization: Bearer {self.token}" if self.token else None

    @property
    def console_url(self) -> str:
        """The web console (``docs/console.md``): sign in with the token."""
        return f"{self.url}/console/"

    def report(self) -> dict[str, str | None]:
        """What ``--json`` prints and the banner shows."""
        return {
            "url": self.url,
            "console_url": self.console_url,
            "token": self.token,
            "header": self.header,
            "ca": self.ca,
            "metrics_url": self.metrics_url,
            "data_dir": str(self.data_dir),
            "logs": str(self.run_dir),
        } | ({"continuous_backup": self.backup_target} if self.backup_target else {})


# --------------------------------------------------------------------------- checks


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
            raise UpError(
                f"cannot write to {existing} (needed for {path}): permission denied "
                f"or read-only file system; choose another --data-dir"
            )
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
        return {filename for _dir, filename in chromadata.applied_migrations(db)}
    except sqlite3.Error as exc:
        raise UpError(f"{db} is not a Chroma database ({exc}); choose another --data-dir") from None


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


def free_loopback_port() -> int:
    """A port nothing listens on now (Chroma's, behind the gateway)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # not there (yet): check() says why if it matters
        return None
    except OSError as exc:
        raise UpError(f"cannot read {path}: {exc.strerror}; fix it or remove the file") from None


def load_or_make_token(run_dir: Path) -> str:
    """The token of an earlier run (``<run dir>/token``), else a new one (written by :func:`up`)."""
    old = _read(run_dir / "token")
    if old is not None and old.strip():
        return old.strip()
    return generate_token()


def load_or_make_tls(run_dir: Path) -> selfsigned.Pem:
    """The local CA and certificate of an earlier run, else new ones (still valid for 30 days)."""
    tls = run_dir / "tls"
    texts = [_read(tls / name) for name in ("ca.crt", "tls.crt", "tls.key")]
    if all(texts) and selfsigned.still_valid(str(texts[1])):
        return selfsigned.Pem(*(str(t) for t in texts))
    return selfsigned.generate(["localhost"], [HOST])


def plan(
    data_dir: Path,
    port: int,
    *,
    auth: bool = True,
    tls: bool = False,
    metrics_port: int | None = None,
    chroma_port: int | None = None,
    continuous_backup: str | None = None,
) -> Plan:
    """The processes, generated files and URLs of the stack (nothing is started or written).
    ``continuous_backup``: a target (path or URL) the gateway ships its journal to, with a
    base snapshot at start (docs/backup.md, "Continuous backup")."""
    data_dir = data_dir.expanduser().absolute()
    run_dir = run_dir_for(data_dir)
    version = chroma_version()
    chroma_port = chroma_port or free_loopback_port()
    metrics_port = metrics_port or free_loopback_port()
    chroma_url = f"http://{HOST}:{chroma_port}"
    scheme = "https" if tls else "http"
    # With TLS, the certificate names localhost (and 127.0.0.1).
    url = f"{scheme}://{'localhost' if tls else HOST}:{port}"
    server = {
        "port": chroma_port,
        "listen_address": HOST,
        "persist_path": str(data_dir),
        "allow_reset": False,
    }
    files: dict[str, tuple[str, int]] = {"chroma.yaml": (yaml.safe_dump(server, sort_keys=False), 0o644)}
    token = load_or_make_token(run_dir) if auth else None
    gateway: dict[str, object] = {
        "listen_address": HOST,
        "port": port,
        "metrics_port": metrics_port,
        "metrics_address": HOST,
        "auth": {"enabled": auth},
        "audit": {"file": str(run_dir / "audit.log")},
    }
    if token is not None:
        files["token"] = (token + "\n", 0o600)
        gateway["auth"] = {
            "enabled": True,
            "token": {
                "credentials": [{"name": "admin", "role": "admin", "token_file": str(run_dir / "token")}]
            },
        }
    ca: str | None = None
    if tls:
        pem = load_or_make_tls(run_dir)
        files |= {
            "tls/ca.crt": (pem.ca_crt, 0o644),
            "tls/tls.crt": (pem.tls_crt, 0o644),
            "tls/tls.key": (pem.tls_key, 0o600),
        }
        ca = str(run_dir / "tls" / "ca.crt")
        gateway["tls"] = {
            "enabled": True,
            "cert_file": str(run_dir / "tls" / "tls.crt"),
            "key_file": str(run_dir / "tls" / "tls.key"),
        }
    config = {
        "chroma": ChromaSettings(url=chroma_url, persist_path=data_dir, version=version).model_dump(
            mode="json"
        ),
        "log": {"format": "console", "level": "INFO"},
        "gateway": gateway,
    }
    target = ""
    if continuous_backup:
        target = continuous_backup if "://" in continuous_backup else str(Path(continuous_backup).absolute())
        config["backup"] = {"target": target, "continuous": {"enabled": True}}
    Settings.model_validate(config)  # the gateway reads the same file: fail here, not there
    files["chromactl.yaml"] = (yaml.safe_dump(config, sort_keys=False), 0o644)
    chroma = Process(
        "chroma",
        [chroma_executable(), "run", str(run_dir / "chroma.yaml")],
        f"{chroma_url}/api/v2/healthcheck",
        ports=(chroma_port,),
    )
    gw = Process(
        "gateway",
        [sys.executable, "-m", "chromactl", "gateway", "--config", str(run_dir / "chromactl.yaml")],
        f"{url}/api/v2/healthcheck",
        verify=ca or True,
        ports=(port, metrics_port),
    )
    return Plan(
        data_dir,
        run_dir,
        url,
        port,
        [chroma, gw],
        files,
        token,
        ca,
        f"http://{HOST}:{metrics_port}/metrics",
        target if continuous_backup else None,
    )


def check(p: Plan) -> None:
    """Every check, before anything is created."""
    for process in p.processes:
        for port in process.ports:
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

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _lock(run_dir: Path, data_dir: Path) -> Iterator[None]:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_NAME, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise UpError(
                f"another `chromactl up` (pid {lock.read().strip() or '?'}) is using {data_dir}"
            ) from None
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
                proc = subprocess.Popen(
                    process.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            self.procs.append((process, proc, log_path))
            self._wait_ready(process, proc, log_path)

    def _wait_ready(self, process: Process, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        verify = (
            ssl.create_default_context(cafile=process.verify)
            if isinstance(process.verify, str)
            else process.verify
        )
        with httpx.Client(timeout=2.0, trust_env=False, verify=verify) as client:
            while True:
                code = proc.poll()
                if code is not None:
                    raise StartError(
                        f"{process.name} exited with code {code} while starting; "
                        f"last lines of {log}:\n{_tail(log)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(process.health_url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise StartError(
                        f"{process.name} was not ready after "
                        f"{READY_TIMEOUT_S:.0f}s; last lines of {log}:\n{_tail(log)}"
                    )
                time.sleep(0.2)

    def watch(self) -> None:
        """Return when a process stops on its own (an error); signals raise _Stop."""
        while True:
            for process, proc, log in self.procs:
                code = proc.poll()
                if code is not None:
                    raise StartError(
                        f"{process.name} stopped (exit code {code}); last lines of {log}:\n{_tail(log)}"
                    )
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


def python_example(p: Plan) -> list[str]:
    """Lines of Python that connect to the stack (the banner's example)."""
    host = "localhost" if p.ca else HOST
    args = [f'host="{host}"', f"port={p.port}"]
    if p.ca:
        args.append("ssl=True")
    if p.token:
        args.append(f'headers={{"Authorization": "Bearer {p.token}"}}')
    if p.ca:
        args.append(f'settings=Settings(chroma_server_ssl_verify="{p.ca}")')
    lines = ["import chromadb"]
    if p.ca:
        lines.append("from chromadb.config import Settings")
    lines += [f"client = chromadb.HttpClient({', '.join(args)})", "print(client.heartbeat())"]
    return lines


def banner(p: Plan, version: str) -> str:
    info = [
        ("console", f"{p.console_url} (sign in with the token)" if p.token else p.console_url),
        ("token", p.token),
        ("header", p.header),
        ("ca", p.ca),
        ("metrics", p.metrics_url),
        ("data", str(p.data_dir)),
        ("logs", str(p.run_dir)),
        ("backup", f"continuous, to {p.backup_target}" if p.backup_target else None),
    ]
    width = max(len(k) for k, v in info if v)
    lines = [f"Chroma {version} is running at {p.url} (through the chromactl gateway)"]
    lines += [f"  {k + ':':<{width + 1}} {v}" for k, v in info if v]
    if p.token is None:
        lines.append("  WARNING: --no-auth: anyone who can reach the port can change the data")
    lines += ["", "Connect from Python:", ""]
    lines += [f"  {line}" for line in python_example(p)]
    lines += ["", "Press Ctrl-C to stop."]
    return "\n".join(lines)


def write_files(p: Plan) -> None:
    """The generated files, each written whole (then renamed) with its mode."""
    for name, (text, mode) in p.files.items():
        path = p.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)


def up(
    data_dir: Path,
    port: int,
    *,
    as_json: bool,
    auth: bool = True,
    tls: bool = False,
    metrics_port: int | None = None,
    continuous_backup: str | None = None,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
) -> None:
    """Check, start, report, and run until a signal; stop everything on the way out."""
    p = plan(
        data_dir, port, auth=auth, tls=tls, metrics_port=metrics_port, continuous_backup=continuous_backup
    )
    check(p)
    with _stop_on_signals():
        stack = Stack(p)
        try:
            with _lock(p.run_dir, p.data_dir):
                p.data_dir.mkdir(parents=True, exist_ok=True)
                write_files(p)
                print(
                    f"starting Chroma and the gateway on {p.url} (data in {p.data_dir}) ...",
                    file=err,
                    flush=True,
                )
                stack.start()
                if as_json:
                    print(json.dumps(p.report()), file=out, flush=True)
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
