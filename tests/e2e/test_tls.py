"""HTTPS through the rendered chart, on the pod runner.

- The chart's own CA: helm tests pass over https, NOTES' commands (port-forward, the CA
  from the Secret, curl --cacert, the Python client with ``ssl=True``) work from a client pod,
  plain http is refused.
- An existing Secret, and a Secret shaped as cert-manager writes it for the rendered
  ``Certificate`` (the test stands in for cert-manager): the gateway serves that certificate.
- Rotation: the Secret's files swapped as the kubelet does (a new timestamped directory and an
  atomic ``..data`` symlink swap) are served to new connections without a restart, while an
  open keep-alive connection keeps working.
- Client certificates as credentials: with ``clientAuth: optional``, a client certificate from
  the client CA ConfigMap named in ``chromadb.auth.clientCertificates`` reads and is refused
  writes; one with an unknown name, or none, gets 401.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.conftest import SERVER_POD, SERVICE, assert_helm_tests_pass, install, render
from tests.e2e.test_auth import assert_notes_work, b64, run_sh, shell_script
from tests.podrunner.runner import PodRunner

TLS_SECRET = "chroma-chromadb-tls"
TLS = {"chromadb": {"tls": {"enabled": True}}}
#: The gateway checks the files every 10 s (TLSSettings.reload_interval_s).
RELOAD_WAIT_S = 30


class CA:
    """A CA that signs server certificates, as an issuer (or the user's PKI) would."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, dns_names: list[str]) -> tuple[str, str, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem, cert

    def issue_client(self, common_name: str) -> tuple[str, str]:
        """A client certificate (extended key usage clientAuth) as PEM (cert, key)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def tls_secret(name: str, crt: str, key: str, ca: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "data": {"tls.crt": b64(crt), "tls.key": b64(key), "ca.crt": b64(ca)},
    }


def service_names() -> list[str]:
    return [
        SERVICE,
        f"{SERVICE}.default",
        f"{SERVICE}.default.svc",
        f"{SERVICE}.default.svc.cluster.local",
        "localhost",
    ]


def context(ca_pem: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect(cluster: PodRunner, ca_pem: str) -> ssl.SSLSocket:
    """A verified TLS connection to the Service, by its name, from the host."""
    address = cluster.service_address(SERVICE, 8000)
    raw = socket.create_connection(address, timeout=10)
    return context(ca_pem).wrap_socket(raw, server_hostname=SERVICE)


def served_cert(cluster: PodRunner, ca_pem: str) -> x509.Certificate:
    with connect(cluster, ca_pem) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def heartbeat(sock: ssl.SSLSocket) -> int:
    """One keep-alive request on an open connection; the status."""
    sock.sendall(f"GET /api/v2/heartbeat HTTP/1.1\r\nHost: {SERVICE}\r\n\r\n".encode())
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    resp.read()
    assert not resp.will_close
    return resp.status


def kubelet_update(volume: Path, files: dict[str, str], gid: int = 10001) -> None:
    """Update a Secret volume as the kubelet's AtomicWriter does: the new files in a fresh
    ``..<timestamp>`` directory, ``..data`` swapped to it by one rename, and each visible name a
    symlink through ``..data``."""
    stamp = volume / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
        os.chown(stamp / name, -1, gid)
        (stamp / name).chmod(0o440)
    stamp.chmod(0o755)
    tmp = volume / "..data_tmp"
    tmp.symlink_to(stamp.name)
    tmp.rename(volume / "..data")
    for name in files:
        link = volume / name
        if not link.is_symlink():
            new = volume / f".{name}.link"
            new.symlink_to(f"..data/{name}")
            new.rename(link)


def test_self_signed_helm_tests_and_notes_over_https(cluster: PodRunner) -> None:
    install(cluster, TLS, gateway=True)
    data = cluster.store.data("Secret", TLS_SECRET)
    assert data is not None and set(data) == {"tls.crt", "tls.key", "ca.crt"}
    ca_pem = data["ca.crt"].decode()

    assert_helm_tests_pass(cluster)  # https://chroma-chromadb:8000, verified with CHROMA_CA_FILE
    cert = served_cert(cluster, ca_pem)
    assert cert.public_bytes(serialization.Encoding.PEM) == data["tls.crt"]

    notes = cluster.notes
    assert "https://chroma-chromadb:8000" in notes and "--cacert chroma-ca.crt" in notes
    logs = run_sh(cluster, "notes-https", "cd /tmp\n" + shell_script(notes))
    assert_notes_work(logs)

    # Plain HTTP on the port is not served (the TLS versions are covered by tests/gateway).
    url = f"http://{SERVICE}:8000/api/v2/heartbeat"
    curl = f"curl -s -m 5 -o /dev/null -w 'code %{{http_code}}' {url}"
    logs = run_sh(cluster, "plain-http", f'{curl}; echo " rc $?"')
    assert "code 000 rc " in logs and "rc 0\n" not in logs, logs


def test_existing_secret_served_and_rotated_without_restart(cluster: PodRunner) -> None:
    ca = CA("e2e existing CA")
    crt, key, _ = ca.issue(service_names())
    cluster.apply([tls_secret("my-tls", crt, key, ca.pem)])
    values = {"chromadb": {"tls": {"enabled": True, "existingSecret": "my-tls"}}}
    # Mounted as it is: the chart makes no certificate of its own.
    assert "kind: Secret" not in next(
        t for p, t in render(values, gateway=True).items() if p.endswith("secret-tls.yaml")
    )
    pod = install(cluster, values, gateway=True)
    assert served_cert(cluster, ca.pem).public_bytes(serialization.Encoding.PEM).decode() == crt
    assert_helm_tests_pass(cluster)
    gateway = pod.container("gateway")
    assert gateway.proc is not None
    started = (gateway.proc.pid, gateway.restarts)

    keep_alive = connect(cluster, ca.pem)
    assert heartbeat(keep_alive) == 200
    first = keep_alive.getpeercert(binary_form=True)

    volume = pod.dir / "volumes" / "tls"
    # Into the kubelet's layout (same content), then a real rotation by one ..data swap.
    kubelet_update(volume, {"tls.crt": crt, "tls.key": key, "ca.crt": ca.pem})
    new_crt, new_key, new_cert = ca.issue(service_names())
    kubelet_update(volume, {"tls.crt": new_crt, "tls.key": new_key, "ca.crt": ca.pem})
    assert (volume / "tls.crt").is_symlink() and (volume / "..data").is_symlink()

    deadline = time.monotonic() + RELOAD_WAIT_S
    while served_cert(cluster, ca.pem).serial_number != new_cert.serial_number:
        assert time.monotonic() < deadline, "the rotated certificate was not served"
        time.sleep(1)

    # The connection opened before the rotation is still open and served.
    assert heartbeat(keep_alive) == 200
    assert keep_alive.getpeercert(binary_form=True) == first
    keep_alive.close()
    # No restart of the gateway.
    assert gateway.running() and (gateway.proc.pid, gateway.restarts) == started
    assert "loaded a changed certificate" in cluster.logs(SERVER_POD, "gateway")
    assert_helm_tests_pass(cluster)


def test_cert_manager_shaped_secret(cluster: PodRunner) -> None:
    values = {
        "chromadb": {
            "tls": {
                "enabled": True,
                "certManager": {
                    "enabled": True,
                    "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
                },
            }
        }
    }
    rendered = render(values, gateway=True)
    objects = [
        d for p, t in rendered.items() if not p.endswith("NOTES.txt") for d in yaml.safe_load_all(t) if d
    ]
    certificate = next(o for o in objects if o["kind"] == "Certificate")
    assert not any(o["kind"] == "Secret" and o["metadata"]["name"] == TLS_SECRET for o in objects)
    spec = certificate["spec"]
    assert spec["secretName"] == TLS_SECRET
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    # What cert-manager would write for this Certificate: its dnsNames, tls.crt/tls.key/ca.crt.
    ca = CA("internal-ca")
    crt, key, _ = ca.issue(spec["dnsNames"])
    cluster.apply(
        [
            tls_secret(
                TLS_SECRET,
                crt,
                key,
                ca.pem,
                **{
                    "cert-manager.io/certificate-name": certificate["metadata"]["name"],
                    "cert-manager.io/issuer-kind": "ClusterIssuer",
                    "cert-manager.io/issuer-name": "internal-ca",
                },
            )
        ]
    )
    cluster.apply([o for o in objects if o["kind"] != "Certificate"])
    cluster.store.notes = next(t for p, t in rendered.items() if p.endswith("NOTES.txt"))
    cluster.prepare_images()
    cluster.start_workloads()
    cluster.wait_ready(SERVER_POD, 90)
    assert served_cert(cluster, ca.pem).public_bytes(serialization.Encoding.PEM).decode() == crt
    assert_helm_tests_pass(cluster)


def test_client_certificates_as_credentials(cluster: PodRunner, tmp_path: Path) -> None:
    server_ca, client_ca = CA("e2e server CA"), CA("e2e client CA")
    crt, key, _ = server_ca.issue(service_names())
    cluster.apply(
        [
            tls_secret("my-tls", crt, key, server_ca.pem),
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "client-ca", "namespace": "default"},
                "data": {"ca.crt": client_ca.pem},
            },
        ]
    )
    install(
        cluster,
        {
            "chromadb": {
                "tls": {
                    "enabled": True,
                    "existingSecret": "my-tls",
                    "clientAuth": "optional",
                    "clientCA": {"configMapName": "client-ca"},
                },
                "auth": {"clientCertificates": [{"name": "reader-app", "role": "reader"}]},
            }
        },
        gateway=True,
    )
    assert_helm_tests_pass(cluster)  # the admin token still works beside certificates

    def call(method: str, path: str, cert: tuple[str, str] | None) -> int:
        ctx = context(server_ca.pem)
        if cert is not None:
            (tmp_path / "c.crt").write_text(cert[0])
            (tmp_path / "c.key").write_text(cert[1])
            ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
        raw = socket.create_connection(cluster.service_address(SERVICE, 8000), timeout=10)
        conn = http.client.HTTPConnection(SERVICE, 8000, timeout=10)
        conn.sock = ctx.wrap_socket(raw, server_hostname=SERVICE)  # verified as the Service
        body = '{"name": "from-a-certificate"}' if method == "POST" else None
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
        conn.close()
        return status

    collections = "/api/v2/tenants/default_tenant/databases/default_database/collections"
    reader = client_ca.issue_client("reader-app")
    assert call("GET", collections, reader) == 200
    assert call("POST", collections, reader) == 403
    assert call("GET", collections, client_ca.issue_client("someone-else")) == 401
    assert call("GET", collections, None) == 401
