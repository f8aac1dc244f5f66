"""A container's environment and command, as the kubelet makes them.

``value`` with ``$(VAR)`` expansion, ``valueFrom`` (secretKeyRef, configMapKeyRef, fieldRef,
resourceFieldRef), ``envFrom`` with prefix, the ``<SVC>_SERVICE_HOST``-style variables of
``enableServiceLinks``, and ``command``/``args`` over the image's Entrypoint and Cmd.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from tests.podrunner import images as image_table
from tests.podrunner import network
from tests.podrunner.common import Obj, PodError
from tests.podrunner.objects import selects

if TYPE_CHECKING:
    from tests.podrunner.pod import Container, Pod
    from tests.podrunner.runner import PodRunner

#: PATH for a container whose image sets none (the runtime's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` escapes, unknown names stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def _quantity(value: str | int | float) -> float:
    text = str(value)
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
    }
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def field(runner: PodRunner, pod: Pod, path: str) -> str:
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": runner.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": "podrunner",
        "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
        "status.podIP": pod.ip,
        "status.podIPs": pod.ip,
        "status.hostIP": runner.network.gateway,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta_of(pod, match.group(1))).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta_of(pod, path.split(".")[1])
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise PodError(f"pod {pod.name}: unsupported fieldRef {path!r}")


def meta_of(pod: Pod, key: str) -> dict[str, str]:
    return pod.meta.get(key) or {}


def resource(runner: PodRunner, pod: Pod, ref: Obj, container: Obj | None = None) -> str:
    if container is None:
        name = ref.get("containerName")
        container = next((c.spec for c in pod.containers if c.name == name), {})
    kind, res = ref["resource"].split(".", 1)
    value = (container.get("resources") or {}).get(kind, {}).get(res)
    if value is None:
        value = os.cpu_count() if res == "cpu" else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    divisor = _quantity(ref.get("divisor", 1))
    amount = _quantity(value) / divisor
    return str(int(-(-amount // 1)))


def container_env(runner: PodRunner, pod: Pod, c: Container) -> dict[str, str]:
    env: dict[str, str] = {}
    for src in c.spec.get("envFrom") or []:
        kind, ref = (
            ("ConfigMap", src["configMapRef"]) if "configMapRef" in src else ("Secret", src["secretRef"])
        )
        data = runner.store.data(kind, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise PodError(f"envFrom: {kind} {ref['name']!r} not found")
        env |= {src.get("prefix", "") + k: v.decode() for k, v in data.items()}
    for item in c.spec.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        vf = item["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field(runner, pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = resource(runner, pod, vf["resourceFieldRef"], c.spec)
        else:
            kind, ref = (
                ("ConfigMap", vf["configMapKeyRef"])
                if "configMapKeyRef" in vf
                else ("Secret", vf["secretKeyRef"])
            )
            data = runner.store.data(kind, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                what = "not found" if data is None else f"has no key {ref['key']!r}"
                raise PodError(f"env {name}: {kind} {ref['name']!r} {what}")
            env[name] = data[ref["key"]].decode()
    return env


def service_env(runner: PodRunner, pod: Pod) -> dict[str, str]:
    """The ``<SVC>_SERVICE_HOST``-style variables of ``enableServiceLinks``."""
    env: dict[str, str] = {}
    if pod.spec.get("enableServiceLinks", True) is False:
        return env
    for svc in runner.store.of_kind("Service"):
        spec = svc.get("spec", {})
        if spec.get("clusterIP") == "None":
            continue
        target = pod if selects(spec.get("selector") or {}, pod.labels) else network.service_pod(runner, svc)
        if target is None:
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = spec.get("ports") or []
        if not ports:
            continue
        ip = target.ip
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        env[f"{prefix}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            base = f"{prefix}_PORT_{p['port']}_{proto}"
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
            env |= {
                base: f"{proto.lower()}://{ip}:{p['port']}",
                f"{base}_PROTO": proto.lower(),
                f"{base}_PORT": str(p["port"]),
                f"{base}_ADDR": ip,
            }
    return env


def command(spec: Obj, image: image_table.Image, env: dict[str, str]) -> list[str]:
    """``command`` replaces the image's Entrypoint (and its Cmd), ``args`` alone its Cmd."""
    if "command" in spec:
        argv = [*spec["command"], *spec.get("args", [])]
    else:
        argv = [*image.entrypoint, *spec.get("args", image.cmd)]
    return [expand(str(a), env) for a in argv]
