"""A pod's volumes, materialised on the host before its containers start.

emptyDir (a fresh directory per pod), PVCs (directories under the runner's workdir that
outlive the pod), configMap, secret, projected and downwardAPI volumes projected as files
(items, modes, ``defaultMode``; always read-only), and ``fsGroup`` as the owning group.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from tests.podrunner import environment
from tests.podrunner.common import Obj, PodError

if TYPE_CHECKING:
    from tests.podrunner.pod import Pod
    from tests.podrunner.runner import PodRunner


def volumes_for(runner: PodRunner, pod: Pod) -> dict[str, tuple[Path, bool]]:
    """Materialise the pod's volumes: name -> (host path, read-only)."""
    out: dict[str, tuple[Path, bool]] = {}
    fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
    for vol in pod.spec.get("volumes") or []:
        name = vol["name"]
        path = pod.dir / "volumes" / name
        if "emptyDir" in vol:
            path.mkdir(parents=True)
            path.chmod(0o777)
            out[name] = (path, False)
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            path = runner.pvc_dir(claim)
            path.mkdir(parents=True, exist_ok=True)
            out[name] = (path, bool(vol["persistentVolumeClaim"].get("readOnly")))
        elif {"configMap", "secret", "projected", "downwardAPI"} & set(vol):
            path.mkdir(parents=True)
            _project(runner, pod, vol, path)
            out[name] = (path, True)
        else:
            raise PodError(f"pod {pod.name}: volume {name}: unsupported type {sorted(vol)}")
        if fs_group is not None and not out[name][1]:
            for p in [path, *path.rglob("*")]:
                os.chown(p, -1, int(fs_group))
                os.chmod(p, os.stat(p).st_mode | 0o2070 if p.is_dir() else os.stat(p).st_mode | 0o060)
        elif fs_group is not None and path.is_relative_to(pod.dir):
            # Secret and configMap volumes: the kubelet gives them the fsGroup as owning
            # group, keeping the projected modes (so 0440 is readable by the pod's user).
            for p in [path, *path.rglob("*")]:
                os.chown(p, -1, int(fs_group))
    return out


def _project(runner: PodRunner, pod: Pod, vol: Obj, path: Path) -> None:
    sources: list[tuple[str, Obj]] = []
    default_mode = 0o644
    if "projected" in vol:
        default_mode = int(vol["projected"].get("defaultMode", default_mode))
        sources = [(k, v) for s in vol["projected"].get("sources") or [] for k, v in s.items()]
    else:
        kind = next(k for k in ("configMap", "secret", "downwardAPI") if k in vol)
        sources = [(kind, vol[kind])]
        default_mode = int(vol[kind].get("defaultMode", default_mode))
    for kind, src in sources:
        files: dict[str, tuple[bytes, int | None]] = {}
        if kind == "downwardAPI":
            for item in src.get("items") or []:
                value = (
                    environment.field(runner, pod, item["fieldRef"]["fieldPath"])
                    if "fieldRef" in item
                    else environment.resource(runner, pod, item["resourceFieldRef"])
                )
                files[item["path"]] = (value.encode(), item.get("mode"))
        elif kind in ("configMap", "secret"):
            obj_kind = "ConfigMap" if kind == "configMap" else "Secret"
            obj_name = src.get("name") or src.get("secretName")
            data = runner.store.data(obj_kind, obj_name)
            if data is None:
                if src.get("optional"):
                    continue
                raise PodError(f"pod {pod.name}: volume {vol['name']}: {obj_kind} {obj_name!r} not found")
            items = src.get("items")
            if items is None:
                files = {k: (v, None) for k, v in data.items()}
            for item in items or []:
                if item["key"] not in data:
                    if src.get("optional"):
                        continue
                    raise PodError(
                        f"pod {pod.name}: volume {vol['name']}: {obj_kind} "
                        f"{obj_name!r} has no key {item['key']!r}"
                    )
                files[item["path"]] = (data[item["key"]], item.get("mode"))
        else:
            raise PodError(f"pod {pod.name}: volume {vol['name']}: unsupported projection {kind}")
        for rel, (content, mode) in files.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(int(mode) if mode is not None else default_mode)
