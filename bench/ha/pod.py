"""One pod of the HA benchmark as a process of its own: the gateway (with its HA Node when the
config enables ``ha``), against the fake API server at ``KUBE_URL``, until SIGTERM or SIGKILL.

    .venv/bin/python bench/ha/pod.py CONFIG.json KUBE_URL

Its CPU time is then the pod's alone (``/proc/<pid>/stat``), apart from its Chroma and from the
load generator. The same as :func:`chromactl.pod.serve_pod` (replication streams end when the
gateway shuts down) run as :func:`chromactl.pod.run` runs it (on uvloop), but for the API
server's address.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn

from chromactl.config import parse_config
from chromactl.gateway.server import serve
from chromactl.ha.kubeapi import KubeApi
from chromactl.pod import build_pod


async def main(config_path: str, kube_url: str) -> None:
    with open(config_path) as f:
        settings = parse_config(json.load(f))
    # the tests' API timeout with short lease timings, the in-cluster default with the chart's
    timeout_s = 0.5 if settings.ha.lease_duration_s < 10 else 2.0
    kube = KubeApi(kube_url, "default", timeout_s=timeout_s) if settings.ha.enabled else None
    pod = build_pod(settings, kube=kube)
    on_started = None
    if pod.node is not None:
        node = pod.node
        node.start()

        def on_started(server: uvicorn.Server) -> None:
            node.shutting_down = lambda: server.should_exit

    try:
        await serve(pod.settings, pod.gateway, on_started=on_started)
    finally:
        if pod.node is not None:
            await pod.node.stop()
        if pod.journal is not None:
            pod.journal.close()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # as chromactl.pod.run
        asyncio.run(main(sys.argv[1], sys.argv[2]))
    else:
        uvloop.run(main(sys.argv[1], sys.argv[2]))
