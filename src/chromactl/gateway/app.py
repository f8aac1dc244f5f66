"""Compose the gateway from its steps (:mod:`chromactl.gateway.middleware`, one module each).

Request path, outermost first (as :func:`build_gateway` lists the steps)::

    errors -> classify (prefix) -> audit -> metrics -> body timeout -> body limit
      -> console | authentication -> identity -> authorization -> [limits] -> agent API | write hold
      -> [role] -> [journal] -> reverse proxy

The limits step is there with ``gateway.limits``, the role step with high availability
(``ha``), the journal step with continuous backup (``backup.continuous``) or high availability.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from starlette.routing import BaseRoute

from chromactl.chromadata import SQLITE_NAME
from chromactl.config import GatewaySettings, Settings
from chromactl.gateway.admin_api import admin_routes
from chromactl.gateway.audit_log import AuditLog
from chromactl.gateway.auth.base import Authenticator
from chromactl.gateway.auth.basic import BasicAuthenticator
from chromactl.gateway.auth.client_cert import ClientCertAuthenticator
from chromactl.gateway.auth.oidc import OIDCAuthenticator
from chromactl.gateway.auth.token import TokenAuthenticator
from chromactl.gateway.collection_cache import CollectionResolver
from chromactl.gateway.console import Console, ConsoleSwitch
from chromactl.gateway.console.session import SessionSealer
from chromactl.gateway.fastpath.handler import FastPath
from chromactl.gateway.fastpath.upstream import RawUpstream
from chromactl.gateway.hold_api import agent_app
from chromactl.gateway.hold_gate import WriteGate
from chromactl.gateway.journal_writer import Journal
from chromactl.gateway.middleware.agent_switch import AgentSwitch
from chromactl.gateway.middleware.audit import AuditMiddleware
from chromactl.gateway.middleware.authentication import AuthenticationMiddleware
from chromactl.gateway.middleware.authorization import AuthorizationMiddleware
from chromactl.gateway.middleware.body_limit import BodyLimitMiddleware
from chromactl.gateway.middleware.body_timeout import BodyTimeoutMiddleware
from chromactl.gateway.middleware.classify import ClassifyMiddleware
from chromactl.gateway.middleware.errors import ErrorMiddleware
from chromactl.gateway.middleware.identity import IdentityMiddleware
from chromactl.gateway.middleware.journal import JournalMiddleware
from chromactl.gateway.middleware.legacy_clients import LegacyClientsMiddleware
from chromactl.gateway.middleware.limits import LimitsMiddleware, build_limits
from chromactl.gateway.middleware.metrics import MetricsMiddleware
from chromactl.gateway.middleware.role import Role, RoleMiddleware
from chromactl.gateway.middleware.write_hold import WriteHoldMiddleware
from chromactl.gateway.proxy import ReverseProxy
from chromactl.gateway.request_metrics import GatewayMetrics
from chromactl.gateway.types import ASGIApp, Receive, Scope, Send
from chromactl.gateway.upstream import Upstream, make_upstream

_T = TypeVar("_T")


def build_authenticators(gw: GatewaySettings) -> list[Authenticator]:
    """The configured authenticators, in the order they are tried."""
    auth = gw.auth
    found: list[Authenticator] = []
    if auth.token is not None:
        found.append(TokenAuthenticator.from_settings(auth.token, defer_jwt=auth.oidc is not None))
    if auth.basic is not None:
        found.append(BasicAuthenticator.from_settings(auth.basic))
    if auth.oidc is not None:
        found.append(OIDCAuthenticator(auth.oidc))
    if auth.client_cert is not None:
        found.append(ClientCertAuthenticator(auth.client_cert))
    return found


def challenges(gw: GatewaySettings) -> list[str]:
    out = []
    if gw.auth.token is not None or gw.auth.oidc is not None:
        out.append('Bearer realm="chroma"')
    if gw.auth.basic is not None:
        out.append('Basic realm="chroma", charset="UTF-8"')
    return out or ['Bearer realm="chroma"']


@dataclass
class Gateway:
    """The composed ASGI app and the parts callers may need in-process."""

    app: ASGIApp
    gate: WriteGate
    metrics: GatewayMetrics
    upstream: Upstream
    resolver: CollectionResolver
    authenticators: list[Authenticator]
    audit: AuditLog
    #: Serves Chroma's routes below ASGI with the same steps (None: the ASGI app serves all).
    fast: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(self, receive, send)
            return
        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        if self.fast is not None:
            self.fast.upstream.close()
        await self.upstream.aclose()
        self.audit.close()


async def _lifespan(gw: Gateway, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            with contextlib.suppress(Exception):
                await gw.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_gateway(
    settings: Settings,
    *,
    gate: WriteGate | None = None,
    metrics: GatewayMetrics | None = None,
    upstream: Upstream | None = None,
    agent_routes: Sequence[BaseRoute] = (),
    agent: ASGIApp | None = None,
    audit_suffix: str = "",
    journal: Journal | None = None,
    role: Role | None = None,
    process: int = 0,
    console_sealer: SessionSealer | None = None,
) -> Gateway:
    """The gateway for ``settings``; pass ``gate`` to share it with in-process users.

    The agent API is served over ``gate`` with ``agent_routes`` beside its hold routes,
    unless ``agent`` is given: then agent requests, once authorized, go to that app (a
    worker process forwards them to its supervisor). ``audit_suffix`` is appended to the
    audit file's name (each worker process writes its own file). Writes Chroma
    acknowledged go to ``journal`` when one is given; with ``role`` only the primary takes
    writes (high availability). ``process``: this gateway process's
    number in the pod (the limits count in-flight requests per process). ``console_sealer``
    seals the web console's sessions (a pod's workers share one; default: from
    ``gateway.console.session_key_file``, else a key of this process's own).
    """
    gw = settings.gateway
    gate = gate or WriteGate()
    metrics = metrics or GatewayMetrics(database_series=gw.metrics.database_series)
    upstream = upstream or make_upstream(
        settings.chroma.url, keepalive=gw.upstream_keepalive, timeout_s=gw.upstream_timeout_s
    )
    resolver = CollectionResolver(upstream, size=gw.collection_cache_size, ttl_s=gw.collection_cache_ttl_s)
    authenticators = build_authenticators(gw)
    audit = AuditLog(gw.audit, file_suffix=audit_suffix)

    database = settings.chroma.persist_path / SQLITE_NAME
    limits: list[Callable[[ASGIApp], ASGIApp]] = []
    if gw.limits.enabled:
        limits.append(lambda a: build_limits(a, gw.limits, database, process, metrics.limited_request))
    legacy: list[Callable[[ASGIApp], ASGIApp]] = []
    if gw.legacy_clients:
        legacy.append(
            lambda a: LegacyClientsMiddleware(
                a,
                prefix=gw.path_prefix,
                max_body_bytes=gw.max_body_bytes,
                body_timeout_s=gw.client_limits.body_timeout_s,
                body_deadline_s=gw.client_limits.body_deadline_s,
                on_request=metrics.legacy_request,
            )
        )
    built: list[ASGIApp] = []

    def limits_step() -> LimitsMiddleware | None:
        return _step(built[0], LimitsMiddleware) if gw.limits.enabled and built else None

    def limit_refusals() -> Iterable[tuple[tuple[str, str, str], int]]:
        step = limits_step()
        return list(step.refusals.items()) if step is not None else ()

    admin = admin_routes(
        settings,
        audit=lambda: audit,
        rules=lambda: step.rules if (step := limits_step()) is not None else None,
        refusals=limit_refusals,
    )
    console = Console(settings, lambda: built[0], sealer=console_sealer) if gw.console.enabled else None
    #: Outermost first: each step wraps the ones after it.
    steps: list[Callable[[ASGIApp], ASGIApp]] = [
        lambda a: ErrorMiddleware(a, on_uncounted=metrics.unhandled),
        *legacy,
        lambda a: ClassifyMiddleware(a, gw.path_prefix),
        lambda a: AuditMiddleware(a, audit, metrics.audit_event),
        lambda a: MetricsMiddleware(a, metrics),
        lambda a: BodyTimeoutMiddleware(a, gw.client_limits.body_timeout_s, gw.client_limits.body_deadline_s),
        lambda a: BodyLimitMiddleware(a, gw.max_body_bytes),
        lambda a: ConsoleSwitch(a, console),
        lambda a: AuthenticationMiddleware(
            a,
            authenticators,
            enabled=gw.auth.enabled,
            challenges=challenges(gw),
            on_failure=metrics.auth_failure,
        ),
        lambda a: IdentityMiddleware(a),
        lambda a: AuthorizationMiddleware(
            a,
            resolver,
            allow_reset=gw.allow_reset,
            on_denied=metrics.denial,
            on_cross_tenant=metrics.cross_tenant_refusal,
        ),
        *limits,
        lambda a: AgentSwitch(a, agent or agent_app(gate, gw.max_hold_s, [*agent_routes, *admin])),
        lambda a: WriteHoldMiddleware(a, gate, gw.write_wait_s),
    ]
    if role is not None:
        steps.append(lambda a: RoleMiddleware(a, role))
    if journal is not None:
        steps.append(lambda a: JournalMiddleware(a, journal, upstream))
    scheme = "https" if gw.tls.enabled else "http"
    app: ASGIApp = ReverseProxy(upstream, scheme=scheme)
    for wrap in reversed(steps):
        app = wrap(app)
    built.append(app)
    gateway = Gateway(app, gate, metrics, upstream, resolver, authenticators, audit)
    if gw.fast_path and urlsplit(settings.chroma.url).scheme == "http":
        gateway.fast = FastPath(
            RawUpstream(settings.chroma.url, keepalive=gw.upstream_keepalive),
            classifier=_step(app, ClassifyMiddleware),
            audit=_step(app, AuditMiddleware),
            metrics=metrics,
            max_body_bytes=gw.max_body_bytes,
            body_timeout_s=gw.client_limits.body_timeout_s,
            body_deadline_s=gw.client_limits.body_deadline_s,
            authentication=_step(app, AuthenticationMiddleware),
            authorization=_step(app, AuthorizationMiddleware),
            limits=_step(app, LimitsMiddleware) if gw.limits.enabled else None,
            gate=gate,
            write_wait_s=gw.write_wait_s,
            role=_step(app, RoleMiddleware) if role is not None else None,
            journal=_step(app, JournalMiddleware) if journal is not None else None,
            upstream_timeout_s=gw.upstream_timeout_s,
            scheme=scheme,
            legacy=_step(app, LegacyClientsMiddleware) if gw.legacy_clients else None,
        )
    return gateway


def _step(app: object, kind: type[_T]) -> _T:
    """The step of ``kind`` in the chain that starts at ``app`` (the fast path calls the same
    instances' decisions)."""
    while app is not None:
        if isinstance(app, kind):
            return app
        app = getattr(app, "app", None)
    raise LookupError(f"no {kind.__name__} step in the gateway")


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    """Close the gateway's upstream pool when done."""
    try:
        yield gateway
    finally:
        await gateway.aclose()
