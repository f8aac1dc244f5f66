"""testssl.sh (Debian) against the gateway's TLS listener, its JSON findings parsed.

The gateway serves a leaf certificate signed by an intermediate CA, itself signed by a
root: the chain it presents must be exactly leaf + intermediate, trusted from the root.
No protocol below TLS 1.2 may be offered, and no weak cipher category.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.gateway.helpers import Chroma, RunningGateway, make_cert, run_gateway
from tests.security.conftest import Watch, World, gateway_config

pytestmark = pytest.mark.slow

#: Protocol findings that must say "not offered".
OLD_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]
#: Cipher categories that must not be offered (testssl.sh 3.0 ids).
WEAK_CIPHERS = [
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",
]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("tls")
    root_pem, _, root, root_key = make_cert(d, "root", common_name="sec-root-ca", ca=True)
    _, _, inter, inter_key = make_cert(
        d, "inter", common_name="sec-intermediate-ca", ca=True, issuer=(root, root_key)
    )
    _leaf_pem, key_pem, leaf, _ = make_cert(d, "leaf", issuer=(inter, inter_key))
    bundle = d / "chain.crt"
    pem = serialization.Encoding.PEM
    bundle.write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    return {"root": root_pem, "cert": bundle, "key": key_pem, "leaf": leaf, "inter": inter}


@pytest.fixture(scope="module")
def tls_gateway(
    sec_chroma: Chroma,
    world: World,
    watch: Watch,
    chain: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningGateway]:
    tls = {"enabled": True, "cert_file": str(chain["cert"]), "key_file": str(chain["key"])}
    config = gateway_config(sec_chroma.url, tmp_path_factory.mktemp("tls-secrets"), None, tls=tls)
    with run_gateway(config) as gw:
        yield gw
        watch.record_metrics(gw)


@pytest.fixture(scope="module")
def findings(
    tls_gateway: RunningGateway, chain: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl is None:
        pytest.fail("testssl.sh is needed (Debian package testssl.sh; scripts/install-system-deps.sh)")
    out = tmp_path_factory.mktemp("testssl") / "result.json"
    target = tls_gateway.url.removeprefix("https://")
    proc = subprocess.run(
        [
            testssl,
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--protocols",
            "--std",
            "--server-defaults",
            "--add-ca",
            str(chain["root"]),
            "--jsonfile",
            str(out),
            target,
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.exists(), (
        f"testssl.sh wrote no JSON (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for item in json.loads(out.read_text()):
        by_id.setdefault(item["id"], []).append(item)
    assert "scanProblem" not in by_id, by_id.get("scanProblem")
    return by_id


def _one(findings: dict[str, list[dict[str, Any]]], fid: str) -> str:
    assert fid in findings, f"testssl.sh reported no {fid}: {sorted(findings)}"
    return str(findings[fid][0]["finding"])


def test_no_protocol_below_tls_1_2(findings: dict[str, list[dict[str, Any]]]) -> None:
    for proto in OLD_PROTOCOLS:
        assert "not offered" in _one(findings, proto), (proto, findings[proto])
    assert _one(findings, "TLS1_2").startswith("offered")
    assert _one(findings, "TLS1_3").startswith("offered")


def test_no_weak_cipher(findings: dict[str, list[dict[str, Any]]]) -> None:
    for cat in WEAK_CIPHERS:
        assert _one(findings, cat) == "not offered", (cat, findings[cat])
    assert _one(findings, "cipherlist_STRONG").startswith("offered")
    # Certificate findings aside (the test certificates live a day: "expires soon").
    severe = [
        f
        for fid, items in findings.items()
        for f in items
        if f.get("severity") in ("HIGH", "CRITICAL") and not fid.startswith("cert")
    ]
    assert severe == []


def test_certificate_chain_as_configured(
    findings: dict[str, list[dict[str, Any]]], chain: dict[str, Any]
) -> None:
    leaf: x509.Certificate = chain["leaf"]
    assert _one(findings, "cert_fingerprintSHA256") == leaf.fingerprint(hashes.SHA256()).hex().upper()
    assert _one(findings, "cert_caIssuers") == "sec-intermediate-ca"
    # Leaf and intermediate, in order; trusted from the root alone (--add-ca).
    assert _one(findings, "certs_countServer") == "2"
    assert _one(findings, "certs_list_ordering_problem") == "no"
    assert _one(findings, "cert_chain_of_trust").startswith("passed")
    assert _one(findings, "cert_subjectAltName") == "localhost 127.0.0.1"
