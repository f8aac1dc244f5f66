"""scripts/chroma_data.py, the data check of the kind backup -> restore round trip, against a real
Chroma behind the gateway with a token, as it runs through the port-forward there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from scripts import chroma_data

from tests.gateway.helpers import RunningGateway, run_chroma, run_gateway, write_secret

TOKEN = "ck_kind-round-trip-token"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Path]]:
    secrets = tmp_path_factory.mktemp("secrets")
    token_file = write_secret(secrets, "token", TOKEN)
    with run_chroma(tmp_path_factory.mktemp("chroma")) as chroma:
        config = {
            "chroma": {"url": chroma.url},
            "gateway": {
                "auth": {
                    "token": {
                        "credentials": [{"name": "admin", "token_file": str(token_file), "role": "admin"}]
                    }
                }
            },
        }
        with run_gateway(config) as gw:
            yield gw, token_file


@pytest.mark.slow
def test_write_then_check_passes_and_tampering_is_found(gateway, capsys) -> None:
    gw, token_file = gateway
    common = [
        "--url",
        gw.url,
        "--token-file",
        str(token_file),
        "--collection",
        "round-trip",
        "--records",
        "50",
    ]
    assert chroma_data.main(["write", *common]) == 0
    assert chroma_data.main(["check", *common]) == 0
    assert "all 50 records intact" in capsys.readouterr().out

    # a record changed after the "backup" is reported, by id
    cid = chroma_data.Client(gw.url, TOKEN).collection_id("round-trip", create=False)
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        client.post(
            f"{chroma_data.DB}/collections/{cid}/update", json={"ids": ["id-00007"], "documents": ["changed"]}
        ).raise_for_status()
        client.post(
            f"{chroma_data.DB}/collections/{cid}/delete", json={"ids": ["id-00011"]}
        ).raise_for_status()
    assert chroma_data.main(["check", *common]) == 1
    err = capsys.readouterr().err
    assert "id-00007 differs" in err and "id-00011 is missing" in err and "49 records, expected 50" in err


@pytest.mark.slow
def test_without_the_token_it_says_what_failed(gateway, capsys) -> None:
    gw, _ = gateway
    assert chroma_data.main(["check", "--url", gw.url, "--collection", "round-trip"]) == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_records_are_reproducible() -> None:
    assert chroma_data.record(3) == chroma_data.record(3)
    assert chroma_data.record(3) != chroma_data.record(4)
