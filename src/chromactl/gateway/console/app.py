"""The console's route table, its sign-in and sign-out, and the headers of every answer."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router

from chromactl.config import Settings
from chromactl.gateway.console.admin import AdminPages
from chromactl.gateway.console.api import ApiError, ConsoleApi
from chromactl.gateway.console.oidc import OIDCSignIn, SignInFailed
from chromactl.gateway.console.pages import Pages
from chromactl.gateway.console.session import Session, SessionSealer
from chromactl.gateway.principal import Principal, Reach, Role
from chromactl.gateway.types import ASGIApp, Message, Receive, Scope, Send

#: No script at all, styles from this origin only, no framing, forms back to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # Same-origin: no other site learns a console address; forms here keep their Origin.
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
#: The sign-in form is small; anything larger is not one.
_MAX_FORM_BYTES = 16384
#: Browsers keep cookies up to 4 KB with their name and attributes.
MAX_COOKIE_BYTES = 3800
_STATIC = Path(__file__).parent / "static"


@dataclass
class Visit:
    """One page view of a signed-in browser: its session, the API as it may call it, and who
    the gateway's authentication said it is."""

    session: Session
    api: ConsoleApi
    principal: Principal
    identity: dict[str, Any]

    @property
    def is_admin(self) -> bool:
        return self.principal.may(Role.ADMIN, Reach.EVERYTHING)


def load_sealer(settings: Settings) -> SessionSealer:
    path = settings.gateway.console.session_key_file
    if path is None:
        return SessionSealer.random()
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(
            f"gateway.console.session_key_file {path}: the key must be 32 bytes or more, not {len(key)}"
        )
    return SessionSealer(key)


class Console:
    """The console's ASGI app (``gateway`` gives the gateway's outermost step, for its reads)."""

    def __init__(
        self, settings: Settings, gateway: Callable[[], ASGIApp], *, sealer: SessionSealer | None = None
    ) -> None:
        gw = settings.gateway
        self.settings = settings
        self.config = gw.console
        self.gateway = gateway
        self.prefix = gw.path_prefix
        self.base = gw.path_prefix + "/console"
        self.sealer = sealer or load_sealer(settings)
        public = self.config.public_url or ""
        self.secure = gw.tls.enabled or public.startswith("https://")
        #: ``__Host-``: only ever sent to this host, over TLS, for path ``/``.
        self.cookie = ("__Host-" if self.secure else "") + "chromactl-console"
        self.flow_cookie = ("__Host-" if self.secure else "") + "chromactl-console-oidc"
        auth = gw.auth
        self.oidc = OIDCSignIn(self.config.oidc, auth.oidc) if self.config.oidc and auth.oidc else None
        self.methods = {
            "none": not auth.enabled,
            "token": auth.enabled and (auth.token is not None or auth.oidc is not None),
            "basic": auth.enabled and auth.basic is not None,
            "oidc": auth.enabled and self.oidc is not None,
            "certificate": auth.enabled and auth.client_cert is not None,
        }
        self.templates = Environment(
            loader=PackageLoader("chromactl.gateway.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["seg"] = lambda value: quote(str(value), safe="")
        pages, admin = Pages(self), AdminPages(self)
        # Routes match the path without gateway.path_prefix (the classify step moved it to
        # root_path); links and redirects name self.base, the path browsers see.
        b = "/console"
        #: The console's pages: every one but sign-in, the OIDC return and the style sheet
        #: needs a signed-in browser.
        self.router = Router(
            routes=[
                Route(b, self.to_home, methods=["GET"]),
                Route(b + "/", self.page(pages.home), methods=["GET"]),
                Route(b + "/sign-in", self.sign_in_page, methods=["GET"]),
                Route(b + "/sign-in", self.sign_in, methods=["POST"]),
                Route(b + "/sign-out", self.sign_out, methods=["POST"]),
                Route(b + "/oidc/start", self.oidc_start, methods=["GET"]),
                Route(b + "/oidc/callback", self.oidc_callback, methods=["GET"]),
                Route(b + "/static/console.css", self.stylesheet, methods=["GET"]),
                Route(b + "/t/{tenant}/d/{database}/", self.page(pages.collections), methods=["GET"]),
                Route(
                    b + "/t/{tenant}/d/{database}/c/{collection}/", self.page(pages.records), methods=["GET"]
                ),
                Route(
                    b + "/t/{tenant}/d/{database}/c/{collection}/similar",
                    self.page(pages.similar),
                    methods=["GET"],
                ),
                Route(b + "/admin/backups", self.page(admin.backups), methods=["GET"]),
                Route(b + "/admin/operations", self.page(admin.operations), methods=["GET"]),
                Route(b + "/admin/audit", self.page(admin.audit), methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.router(scope, receive, with_headers)

    # -- rendering ----------------------------------------------------------------------------

    def render(
        self, template: str, *, status: int = 200, visit: Visit | None = None, **context: Any
    ) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            base=self.base,
            user=visit.session.user_id if visit else "",
            method=visit.session.method if visit else "",
            is_admin=visit.is_admin if visit else False,
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def failed(self, visit: Visit, error: ApiError, title: str) -> HTMLResponse:
        """A read the gateway refused or Chroma failed: the page says which and why."""
        return self.render("error.html", status=error.status, visit=visit, title=title, error=error)

    # -- sessions -------------------------------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        value = request.cookies.get(self.cookie)
        return self.sealer.open(value) if value else None

    def _set_session(self, response: Response, session: Session, sealed: str) -> None:
        """The cookie holding ``session``, ``sealed``."""
        response.set_cookie(
            self.cookie,
            sealed,
            max_age=max(int(session.expires - time.time()), 1),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def _signed_out(self, reason: str, next_path: str = "") -> Response:
        query = ({"reason": reason} if reason else {}) | ({"next": next_path} if next_path else {})
        response = RedirectResponse(f"{self.base}/sign-in?{urlencode(query)}", status_code=303)
        response.delete_cookie(self.cookie, path="/", secure=self.secure, httponly=True, samesite="strict")
        return response

    def api(self, request: Request, authorization: str) -> ConsoleApi:
        return ConsoleApi(self.gateway(), request.scope, authorization, self.prefix)

    def page(
        self, handler: Callable[[Request, Visit], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint of a page a signed-in browser sees: ``handler`` gets its visit, anyone
        else the way to sign in (or the page that says why the session cannot be checked)."""

        async def endpoint(request: Request) -> Response:
            visit = await self.visit(request)
            return visit if isinstance(visit, Response) else await handler(request, visit)

        return endpoint

    async def visit(self, request: Request) -> Visit | Response:
        """The signed-in browser behind ``request``, authenticated again through the gateway,
        or the way to the sign-in page."""
        session = self.session_of(request)
        if session is None:
            return self._signed_out("", request.url.path)
        api = self.api(request, session.authorization)
        try:
            identity, principal = await api.whoami()
        except ApiError as error:
            if error.status in (401, 403):
                return self._signed_out(f"signed out: {error.message}", request.url.path)
            # Rate-limited, or the gateway cannot answer: the page says so (with its headers).
            return self.render("error.html", status=error.status, title="Chroma console", error=error)
        return Visit(session, api, principal, identity)

    # -- sign-in and sign-out -------------------------------------------------------------------

    async def to_home(self, request: Request) -> Response:
        return RedirectResponse(self.base + "/", status_code=308)

    async def stylesheet(self, request: Request) -> Response:
        return FileResponse(_STATIC / "console.css", media_type="text/css")

    def _sign_in_form(self, request: Request, *, error: str = "", status: int = 200) -> HTMLResponse:
        tls = (request.scope.get("extensions") or {}).get("tls") or {}
        names = tls.get("client_cert_names") or []
        return self.render(
            "sign_in.html",
            status=status,
            title="Sign in",
            methods=self.methods,
            certificate=names[0] if names else "",
            reason=request.query_params.get("reason", ""),
            error=error,
            next=self._next(request.query_params.get("next", "")),
        )

    async def sign_in_page(self, request: Request) -> Response:
        return self._sign_in_form(request)

    def _next(self, value: str) -> str:
        """Where to go after signing in: a console page, nothing else (no open redirect)."""
        if value.startswith(self.base + "/") and "//" not in value and "\\" not in value:
            return value
        return self.base + "/"

    def _cross_site(self, request: Request) -> bool:
        """A form another site's page sent (login CSRF). A browser says where a request
        comes from in ``Sec-Fetch-Site``; one too old for it, in ``Origin`` (``null`` when
        the sending page hid it)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None:
            return site not in ("same-origin", "none")
        origin = request.headers.get("origin")
        if origin is None:
            return False  # not a browser's form
        if origin == "null":
            return True
        hosts = {request.headers.get("host", "")}
        if self.config.public_url:
            hosts.add(urlsplit(self.config.public_url).netloc)
        return urlsplit(origin).netloc not in hosts

    async def sign_in(self, request: Request) -> Response:
        if self._cross_site(request):
            return self._sign_in_form(request, error="a sign-in sent by another site is refused", status=403)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM_BYTES:
                return self._sign_in_form(request, error="the form is too large", status=413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        method = form.get("method", "")
        if not self.methods.get(method):
            return self._sign_in_form(
                request, error=f"sign-in with {method or 'nothing'} is not on here", status=400
            )
        authorization = ""
        if method == "token":
            token = form.get("token", "").strip()
            if not token:
                return self._sign_in_form(request, error="enter a token", status=400)
            if not (token.isascii() and token.isprintable()):
                return self._sign_in_form(
                    request, error="a token is printable ASCII: check what was pasted", status=400
                )
            authorization = f"Bearer {token}"
        elif method == "basic":
            pair = f"{form.get('username', '')}:{form.get('password', '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        elif method == "oidc":
            return RedirectResponse(f"{self.base}/oidc/start", status_code=303)
        return await self._start_session(request, method, [authorization], self._next(form.get("next", "")))

    async def _start_session(
        self, request: Request, method: str, authorizations: list[str], next_path: str
    ) -> Response:
        """Sign in with the first of ``authorizations`` the gateway's authentication accepts."""
        last: ApiError | None = None
        for authorization in authorizations:
            try:
                identity, _ = await self.api(request, authorization).whoami()
            except ApiError as error:
                last = error
                continue
            user = str(identity.get("user_id", ""))
            session = Session(method, authorization, user, time.time() + self.config.session_ttl_s)
            sealed = self.sealer.seal(session)
            if len(sealed) > MAX_COOKIE_BYTES:
                last = ApiError(
                    400,
                    "TooLarge",
                    "the credential is too large for a browser's cookie (an access token with "
                    "many claims): ask the provider for a smaller one",
                )
                continue
            response = self._continue_to(next_path)
            self._set_session(response, session, sealed)
            return response
        message = last.message if last is not None else "no credentials"
        status = last.status if last is not None and last.status in (400, 401, 403, 429) else 401
        return self._sign_in_form(request, error=f"not signed in: {message}", status=status)

    def _continue_to(self, path: str) -> Response:
        """A page that moves on to ``path`` by itself (a same-site navigation, so the new
        ``SameSite=Strict`` cookie goes with it even after a provider's redirect)."""
        return self.render("continue.html", title="Signed in", next=path)

    async def sign_out(self, request: Request) -> Response:
        if self._cross_site(request):
            return self._sign_in_form(request, error="a sign-out sent by another site is refused", status=403)
        return self._signed_out("signed out")

    # -- OIDC -----------------------------------------------------------------------------------

    def _callback_url(self, request: Request) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/") + "/oidc/callback"
        host = request.headers.get("host", "localhost")
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{host}{self.base}/oidc/callback"

    async def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return self._sign_in_form(
                request, error="OIDC sign-in is not set up (gateway.console.oidc)", status=404
            )
        try:
            next_path = self._next(request.query_params.get("next", ""))
            url, flow = await self.oidc.start(self._callback_url(request), next_path)
        except SignInFailed as failed:
            return self._sign_in_form(request, error=str(failed), status=502)
        response = RedirectResponse(url, status_code=303)
        # Lax: the provider's redirect back is a top-level navigation from its site.
        response.set_cookie(
            self.flow_cookie,
            self.sealer.seal_flow(flow),
            max_age=int(flow.expires - time.time()),
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return self._sign_in_form(request, error="OIDC sign-in is not set up", status=404)
        params = request.query_params
        flow = self.sealer.open_flow(request.cookies.get(self.flow_cookie, ""))
        if flow is None:
            return self._sign_in_form(
                request, error="the OIDC sign-in expired or did not start here: try again", status=400
            )
        if not secrets.compare_digest(params.get("state", ""), flow.state):
            return self._sign_in_form(
                request, error="the OIDC sign-in's state does not match: try again", status=400
            )
        if params.get("error"):
            detail = params.get("error_description") or params["error"]
            return self._sign_in_form(request, error=f"the OpenID provider refused: {detail}", status=401)
        try:
            tokens = await self.oidc.finish(flow, params.get("code", ""))
        except SignInFailed as failed:
            return self._sign_in_form(request, error=str(failed), status=401)
        response = await self._start_session(
            request, "oidc", [f"Bearer {t}" for t in tokens.credentials()], self._next(flow.next)
        )
        response.delete_cookie(self.flow_cookie, path="/", secure=self.secure, httponly=True, samesite="lax")
        return response
