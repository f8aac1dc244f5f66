"""HTTP clients to Chroma behind one small interface, with a keep-alive pool.

Two implementations, chosen by measurement (``bench/gateway``): aiohttp's client is
the default; httpx is kept as the fallback (``CHROMACTL_UPSTREAM_CLIENT=httpx``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
import httpx

Headers = list[tuple[bytes, bytes]]
Body = bytes | AsyncIterator[bytes]


class UpstreamUnavailable(Exception):
    """Chroma could not be reached (refused, reset, DNS)."""


class UpstreamTimeout(Exception):
    """Chroma did not answer in time."""


class UpstreamResponse(Protocol):
    status: int
    headers: Headers

    def body(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes:
        """The whole body at once (for answers known to be small)."""
        ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    """Sends requests to Chroma; ``path`` includes the query string."""

    async def request(self, method: str, path: str, headers: Headers, body: Body) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def _base(url: str) -> tuple[str, str]:
    """Origin and path prefix of the Chroma URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


class _HttpxResponse:
    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self.status = resp.status_code
        self.headers: Headers = list(resp.headers.raw)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.body()])

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxUpstream:
    def __init__(self, url: str, *, keepalive: int = 64, timeout_s: float = 300.0) -> None:
        origin, self._prefix = _base(url)
        self._client = httpx.AsyncClient(
            base_url=origin,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=keepalive),
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            follow_redirects=False,
        )

    async def request(self, method: str, path: str, headers: Headers, body: Body) -> UpstreamResponse:
        req = self._client.build_request(method, self._prefix + path, headers=headers, content=body)
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        return _HttpxResponse(resp)

    async def aclose(self) -> None:
        await self._client.aclose()


class _AiohttpResponse:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Headers = list(resp.raw_headers)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc)) from exc

    async def aclose(self) -> None:
        self._resp.release()


class AiohttpUpstream:
    def __init__(
        self, url: str, *, keepalive: int = 64, timeout_s: float = 300.0, uds: str | None = None
    ) -> None:
        self._origin, self._prefix = _base(url)
        self._keepalive = keepalive
        #: A Unix socket to connect to instead of the URL's host and port.
        self._uds = uds
        self._timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession belongs to the running event loop.
        if self._session is None:
            connector: aiohttp.BaseConnector = (
                aiohttp.UnixConnector(self._uds, limit=0, keepalive_timeout=30.0)
                if self._uds
                else aiohttp.TCPConnector(limit=0, keepalive_timeout=30.0, enable_cleanup_closed=False)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
        return self._session

    async def request(self, method: str, path: str, headers: Headers, body: Body) -> UpstreamResponse:
        session = self._get_session()
        hdrs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        try:
            resp = await session.request(
                method,
                self._origin + self._prefix + path,
                headers=hdrs,
                data=body,
                allow_redirects=False,
                compress=None,
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(str(exc)) from exc
        return _AiohttpResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_upstream(
    url: str, *, keepalive: int = 64, timeout_s: float = 300.0, client: str | None = None
) -> Upstream:
    """The upstream client for ``url`` (``client``: ``aiohttp`` or ``httpx``)."""
    kind = client or os.environ.get("CHROMACTL_UPSTREAM_CLIENT", "aiohttp")
    if kind == "httpx":
        return HttpxUpstream(url, keepalive=keepalive, timeout_s=timeout_s)
    if kind == "aiohttp":
        return AiohttpUpstream(url, keepalive=keepalive, timeout_s=timeout_s)
    raise ValueError(f"unknown upstream client {kind!r}")


async def read_all(resp: UpstreamResponse, limit: int = 1 << 20) -> bytes:
    """The whole (small) body of ``resp``, then close it."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in resp.body():
            size += len(chunk)
            if size > limit:
                raise ValueError("upstream answer too large")
            chunks.append(chunk)
    finally:
        await resp.aclose()
    return b"".join(chunks)
