"""TLS: 1.2+ only, rotation without restart or dropped connections, client certificates."""

from __future__ import annotations

import shutil
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from chromactl.config import TLSSettings
from chromactl.gateway.tls import ReloadingTLS
from tests.gateway.conftest import ADMIN_TOKEN, token_config
from tests.gateway.helpers import Chroma, make_cert, run_gateway, wait_until


def served_cert(port: int, ca: Path) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)


def test_context_is_tls12_plus_with_aead_ciphers(tmp_path: Path) -> None:
    cert, key, _, _ = make_cert(tmp_path, "srv")
    tls = ReloadingTLS(TLSSettings(enabled=True, cert_file=cert, key_file=key))
    assert tls.context.minimum_version is ssl.TLSVersion.TLSv1_2
    for cipher in tls.context.get_ciphers():
        assert "CBC" not in cipher["name"] and "RSA-AES" not in cipher["name"].replace("ECDHE-RSA", "")
        assert cipher["aead"]


def test_broken_pair_keeps_the_old_certificate(tmp_path: Path) -> None:
    cert, key, _, _ = make_cert(tmp_path, "srv")
    other_cert, _, _, _ = make_cert(tmp_path, "other")
    tls = ReloadingTLS(TLSSettings(enabled=True, cert_file=cert, key_file=key))
    shutil.copy(other_cert, cert)  # mid-rotation: new cert, old key
    assert tls.reload_if_changed() is False
    assert tls.reloads == 0


@pytest.mark.slow
def test_handshake_rotation_and_versions(chroma: Chroma, secrets_dir: Path, tmp_path: Path) -> None:
    ca_cert, _, ca, ca_priv = make_cert(tmp_path, "ca", common_name="test-ca", ca=True)
    cert, key, first, _ = make_cert(tmp_path, "srv", issuer=(ca, ca_priv))
    config = token_config(
        chroma,
        secrets_dir,
        tls={"enabled": True, "cert_file": str(cert), "key_file": str(key), "reload_interval_s": 0.1},
    )
    with run_gateway(config) as gw:
        port = gw.settings.gateway.port
        assert gw.url.startswith("https://")
        assert served_cert(port, ca_cert).serial_number == first.serial_number

        # A keep-alive connection opened before the rotation.
        client = httpx.Client(
            verify=ssl.create_default_context(cafile=str(ca_cert)), headers={"X-Chroma-Token": ADMIN_TOKEN}
        )
        assert client.get(gw.url + "/api/v2/heartbeat").status_code == 200

        # TLS 1.1 is refused.
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(str(ca_cert))
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", port), 5) as raw:
            old.wrap_socket(raw, server_hostname="127.0.0.1")

        # Rotate: new files appear (as when a Secret volume is updated).
        new_dir = tmp_path / "new"
        new_cert, new_key, second, _ = make_cert(new_dir, "srv", issuer=(ca, ca_priv))
        shutil.copy(new_key, key)
        shutil.copy(new_cert, cert)
        wait_until(
            lambda: served_cert(port, ca_cert).serial_number == second.serial_number,
            15,
            "the rotated certificate",
        )
        # The client connected before the rotation goes on working.
        resp = client.get(gw.url + "/api/v2/tenants/default_tenant/databases/default_database")
        assert resp.status_code == 200
        client.close()


@pytest.mark.slow
def test_client_certificates_required(chroma: Chroma, secrets_dir: Path, tmp_path: Path) -> None:
    ca_cert, _, ca, ca_priv = make_cert(tmp_path, "ca", common_name="test-ca", ca=True)
    cert, key, _, _ = make_cert(tmp_path, "srv", issuer=(ca, ca_priv))
    client_cert, client_key, _, _ = make_cert(tmp_path, "client", common_name="app", issuer=(ca, ca_priv))
    config = token_config(
        chroma,
        secrets_dir,
        tls={
            "enabled": True,
            "cert_file": str(cert),
            "key_file": str(key),
            "client_auth": "required",
            "client_ca_file": str(ca_cert),
        },
    )
    with run_gateway(config) as gw:
        url = gw.url + "/api/v2/heartbeat"
        ctx = ssl.create_default_context(cafile=str(ca_cert))
        ctx.load_cert_chain(str(client_cert), str(client_key))
        assert httpx.get(url, verify=ctx).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=ssl.create_default_context(cafile=str(ca_cert)))
