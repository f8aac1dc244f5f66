"""`chromactl smoke` (what helm test runs) against a real Chroma."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chromactl.smoke import CHECKS, Credentials, SmokeClient, SmokeError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("chroma")
    chroma = Path(sys.executable).parent / "chroma"
    proc = subprocess.Popen(
        [str(chroma), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/v2/healthcheck", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("chroma did not start")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_checks_pass_and_clean_up(chroma_url: str) -> None:
    client = SmokeClient(chroma_url)
    assert CHECKS["heartbeat"](client)["api"] == "v2"
    result = CHECKS["collection"](client)
    assert result["nearest"] == "b"
    listed = client.expect("GET", "/api/v2/tenants/default_tenant/databases/default_database/collections")
    assert result["collection"] not in [c["name"] for c in listed]


def test_cli_prints_one_json_line_per_check(chroma_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "chromactl", "smoke", "--url", chroma_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert [line.split('"check": "')[1].split('"')[0] for line in proc.stdout.splitlines()] == [
        "heartbeat",
        "collection",
    ]


def test_unreachable_server_fails_with_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SmokeError, match="cannot connect"):
        CHECKS["heartbeat"](SmokeClient(url, timeout=2))
    proc = subprocess.run(
        [sys.executable, "-m", "chromactl", "smoke", "--url", url, "--check", "heartbeat"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert url in proc.stderr


def test_error_answer_is_reported(chroma_url: str) -> None:
    client = SmokeClient(chroma_url)
    with pytest.raises(SmokeError, match="answered 404"):
        client.expect("GET", "/api/v2/tenants/nope")


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        (Credentials(token="t0k"), {"Authorization": "Bearer t0k"}),
        (Credentials(token="t0k", token_header="X-CHROMA-TOKEN"), {"X-Chroma-Token": "t0k"}),
        (Credentials(token="t0k", token_header="X_CHROMA_TOKEN"), {"X-Chroma-Token": "t0k"}),
        (
            Credentials(username="u", password="p"),
            {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()},
        ),
        (Credentials(), {}),
    ],
)
def test_credential_headers(credentials: Credentials, expected: dict[str, str]) -> None:
    assert credentials.headers() == expected


def test_ca_bundle_is_used_when_present_and_system_cas_otherwise(tmp_path: Path) -> None:
    from chromactl.smoke import ca_bundle

    ca = tmp_path / "ca.crt"
    assert ca_bundle(None) is None
    assert ca_bundle(ca) is None  # the optional ca.crt of a public CA's Secret: absent
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ca_bundle(ca) == str(ca)
