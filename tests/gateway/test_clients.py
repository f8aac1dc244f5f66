"""Unchanged clients through the gateway: Python AsyncHttpClient and the npm chromadb v3."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import chromadb
import pytest
from chromadb.errors import AuthorizationError

from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN
from tests.gateway.helpers import RunningGateway


def _host_port(gw: RunningGateway) -> tuple[str, int]:
    host, port = gw.url.split("://", 1)[1].split(":")
    return host, int(port)


@pytest.mark.slow
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"X-Chroma-Token": ADMIN_TOKEN}],
)
def test_python_async_client_with_headers(token_gateway: RunningGateway, headers: dict[str, str]) -> None:
    host, port = _host_port(token_gateway)

    async def main() -> tuple[int, list[list[str]]]:
        client = await chromadb.AsyncHttpClient(host=host, port=port, headers=headers)
        col = await client.get_or_create_collection("async-client")
        await col.upsert(ids=["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]])
        found = await col.query(query_embeddings=[[0.0, 1.0]], n_results=1)
        return await col.count(), found["ids"]

    assert asyncio.run(main()) == (2, [["b"]])


@pytest.mark.slow
def test_python_async_client_reader_cannot_write(token_gateway: RunningGateway) -> None:
    host, port = _host_port(token_gateway)

    # One event loop per client: AsyncHttpClient shares its HTTP session (and so the
    # headers of the first client) between instances on the same loop.
    async def setup() -> None:
        admin = await chromadb.AsyncHttpClient(host=host, port=port, headers={"X-Chroma-Token": ADMIN_TOKEN})
        await admin.get_or_create_collection("async-reader")

    async def main() -> None:
        reader = await chromadb.AsyncHttpClient(
            host=host, port=port, headers={"X-Chroma-Token": READER_TOKEN}
        )
        col = await reader.get_collection("async-reader")
        with pytest.raises(AuthorizationError):
            await col.add(ids=["x"], embeddings=[[1.0, 1.0]])

    asyncio.run(setup())
    asyncio.run(main())


def run_js_client(js_dir: Path, url: str, header: str, value: str, name: str) -> dict[str, object]:
    out = subprocess.run(
        ["node", "chroma_client.mjs", url, header, value, name],
        cwd=js_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("header", "value"),
    [("x-chroma-token", ADMIN_TOKEN), ("Authorization", f"Bearer {ADMIN_TOKEN}")],
)
def test_js_v3_client_with_headers(
    token_gateway: RunningGateway, js_dir: Path, header: str, value: str
) -> None:
    result = run_js_client(js_dir, token_gateway.url, header, value, f"js-{header.lower()}")
    assert result == {"heartbeat": True, "count": 2, "query": [["j1"]]}


@pytest.mark.slow
def test_js_v3_client_wrong_token(token_gateway: RunningGateway, js_dir: Path) -> None:
    result = run_js_client(js_dir, token_gateway.url, "x-chroma-token", "wrong", "js-wrong")
    assert "error" in result
    assert "count" not in result
