"""Run the gateway: uvicorn on the client port (TLS optional) and metrics on their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import uvicorn
from prometheus_client import CollectorRegistry, start_http_server

from chromactl.config import Settings
from chromactl.gateway.app import Gateway
from chromactl.gateway.chroma_metrics import InternalsCollector
from chromactl.gateway.protocol import ServerConfig
from chromactl.gateway.tls import ReloadingTLS

log = logging.getLogger("chromactl.gateway")


def uvicorn_config(settings: Settings, gateway: Gateway, tls: ReloadingTLS | None) -> uvicorn.Config:
    gw = settings.gateway
    limits = gw.client_limits
    config = ServerConfig(
        gateway,
        host=gw.listen_address,
        port=gw.port,
        client_limits=limits,
        peer_certificates=gw.auth.client_cert is not None,
        fast_path=gateway.fast,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=limits.keep_alive_s,
        limit_concurrency=limits.max_connections + 1,  # ours answers first (protocol)
        backlog=2048,
    )
    config.load()
    if tls is not None:
        # Our context, so that certificate reloads reach new handshakes.
        config.ssl = tls.context
    return config


def start_internals(settings: Settings, registry: CollectorRegistry) -> InternalsCollector | None:
    """Chroma's internals on ``registry``, read in a background thread."""
    gw = settings.gateway
    if not gw.metrics.internals:
        return None
    collector = InternalsCollector(
        settings.chroma.persist_path if gw.metrics.data_directory else None,
        chroma_url=settings.chroma.url,
        cert_file=gw.tls.cert_file if gw.tls.enabled else None,
        interval_s=gw.metrics.internals_interval_s,
        collection_series=gw.metrics.collection_series,
        read_budget_s=gw.metrics.internals_read_budget_s,
    )
    registry.register(collector)
    return collector.start()


async def serve(
    settings: Settings,
    gateway: Gateway,
    *,
    on_started: Callable[[uvicorn.Server], None] | None = None,
    sockets: list[socket.socket] | None = None,
    serve_metrics: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM (or until the returned server's ``should_exit``).

    ``sockets``: listening sockets to serve (a worker's, shared with the other workers)
    instead of binding ``gateway.port``; ``serve_metrics=False`` leaves the metrics port
    and Chroma's internals to someone else (a worker's supervisor).
    """
    gw = settings.gateway
    tls = ReloadingTLS(gw.tls) if gw.tls.enabled else None
    server = uvicorn.Server(uvicorn_config(settings, gateway, tls))
    metrics_server = None
    internals = None
    if gw.metrics_port is not None and serve_metrics:
        internals = start_internals(settings, gateway.metrics.registry)
        metrics_server, _ = start_http_server(
            gw.metrics_port, gw.metrics_address, registry=gateway.metrics.registry
        )
    watcher = asyncio.create_task(tls.watch()) if tls is not None else None
    log.info(
        "gateway on %s://%s:%d -> %s",
        "https" if tls else "http",
        gw.listen_address,
        gw.port,
        settings.chroma.url,
    )
    if on_started is not None:
        on_started(server)
    try:
        await server.serve(sockets=sockets)
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        if metrics_server is not None:
            metrics_server.shutdown()
        if internals is not None:
            internals.stop()
        await gateway.aclose()
