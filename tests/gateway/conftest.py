"""Fixtures for the gateway tests: one real Chroma for the session, gateways per config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.helpers import Chroma, RunningGateway, run_chroma, run_gateway, write_secret

ADMIN_TOKEN = "ck_admin-token-for-tests"
WRITER_TOKEN = "ck_writer-token-for-tests"
READER_TOKEN = "ck_reader-token-for-tests"
TENANT_B_TOKEN = "ck_tenant-b-reader"
TENANT_B_WRITER_TOKEN = "ck_tenant-b-writer"


@pytest.fixture(scope="session")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chroma]:
    with run_chroma(tmp_path_factory.mktemp("chroma")) as server:
        yield server


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secrets")


def token_config(chroma: Chroma, secrets_dir: Path, **gateway: object) -> dict[str, object]:
    """A gateway with several tokens: admin, writer, reader, and tenant-b scoped ones."""
    creds = []
    for name, token, role, tenants in [
        ("admin", ADMIN_TOKEN, "admin", ["*"]),
        ("writer", WRITER_TOKEN, "writer", ["*"]),
        ("reader", READER_TOKEN, "reader", ["*"]),
        ("tenant-b-reader", TENANT_B_TOKEN, "reader", ["tenant-b"]),
        ("tenant-b-writer", TENANT_B_WRITER_TOKEN, "writer", ["tenant-b"]),
    ]:
        path = write_secret(secrets_dir, f"{name}.token", token)
        creds.append({"name": name, "token_file": str(path), "role": role, "tenants": tenants})
    return {
        "chroma": {"url": chroma.url},
        "gateway": {"auth": {"token": {"credentials": creds}}, **gateway},
    }


@pytest.fixture(scope="session")
def token_gateway(chroma: Chroma, secrets_dir: Path) -> Iterator[RunningGateway]:
    """The shared token-auth gateway (most end-to-end tests use it), with limits on."""
    config = token_config(chroma, secrets_dir)
    gateway = config["gateway"]
    assert isinstance(gateway, dict)
    # Limits above what any test uses: every request also passes the limits step.
    generous = {"requests_per_second": 5000, "burst": 5000, "concurrent_requests": 512}
    gateway["limits"] = {
        "enabled": True,
        "credentials": {"*": {**generous, "records_per_minute": 10_000_000}},
        "tenants": {"*": generous},
    }
    with run_gateway(config) as gw:
        yield gw


@pytest.fixture(scope="session")
def js_dir() -> Path:
    """tests/gateway/js with its npm packages installed (``npm ci``)."""
    from tests.gateway.node import ensure_node_modules

    return ensure_node_modules()
