"""Every rendered object is valid for Kubernetes 1.29 through 1.34 (strict: no unknown fields).

Prometheus Operator kinds are validated against their vendored CRD schemas (``crds/``).
"""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest

from tests.chart.crd_schemas import SCHEMAS
from tests.chart.crds import is_custom, validate_custom
from tests.chart.helm import Render, everything_values, gateway_tier_values, high_availability_values, render

VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]
RENDERS = {
    "default": lambda: render(),
    "everything": lambda: render(everything_values()),
    "gateway-tier": lambda: render(gateway_tier_values()),
    "legacy": lambda: render({"chromadb": {"apiVersion": "0.6.3", "isPersistent": False}}),
    "high-availability": lambda: render(high_availability_values()),
    # The collector sidecar stays out of ci/ (the pod runner cannot run its image).
    "otel-collector": lambda: render(
        {"openTelemetry": {"enabled": True, "collector": {"enabled": True, "tracesEndpoint": "tempo:4317"}}}
    ),
}


def validate(r: Render, version: str) -> None:
    for obj in r.objects:
        if is_custom(obj):  # Prometheus Operator kinds: the vendored CRD schemas
            validate_custom(obj)
            continue
        custom = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if custom is not None:  # a custom resource: the CRD's schema
            jsonschema.validate(obj, custom)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", RENDERS)
def test_render_is_valid(name: str, version: str) -> None:
    validate(RENDERS[name](), version)


def test_validator_catches_a_broken_object() -> None:
    broken = render()
    sts = broken.statefulset
    sts["spec"]["template"]["spec"]["containers"][-1]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, VERSIONS[0], strict=True)


def test_custom_resources_are_checked_against_their_crds() -> None:
    monitors = [o for o in everything_values_render().objects if is_custom(o)]
    assert {o["kind"] for o in monitors} == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    sm = next(o for o in monitors if o["kind"] == "ServiceMonitor")
    sm["spec"]["endpoints"][0]["scrapeTimeout"] = "ten seconds"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(sm)
    sm["spec"]["endpoints"][0]["scrapeTimeout"] = "10s"
    sm["spec"]["endpoints"][0]["unknownField"] = True
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(sm)


def everything_values_render() -> Render:
    return render(everything_values())


def test_custom_resources_are_checked_too() -> None:
    certificate = render(everything_values()).get("Certificate")
    certificate["spec"]["privateKey"]["algorithm"] = "DSA"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(certificate, SCHEMAS[("cert-manager.io/v1", "Certificate")])
