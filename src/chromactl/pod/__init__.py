"""The chromactl process in Chroma's pod: the gateway, and the backup service behind its agent API.

The gateway and the backup package know nothing of each other; this is where they meet.
The backup service's routes join the gateway's agent API, and its write hold is the
gateway's own :class:`~chromactl.gateway.hold_gate.WriteGate` (see :mod:`.hold`). With
``gateway.workers`` above 1, a supervisor (:mod:`.supervisor`) runs the workers
(:mod:`.worker`) and holds all their gates as one (:mod:`.control`). With high availability
(``ha``) the pod's :class:`~chromactl.ha.node.Node` joins too: its routes join the agent API,
the journal feeds its replication log, and the gateway asks it whether to take writes; the
gateway is then one process (the replication log is numbered in one place).
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import uvicorn

from chromactl import chromadata
from chromactl.backup.operations.service import BackupService, Runner
from chromactl.backup.snapshot.run import run_backup
from chromactl.config import Settings
from chromactl.errors import ConfigError
from chromactl.gateway.app import Gateway, build_gateway
from chromactl.gateway.hold_gate import WriteGate
from chromactl.gateway.journal_writer import Journal
from chromactl.gateway.request_metrics import GatewayMetrics
from chromactl.gateway.server import serve
from chromactl.ha.kubeapi import KubeApi
from chromactl.ha.node import Node, state_dir
from chromactl.ha.routes import ha_routes

from . import continuous
from .cpus import default_workers
from .heap import settle_for_serving
from .hold import gate_hold


@dataclass(frozen=True)
class Pod:
    settings: Settings
    gateway: Gateway
    backups: BackupService
    journal: Journal | None = None
    node: Node | None = None


def _chroma_empty(settings: Settings) -> bool:
    db = settings.chroma.persist_path / chromadata.SQLITE_NAME
    return not db.exists() or not chromadata.collection_rows(db)


def build_pod(settings: Settings, *, runner: Runner = run_backup, kube: KubeApi | None = None) -> Pod:
    """The gateway with the backup service; backups hold this gateway's writes. With
    continuous backup, the gateway journals its writes (see :mod:`.continuous`); with high
    availability, into the replication log too (``kube``: the API server, default in-cluster)."""
    metrics = GatewayMetrics(database_series=settings.gateway.metrics.database_series)
    node = None
    if settings.ha.enabled:
        node = Node(
            settings,
            kube or KubeApi.in_cluster(),
            metrics.registry,
            chroma_empty=lambda: _chroma_empty(settings),
        )
    journal = None
    if continuous.enabled(settings):
        settings = continuous.with_journal_dir(settings)
        journal = continuous.journal(settings, "main", replication=node)
    elif node is not None:
        database = settings.chroma.persist_path / chromadata.SQLITE_NAME
        journal = Journal(state_dir(settings), "ha", database, spool=False, replication=node)
    gate = WriteGate()
    timeout_s = settings.backup.hold_timeout_s
    backups = BackupService(
        settings, metrics.registry, lambda loop: gate_hold(gate, loop, timeout_s), runner=runner
    )
    agent_routes = backups.routes() + (ha_routes(node, gate) if node is not None else [])
    gateway = build_gateway(
        settings, gate=gate, metrics=metrics, agent_routes=agent_routes, journal=journal, role=node
    )
    return Pod(settings, gateway, backups, journal, node)


async def serve_pod(settings: Settings) -> None:
    pod = build_pod(settings)
    pod.backups.seed_metrics()
    shipper = None
    if pod.journal is not None and pod.journal.spool is not None:
        shipper = continuous.shipper(
            pod.settings, pod.backups, pod.gateway.metrics.registry, asyncio.get_running_loop()
        )
        shipper.start()
        # uvicorn raises the signal again once it has stopped serving: with the default
        # handler SIGTERM would end the process before the last journal entries are shipped.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
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
        if shipper is not None:
            await asyncio.to_thread(shipper.stop)
        if pod.journal is not None:
            pod.journal.close()


def workers(settings: Settings) -> int:
    """``gateway.workers``, or as many as the container's CPUs call for (one with ``ha``)."""
    if settings.ha.enabled:
        if (settings.gateway.workers or 1) > 1:
            raise ConfigError(
                "ha.enabled needs gateway.workers: 1 (the replication log is numbered by one process)"
            )
        return 1
    return settings.gateway.workers or default_workers()


def run(settings: Settings) -> None:
    """Blocking entry point for ``chromactl gateway`` (uvloop when available): one process,
    or a supervisor with several workers (:mod:`.supervisor`)."""
    count = workers(settings)
    if count > 1:
        from .supervisor import supervise

        main = supervise(settings, count)
    else:
        main = serve_pod(settings)
    settle_for_serving()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main)
    else:
        uvloop.run(main)
