"""One gateway worker process, started by the supervisor (:mod:`chromactl.pod.supervisor`).

It serves the client port on the listening socket the supervisor opened for it in the
workers' ``SO_REUSEPORT`` group (inherited as descriptor ``CHROMACTL_WORKER_LISTENER``),
with its own event loop and write gate. The supervisor holds
that gate through the control socket ``CHROMACTL_WORKER_CONTROL``; agent API requests,
once authenticated and authorized here, go to the supervisor's agent socket
``CHROMACTL_WORKER_AGENT``. Metrics go to ``PROMETHEUS_MULTIPROC_DIR``, which the
supervisor sums on its metrics port. The settings come as JSON in ``CHROMACTL_WORKER_SETTINGS``.

    python -m chromactl.pod.worker
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import uvicorn

from chromactl.config import Settings
from chromactl.gateway.app import build_gateway
from chromactl.gateway.hold_gate import WriteGate
from chromactl.gateway.proxy import ReverseProxy
from chromactl.gateway.request_metrics import GatewayMetrics
from chromactl.gateway.server import serve
from chromactl.gateway.upstream import AiohttpUpstream
from chromactl.logging import configure_logging

from . import continuous
from .control import WorkerControl
from .heap import settle_for_serving

SETTINGS_ENV = "CHROMACTL_WORKER_SETTINGS"
CONTROL_ENV = "CHROMACTL_WORKER_CONTROL"
AGENT_ENV = "CHROMACTL_WORKER_AGENT"
LISTENER_ENV = "CHROMACTL_WORKER_LISTENER"
#: The worker's number (0, 1, ...): its audit file is ``gateway.audit.file`` + ``.<n>``.
SLOT_ENV = "CHROMACTL_WORKER_SLOT"


async def work(settings: Settings, listener: socket.socket, control_path: Path, agent_path: Path) -> None:
    gw = settings.gateway
    gate = WriteGate()
    agent = ReverseProxy(AiohttpUpstream("http://chromactl-pod", uds=str(agent_path)))
    slot = os.environ.get(SLOT_ENV, "0")
    journal = continuous.journal(settings, f"w{slot}") if continuous.enabled(settings) else None
    gateway = build_gateway(
        settings,
        gate=gate,
        metrics=GatewayMetrics(database_series=gw.metrics.database_series),
        agent=agent,
        audit_suffix=f".{slot}",
        journal=journal,
        process=int(slot),
    )
    servers: list[uvicorn.Server] = []

    def lost() -> None:
        for server in servers:
            server.should_exit = True

    control = WorkerControl(gate, control_path, on_lost=lost)
    # Holds in force are taken before the first request is served.
    follow = await control.connect(os.getpid())
    try:
        await serve(settings, gateway, sockets=[listener], serve_metrics=False, on_started=servers.append)
    finally:
        follow.cancel()
        await agent.upstream.aclose()
        if journal is not None:
            journal.close()


def main() -> None:
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log)
    listener = socket.socket(fileno=int(os.environ[LISTENER_ENV]))
    coro = work(settings, listener, Path(os.environ[CONTROL_ENV]), Path(os.environ[AGENT_ENV]))
    settle_for_serving()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
