"""In-process high-availability pods for the fast tests: real Chroma servers, the fake API server,
and each pod's gateway with its :class:`~chromactl.ha.node.Node` served by uvicorn in a thread.

Each pod listens on a loopback address of its own (``127.0.0.11``, ``127.0.0.12``, ...) which is
also its pod name, so the peer URL ``http://{pod}:PORT`` reaches it as a pod's DNS name would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from chromactl.config import parse_config
from chromactl.gateway.server import serve
from chromactl.ha.kubeapi import KubeApi
from chromactl.ha.node import Node
from chromactl.pod import build_pod
from tests.chart.fake_kube import FakeCluster
from tests.gateway.helpers import Chroma, free_port, wait_until

#: Short lease timings so that failovers take seconds (the checks of Timings hold).
TIMINGS = {"lease_duration_s": 3.0, "renew_deadline_s": 1.5, "retry_period_s": 0.3}
API_TIMEOUT_S = 0.5
LEASE = "chroma-leader"
DB = "/api/v2/tenants/default_tenant/databases/default_database"


@dataclass
class HaPod:
    name: str
    url: str
    node: Node
    server: uvicorn.Server
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(self.url + "/chromactl/v1/ha/status", timeout=5).json()
        return found


def add_pod_object(kube: FakeCluster, name: str) -> None:
    kube.add({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {}}}, "default")


@contextlib.contextmanager
def run_ha_pod(
    name: str,
    chroma: Chroma,
    kube_url: str,
    port: int,
    state_dir: Path,
    backup: dict[str, Any] | None = None,
    **ha: Any,
) -> Iterator[HaPod]:
    """One pod: ``name`` is its loopback address; every pod of a test uses the same ``port``;
    ``backup``: the config's backup section."""
    config: dict[str, Any] = {
        "chroma": {"url": chroma.url, "persist_path": str(chroma.path / "data")},
        "gateway": {"listen_address": name, "port": port, "metrics_port": None, "auth": {"enabled": False}},
        "ha": {
            "enabled": True,
            "lease_name": LEASE,
            "pod_name": name,
            "peer_url": f"http://{{pod}}:{port}",
            "state_dir": str(state_dir),
            **TIMINGS,
            **ha,
        },
    }
    if backup is not None:
        config["backup"] = backup
    settings = parse_config(config)
    kube = KubeApi(f"http://{kube_url}", "default", timeout_s=API_TIMEOUT_S)
    holder: dict[str, Any] = {}
    started = threading.Event()

    def on_started(server: uvicorn.Server) -> None:
        holder["server"] = server
        holder["node"].shutting_down = lambda: server.should_exit
        started.set()

    def main() -> None:
        async def go() -> None:
            pod = build_pod(settings, kube=kube)
            holder["node"] = pod.node
            holder["loop"] = asyncio.get_running_loop()
            assert pod.node is not None
            pod.node.start()
            try:
                await serve(settings, pod.gateway, on_started=on_started)
            finally:
                await pod.node.stop()

        try:
            asyncio.run(go())
        except BaseException as exc:
            holder["error"] = exc
            started.set()

    thread = threading.Thread(target=main, daemon=True, name=f"pod-{name}")
    thread.start()
    if not started.wait(30) or "error" in holder:
        raise RuntimeError(f"pod {name} did not start: {holder.get('error')}")
    server: uvicorn.Server = holder["server"]
    wait_until(lambda: server.started, 30, f"pod {name} to listen")
    pod = HaPod(name, f"http://{name}:{port}", holder["node"], server, thread, holder["loop"])
    try:
        yield pod
    finally:
        server.should_exit = True
        thread.join(20)


def free_ha_port() -> int:
    return free_port()
