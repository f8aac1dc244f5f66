"""Releases of amikos-tech/chromadb-chart as Helm 3 left them in a cluster (tests/fixtures/amikos).

The fixtures are what that chart renders for release `chroma` in namespace `vectors`;
:func:`amikos_cluster` puts one into a :class:`FakeCluster` with Helm's ownership metadata on
release objects, none on hooks, the release record Secret, and the pod and claim its
StatefulSet made.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from typing import Any

import yaml

from tests.chart.fake_kube import FakeCluster
from tests.chart.helm import NAMESPACE, RELEASE, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "amikos"
CASES = sorted(p.stem for p in FIXTURES.glob("*.yaml"))
STS = "chroma-chromadb"


def amikos_objects(case: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((FIXTURES / f"{case}.yaml").read_text()) if d]


def hook_of(obj: dict[str, Any]) -> str:
    return (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")


def release_record(case: str, manifest: list[dict[str, Any]], hooks: list[dict[str, Any]]) -> dict[str, Any]:
    """The Secret Helm 3 keeps a deployed release in (storage driver "secret", release v1)."""
    header = (FIXTURES / f"{case}.yaml").read_text().splitlines()[2]  # "# chart: chromadb X, appVersion Y"
    version, app_version = header.split("chromadb ")[1].split(", appVersion ")
    release = {
        "name": RELEASE,
        "namespace": NAMESPACE,
        "version": 1,
        "info": {
            "first_deployed": "2025-06-01T00:00:00Z",
            "last_deployed": "2025-06-01T00:00:00Z",
            "deleted": "",
            "description": "Install complete",
            "status": "deployed",
        },
        "chart": {
            "metadata": {
                "name": "chromadb",
                "version": version,
                "appVersion": app_version,
                "apiVersion": "v2",
            },
            "templates": [],
            "values": {},
        },
        "config": {},
        "manifest": "".join(f"---\n{yaml.safe_dump(o)}" for o in manifest),
        "hooks": [
            {
                "name": h["metadata"]["name"],
                "kind": h["kind"],
                "manifest": yaml.safe_dump(h),
                "path": f"chromadb/templates/{h['kind']}",
                "events": hook_of(h).split(","),
                "last_run": {"started_at": "", "completed_at": "", "phase": ""},
                "weight": 0,
            }
            for h in hooks
        ],
    }
    encoded = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{RELEASE}.v1",
            "namespace": NAMESPACE,
            "labels": {"name": RELEASE, "owner": "helm", "status": "deployed", "version": "1"},
        },
        "data": {"release": base64.b64encode(encoded).decode()},
    }


def amikos_cluster(case: str) -> FakeCluster:
    """The cluster as `helm install chroma amikos/chromadb` (Helm 3) left it, with the pod and
    the PersistentVolumeClaim its StatefulSet made."""
    cluster = FakeCluster()
    manifest, hooks = [], []
    for obj in amikos_objects(case):
        hook = hook_of(obj)
        if hook:
            hooks.append(obj)
            if "test" in hook:
                continue  # test hooks run only under `helm test`
            cluster.add(obj, NAMESPACE)  # hooks carry no ownership metadata
            continue
        manifest.append(copy.deepcopy(obj))
        meta = obj["metadata"]
        meta.setdefault("annotations", {}).update(
            {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}
        )
        meta.setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
        cluster.add(obj, NAMESPACE)
    sts = cluster.get("StatefulSet", STS)
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{STS}-0", "labels": sts["spec"]["template"]["metadata"]["labels"]},
        },
        NAMESPACE,
    )
    for claim in sts["spec"].get("volumeClaimTemplates", []):
        cluster.add(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{claim['metadata']['name']}-{STS}-0"},
                "spec": claim["spec"],
            },
            NAMESPACE,
        )
    cluster.add(release_record(case, manifest, hooks))
    return cluster
