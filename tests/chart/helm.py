"""Render the chart with the real Helm engine and look things up in the result."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "chromadb"
EVERYTHING_VALUES = CHART_DIR / "ci" / "everything-values.yaml"
RELEASE = "chroma"
NAMESPACE = "vectors"
#: What the Services, PodDisruptionBudget and monitors select: the Chroma server pod only.
SERVER_SELECTOR = {
    "app.kubernetes.io/name": "chromadb",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "server",
}


@cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def everything_values() -> dict[str, Any]:
    return yaml.safe_load(EVERYTHING_VALUES.read_text())


#: Where the gateway tier's tests put the Chroma it fronts.
TIER_CHROMA_URL = "http://chroma-frontend.chroma.svc.cluster.local:8000"


def gateway_tier_values() -> dict[str, Any]:
    """Every option of ci/everything-values.yaml that applies to ``architecture: gateway``:
    the same release as the gateway tier (what needs a local data directory taken out)."""
    values = everything_values()
    values["architecture"] = "gateway"
    values["scaleOut"] = {"chromaUrl": TIER_CHROMA_URL}
    values["backup"] = {}
    values["podDisruptionBudget"] = {"enabled": False}
    for rule in values["gateway"]["limits"]["tenants"].values():
        rule.pop("maxCollections", None)
        rule.pop("maxRecordsPerCollection", None)
    return values


def high_availability_values() -> dict[str, Any]:
    """ci/everything-values.yaml with highAvailability on: 3 pods, required anti-affinity,
    egress restricted to a given API server (every object HA adds, beside every other feature)."""
    values = everything_values()
    values["highAvailability"] = {
        "enabled": True,
        "replicas": 3,
        "podAntiAffinity": "required",
        "synchronous": True,
    }
    values.setdefault("networkPolicy", {}).setdefault("egress", {}).update(
        {"enabled": True, "kubernetesApiTo": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}
    )
    values.setdefault("gateway", {}).pop("workers", None)
    # The chart's own anti-affinity and zone spread, rather than the user's.
    values.pop("affinity", None)
    values.pop("topologySpreadConstraints", None)
    return values


def set_values(*expressions: str) -> dict[str, Any]:
    """Values as `helm install --set a=b --set c=d` builds them."""
    merged: dict[str, Any] = {}
    for expr in expressions:
        _deep_merge(merged, helm_python.parse_set_string(expr))
    return merged


def _deep_merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


@dataclass
class Render:
    """A rendered release: manifests by template, parsed objects, NOTES."""

    templates: dict[str, str]

    @property
    def objects(self) -> list[dict[str, Any]]:
        found = []
        for path, text in self.templates.items():
            if path.endswith("NOTES.txt"):
                continue
            found.extend(doc for doc in yaml.safe_load_all(text) if doc)
        return found

    @property
    def notes(self) -> str:
        return next((t for p, t in self.templates.items() if p.endswith("NOTES.txt")), "")

    def kinds(self) -> list[tuple[str, str]]:
        return sorted((o["kind"], o["metadata"]["name"]) for o in self.objects)

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        matches = [
            o for o in self.objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]
        assert len(matches) == 1, (
            f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in matches]}"
        )
        return matches[0]

    def has(self, kind: str, name: str | None = None) -> bool:
        return any(
            o["kind"] == kind and (name is None or o["metadata"]["name"] == name) for o in self.objects
        )

    @property
    def statefulset(self) -> dict[str, Any]:
        return self.get("StatefulSet")

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.statefulset["spec"]["template"]["spec"]

    def container(self, name: str = "chroma") -> dict[str, Any]:
        return next(c for c in self.pod_spec["containers"] if c["name"] == name)

    def env(self, container: str = "chroma") -> dict[str, Any]:
        return {
            e["name"]: e.get("value", e.get("valueFrom")) for e in self.container(container).get("env", [])
        }

    def server_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.get("ConfigMap", f"{RELEASE}-chromadb-config")["data"]["config.yaml"])

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every pod spec the release renders (workloads and test pods)."""
        for obj in self.objects:
            kind = obj["kind"]
            if kind == "Pod":
                yield obj["metadata"]["name"], obj["spec"]
            elif kind in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
                yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
            elif kind == "CronJob":
                yield obj["metadata"]["name"], obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def render(
    values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> Render:
    return Render(chart().render(values or {}, name=release, namespace=namespace))


def render_error(values: dict[str, Any]) -> str:
    """The error message Helm gives for ``values``; fails the test if it renders."""
    try:
        chart().render(values, name=RELEASE, namespace=NAMESPACE)
    except helm_python.HelmError as exc:
        return str(exc)
    raise AssertionError(f"rendering succeeded with {values}")


def names_key(message: str, key: str) -> bool:
    """Whether an error message points at ``key`` (dotted, or as the schema's /a/b path)."""
    return key in message or "/" + key.replace(".", "/") in message
