"""Restricted security defaults on every container the chart renders, init and test pods too."""

from __future__ import annotations

import pytest

from tests.chart.helm import Render, everything_values, render

RENDERS = {
    "default": lambda: render(),
    "everything": lambda: render(everything_values()),
    "legacy": lambda: render({"chromadb": {"apiVersion": "0.6.3"}}),
}


def containers(r: Render):
    for pod, spec in r.pod_specs():
        for kind in ("initContainers", "containers"):
            for container in spec.get(kind, []):
                yield pod, spec, container


@pytest.mark.parametrize("name", RENDERS)
def test_every_container_is_restricted(name: str) -> None:
    seen = 0
    for pod, spec, container in containers(RENDERS[name]()):
        seen += 1
        where = f"{pod}/{container['name']}"
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True, where
        assert ctx["allowPrivilegeEscalation"] is False, where
        assert ctx["capabilities"]["drop"] == ["ALL"], where
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
        assert ctx["readOnlyRootFilesystem"] is True, where
        pod_ctx = spec["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] > 0 and pod_ctx["fsGroup"] > 0, where
        assert spec["automountServiceAccountToken"] is False, where
    assert seen >= 3


def test_writable_paths_are_empty_dirs_or_data() -> None:
    r = render()
    mounts = {m["mountPath"]: m["name"] for m in r.container()["volumeMounts"]}
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert mounts["/data"] == "data"


def test_pod_and_container_contexts_are_separate_values() -> None:
    r = render({"podSecurityContext": {"fsGroup": 2000}, "securityContext": {"runAsUser": 12345}})
    assert r.pod_spec["securityContext"] == {
        "fsGroup": 2000,
        **{k: v for k, v in render().pod_spec["securityContext"].items() if k != "fsGroup"},
    }
    assert r.container()["securityContext"]["runAsUser"] == 12345
    assert r.pod_spec["securityContext"]["runAsUser"] == 10001


def test_service_account_token_only_when_asked() -> None:
    r = render()
    assert r.get("ServiceAccount")["automountServiceAccountToken"] is False
    on = render({"serviceAccount": {"automountServiceAccountToken": True}})
    assert on.pod_spec["automountServiceAccountToken"] is True


def test_existing_service_account() -> None:
    r = render({"serviceAccount": {"create": False, "name": "shared"}})
    assert not r.has("ServiceAccount")
    assert r.pod_spec["serviceAccountName"] == "shared"
