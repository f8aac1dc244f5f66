"""chromadb.tls: what each certificate source renders, how the gateway, probes, helm tests,
NOTES and Ingress follow the scheme, and the errors for values that cannot work."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.chart.helm import render, render_error

TLS_SECRET = "chroma-chromadb-tls"


def tls(**values: Any) -> dict[str, Any]:
    return {"chromadb": {"tls": {"enabled": True, **values}}}


def gateway_config(values: dict[str, Any]) -> dict[str, Any]:
    r = render(values)
    return yaml.safe_load(r.get("ConfigMap", "chroma-chromadb-chromactl")["data"]["chromactl.yaml"])


SERVICE_NAMES = [
    "chroma-chromadb",
    "chroma-chromadb.vectors",
    "chroma-chromadb.vectors.svc",
    "chroma-chromadb.vectors.svc.cluster.local",
    "chroma-chromadb-headless.vectors.svc.cluster.local",
    "chroma-chromadb-0.chroma-chromadb-headless",
    "chroma-chromadb-0.chroma-chromadb-headless.vectors.svc.cluster.local",
    "localhost",
]


def test_off_by_default() -> None:
    r = render()
    assert not r.has("Certificate") and not r.has("Secret", TLS_SECRET)
    assert gateway_config({})["gateway"]["tls"] == {"enabled": False}
    assert r.container("gateway")["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert "CHROMA_CA_FILE" not in str(r.get("Pod", "chroma-chromadb-test-heartbeat"))


def test_self_signed_certificate_names_every_service_name() -> None:
    r = render(tls(extraDnsNames=["chroma.example.com"]))
    secret = r.get("Secret", TLS_SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    assert cert.issuer == ca.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = sans.get_values_for_type(x509.DNSName)
    assert {*SERVICE_NAMES, "chroma.example.com"} <= set(names)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert not r.has("Certificate")


def test_gateway_serves_the_mounted_secret_and_probes_use_https() -> None:
    r = render(tls(minVersion="1.3"))
    cfg = gateway_config(tls(minVersion="1.3"))["gateway"]["tls"]
    assert cfg == {
        "enabled": True,
        "cert_file": "/etc/chromactl/tls/tls.crt",
        "key_file": "/etc/chromactl/tls/tls.key",
        "min_version": "1.3",
        "client_auth": "none",
    }
    gw = r.container("gateway")
    assert {"name": "tls", "mountPath": "/etc/chromactl/tls", "readOnly": True} in gw["volumeMounts"]
    volume = next(v for v in r.pod_spec["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == TLS_SECRET
    assert gw["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_helm_tests_and_notes_use_https_and_the_ca() -> None:
    r = render(tls())
    pod = r.get("Pod", "chroma-chromadb-test-collection")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["CHROMA_URL"] == "https://chroma-chromadb:8000"
    assert env["CHROMA_CA_FILE"] == "/etc/chromactl/tls-ca/ca.crt"
    ca_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "tls-ca")
    assert ca_volume["secret"] == {
        "secretName": TLS_SECRET,
        "optional": True,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
        "defaultMode": 0o444,
    }
    assert "get secret chroma-chromadb-tls -o jsonpath='{.data.ca\\.crt}'" in r.notes
    assert "curl --cacert chroma-ca.crt https://localhost:8000/api/v2/heartbeat" in r.notes
    assert 'chroma_server_ssl_verify="chroma-ca.crt"' in r.notes and "ssl=True" in r.notes


def test_existing_secret_is_mounted_without_a_generated_one() -> None:
    r = render(tls(existingSecret="corp-tls"))
    assert not r.has("Secret", TLS_SECRET) and not r.has("Certificate")
    assert next(v for v in r.pod_spec["volumes"] if v["name"] == "tls")["secret"]["secretName"] == "corp-tls"
    assert "get secret corp-tls" in r.notes


def test_cert_manager_certificate() -> None:
    r = render(
        tls(
            extraDnsNames=["chroma.example.com"],
            certManager={
                "enabled": True,
                "issuerRef": {"name": "corp", "kind": "ClusterIssuer"},
                "duration": "720h",
                "renewBefore": "168h",
                "privateKey": {"algorithm": "RSA", "size": 3072},
            },
        )
    )
    assert not r.has("Secret", TLS_SECRET)
    spec = r.get("Certificate", "chroma-chromadb")["spec"]
    assert spec["secretName"] == TLS_SECRET
    assert spec["issuerRef"] == {"name": "corp", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert (spec["duration"], spec["renewBefore"]) == ("720h", "168h")
    assert spec["privateKey"] == {"algorithm": "RSA", "size": 3072, "rotationPolicy": "Always"}
    assert {*SERVICE_NAMES, "chroma.example.com"} <= set(spec["dnsNames"])
    assert "server auth" in spec["usages"]
    ed = render(
        tls(certManager={"enabled": True, "issuerRef": {"name": "x"}, "privateKey": {"algorithm": "Ed25519"}})
    )
    assert "size" not in ed.get("Certificate")["spec"]["privateKey"]


@pytest.mark.parametrize("source", [{"secretName": "client-ca"}, {"configMapName": "client-ca"}])
def test_client_certificates(source: dict[str, str]) -> None:
    values = tls(clientAuth="required", clientCA={**source, "key": "bundle.pem"})
    r = render(values)
    cfg = gateway_config(values)["gateway"]["tls"]
    assert cfg["client_auth"] == "required"
    assert cfg["client_ca_file"] == "/etc/chromactl/client-ca/bundle.pem"
    volume = next(v for v in r.pod_spec["volumes"] if v["name"] == "tls-client-ca")
    kind = "secret" if "secretName" in source else "configMap"
    assert volume[kind]["items"] == [{"key": "bundle.pem", "path": "bundle.pem"}]
    # The kubelet cannot present a client certificate: readiness checks the port.
    assert r.container("gateway")["readinessProbe"]["tcpSocket"] == {"port": "http"}
    optional = render(tls(clientAuth="optional", clientCA=source))
    assert optional.container("gateway")["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_client_certificates_as_credentials() -> None:
    values = tls(clientAuth="optional", clientCA={"secretName": "client-ca"})
    values["chromadb"]["auth"] = {
        "clientCertificates": [
            {"name": "indexer", "role": "writer", "tenants": ["team-a"]},
            {"name": "spiffe://cluster.local/ns/apps/sa/search"},
        ]
    }
    cfg = gateway_config(values)
    assert cfg["gateway"]["auth"]["client_cert"] == {
        "identities": [
            {"name": "indexer", "role": "writer", "tenants": ["team-a"], "databases": ["*"]},
            {
                "name": "spiffe://cluster.local/ns/apps/sa/search",
                "role": "reader",
                "tenants": ["*"],
                "databases": ["*"],
            },
        ]
    }
    # the admin token stays beside them
    assert cfg["gateway"]["auth"]["token"]["credentials"][0]["name"] == "admin"
    from chromactl.config import parse_config

    parse_config(cfg)
    assert "client_cert" not in gateway_config(tls())["gateway"]["auth"]
    notes = render(values).notes
    names = "indexer, spiffe://cluster.local/ns/apps/sa/search"
    assert f"names in chromadb.auth.clientCertificates ({names})" in notes
    assert "--cacert chroma-ca.crt --cert client.crt --key client.key https://" in notes
    assert "--cert client.crt" not in render(tls()).notes


def test_ingress_talks_https_to_the_gateway() -> None:
    on = render({**tls(), "ingress": {"enabled": True}})
    annotations = on.get("Ingress")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    mine = render(
        {
            **tls(),
            "ingress": {
                "enabled": True,
                "annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "GRPCS"},
            },
        }
    )
    assert (
        mine.get("Ingress")["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]
        == "GRPCS"
    )
    off = render({"ingress": {"enabled": True}})
    assert "nginx.ingress.kubernetes.io/backend-protocol" not in (
        off.get("Ingress")["metadata"].get("annotations") or {}
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**tls(), "gateway": {"enabled": False}}, "needs the gateway"),
        (
            tls(existingSecret="a", certManager={"enabled": True, "issuerRef": {"name": "x"}}),
            "choose one source",
        ),
        (tls(certManager={"enabled": True}), "chromadb.tls.certManager.issuerRef.name"),
        (tls(clientAuth="required"), "chromadb.tls.clientCA.secretName"),
        (tls(clientAuth="optional", clientCA={"secretName": "a", "configMapName": "b"}), "exactly one"),
        (tls(minVersion="1.1"), "minVersion"),
        (tls(clientAuth="yes"), "clientAuth"),
        (
            {"chromadb": {"auth": {"clientCertificates": [{"name": "a"}]}}},
            "chromadb.auth.clientCertificates needs chromadb.tls.enabled=true",
        ),
        (
            {**tls(), "chromadb": {**tls()["chromadb"], "auth": {"clientCertificates": [{"name": "a"}]}}},
            "chromadb.tls.clientAuth optional or required",
        ),
        ({"chromadb": {"auth": {"clientCertificates": [{"role": "admin"}]}}}, "name"),
        (tls(certManager={"issuerRef": {"kind": "Cluster"}}), "kind"),
        (tls(certManager={"duration": "90 days"}), "duration"),
    ],
)
def test_bad_values_name_the_key(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


def test_generated_certificate_is_kept_on_upgrade() -> None:
    """With the Secret in the cluster (a fake API server answers `lookup`), an upgrade renders
    the same CA and certificate; with nothing to look up it would make new ones."""
    from tests.chart.fake_kube import FakeCluster, helm_config
    from tests.chart.helm import NAMESPACE, RELEASE, chart

    before = render(tls())
    cluster = FakeCluster()
    secret = before.get("Secret", TLS_SECRET)
    secret["metadata"]["annotations"]["meta.helm.sh/release-name"] = RELEASE
    cluster.add(secret, NAMESPACE)
    with helm_config(cluster, NAMESPACE) as config:
        after = config.render(chart(), tls(), name=RELEASE, namespace=NAMESPACE, is_upgrade=True, revision=2)
    kept = next(d for d in yaml.safe_load_all(after["chromadb/templates/secret-tls.yaml"]) if d)
    asked = [r.split("?")[0] for r in cluster.requests]
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{TLS_SECRET}" in asked
    assert kept["data"] == secret["data"]
    assert render(tls()).get("Secret", TLS_SECRET)["data"]["tls.crt"] != secret["data"]["tls.crt"]
