"""The chromactl process in Chroma's pod: the gateway, and the backup service behind its agent API.

The gateway and the backup package know nothing of each other; this is where they meet.
The backup service's routes join the gateway's agent API, and its write hold is the
gateway's own :class:`~chromactl.gateway.writegate.WriteGate` (see :mod:`.holds`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chromactl.backup.run import run_backup
from chromactl.backup.service import BackupService, Runner
from chromactl.config import Settings
from chromactl.gateway.app import Gateway, build_gateway
from chromactl.gateway.metrics import GatewayMetrics
from chromactl.gateway.server import serve
from chromactl.gateway.writegate import WriteGate

from .holds import gate_hold


@dataclass(frozen=True)
class Pod:
    gateway: Gateway
    backups: BackupService


def build_pod(settings: Settings, *, runner: Runner = run_backup) -> Pod:
    """The gateway with the backup service; backups hold this gateway's writes."""
    gate = WriteGate()
    metrics = GatewayMetrics(database_series=settings.gateway.metrics.database_series)
    timeout_s = settings.backup.hold_timeout_s
    backups = BackupService(
        settings, metrics.registry, lambda loop: gate_hold(gate, loop, timeout_s), runner=runner
    )
    gateway = build_gateway(settings, gate=gate, metrics=metrics, agent_routes=backups.routes())
    return Pod(gateway, backups)


async def serve_pod(settings: Settings) -> None:
    pod = build_pod(settings)
    pod.backups.seed_metrics()
    await serve(settings, pod.gateway)


def run(settings: Settings) -> None:
    """Blocking entry point for ``chromactl gateway`` (uvloop when available)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(serve_pod(settings))
    else:
        uvloop.run(serve_pod(settings))
