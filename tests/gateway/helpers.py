"""Shared helpers for the gateway tests: real Chroma, an in-thread gateway, certificates."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chromactl.config import Settings, parse_config
from chromactl.gateway.app import Gateway, build_gateway
from chromactl.gateway.server import serve

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
#: How Chroma 1.x's Python client names itself (httpx's own agent, on a request without a
#: Content-Type, is taken for a 0.5/0.6 client's: docs/legacy-clients.md).
CLIENT_1X_AGENT = "Chroma Python Client v1.5.9 (https://github.com/chroma-core/chroma)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what} after {timeout_s}s")


def _answers(url: str, **kw: Any) -> bool:
    try:
        return httpx.get(url, timeout=1.0, **kw).status_code < 500
    except httpx.HTTPError:
        return False


@dataclass
class Chroma:
    url: str
    process: subprocess.Popen[bytes]
    path: Path


@contextlib.contextmanager
def run_chroma(workdir: Path) -> Iterator[Chroma]:
    """A real Chroma 1.x server on 127.0.0.1 (``allow_reset: true``)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "chroma.yaml"
    config.write_text(
        f"port: {port}\nlisten_address: 127.0.0.1\npersist_path: {workdir / 'data'}\nallow_reset: true\n"
    )
    log = (workdir / "chroma.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "chroma"), "run", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/api/v2/heartbeat"), 60, "Chroma to start")
        yield Chroma(url, proc, workdir)
    finally:
        stop_process(proc)
        log.close()


def chroma_0x_venv(version: str) -> Path:
    """The venv of Chroma ``version`` (0.4.14, 0.5.23 or 0.6.3: ``make legacy-chroma``)."""
    found = ROOT / ".venvs" / f"chroma-{version}"
    assert (found / "bin" / "python").exists(), f"{found} is missing: make legacy-chroma"
    return found


def chroma_0x_python(version: str) -> Path:
    """The Python of Chroma ``version``'s venv (its client, server and tests)."""
    return chroma_0x_venv(version) / "bin" / "python"


@contextlib.contextmanager
def run_chroma_0x(version: str, workdir: Path) -> Iterator[Chroma]:
    """Chroma ``version``'s own server on 127.0.0.1 (``chromadb.app`` under uvicorn, as its
    image ran it), persistent, reset allowed."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
    env |= {
        "IS_PERSISTENT": "TRUE",
        "PERSIST_DIRECTORY": str(workdir / "data"),
        "ALLOW_RESET": "TRUE",
        "ANONYMIZED_TELEMETRY": "False",
    }
    python = chroma_0x_python(version)
    argv = ["-m", "uvicorn", "chromadb.app:app", "--host", "127.0.0.1", "--port", str(port)]
    log = (workdir / "chroma.log").open("wb")
    proc = subprocess.Popen([str(python), *argv], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    api = "v1" if version.startswith("0.4") else "v2"
    try:
        wait_until(lambda: _answers(f"{url}/api/{api}/heartbeat"), 60, f"Chroma {version} to start")
        yield Chroma(url, proc, workdir)
    finally:
        stop_process(proc)
        log.close()


def run_client_tests(
    python: Path,
    url: str,
    workdir: Path,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """A ``chromadb`` wheel's own tests (``chromadb/test/``, ``args``: paths and options) with
    that venv's ``python``, in their integration mode against ``url``: clients over HTTP,
    reset allowed, hypothesis seeded."""
    host, port = url.removeprefix("http://").split(":")
    environ = {
        **os.environ,
        "CHROMA_INTEGRATION_TEST_ONLY": "1",
        "CHROMA_SERVER_HOST": host,
        "CHROMA_SERVER_HTTP_PORT": port,
        "PROPERTY_TESTING_PRESET": "fast",
        "ANONYMIZED_TELEMETRY": "False",
        **(env or {}),
    }
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0", *args]
    return subprocess.run(argv, cwd=workdir, env=environ, capture_output=True, text=True, timeout=timeout)


def client_tests_gateway(chroma_url: str) -> dict[str, Any]:
    """A gateway config for clients' own tests: they send no credentials and reset Chroma."""
    return {
        "chroma": {"url": chroma_url},
        "gateway": {"auth": {"enabled": False}, "allow_reset": True, "metrics_port": None},
    }


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still running after 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class RunningGateway:
    url: str
    metrics_url: str | None
    gateway: Gateway
    settings: Settings
    server: uvicorn.Server

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@contextlib.contextmanager
def run_gateway(config: dict[str, Any], **build: Any) -> Iterator[RunningGateway]:
    """The gateway on a free port, served by uvicorn in a thread with its own loop; ``build``:
    more arguments of :func:`build_gateway`."""
    gw_cfg = config.setdefault("gateway", {})
    gw_cfg.setdefault("listen_address", "127.0.0.1")
    gw_cfg["port"] = free_port()
    if gw_cfg.get("metrics_port", 0) is not None:
        gw_cfg["metrics_port"] = free_port()
    settings = parse_config(config)
    holder: dict[str, Any] = {}
    started = threading.Event()

    def on_started(server: uvicorn.Server) -> None:
        holder["server"] = server
        started.set()

    def main() -> None:
        async def go() -> None:
            gateway = build_gateway(settings, **build)
            holder["gateway"] = gateway
            await serve(settings, gateway, on_started=on_started)

        try:
            asyncio.run(go())
        except BaseException as exc:  # surfaced by the waiting test
            holder["error"] = exc
            started.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not started.wait(30):
        raise TimeoutError("gateway thread did not start")
    if "error" in holder:
        raise holder["error"]
    server: uvicorn.Server = holder["server"]
    wait_until(lambda: server.started or "error" in holder, 30, "the gateway to listen")
    if "error" in holder:
        raise holder["error"]
    scheme = "https" if settings.gateway.tls.enabled else "http"
    gw = settings.gateway
    metrics = f"http://127.0.0.1:{gw.metrics_port}/metrics" if gw.metrics_port else None
    try:
        yield RunningGateway(f"{scheme}://127.0.0.1:{gw.port}", metrics, holder["gateway"], settings, server)
    finally:
        server.should_exit = True
        thread.join(20)


def write_secret(directory: Path, name: str, value: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def make_cert(
    directory: Path,
    name: str,
    *,
    common_name: str = "127.0.0.1",
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
    extra_names: list[x509.GeneralName] | None = None,
) -> tuple[Path, Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An EC certificate for 127.0.0.1/localhost (and ``extra_names``), self-signed or
    signed by ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                    *(extra_names or []),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert, key
