"""The fast path (``chromactl.gateway.fastpath``): which requests take it, that it answers as the
ASGI app does, and what a hand-written forwarding path gets wrong: smuggled requests, injected
headers, an answer that lies about its length, and bytes no client would send (fuzzed).

Chroma is stood in for by :class:`RecordingUpstream` where the test needs to see the exact bytes
the gateway forwards (parsed strictly by h11: a malformed forwarded request fails the test) or
to answer what Chroma never would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chromactl.config import parse_config
from chromactl.gateway.app import build_gateway
from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN, token_config
from tests.gateway.helpers import CLIENT_1X_AGENT, Chroma, RunningGateway, run_gateway, write_secret

DB = "/api/v2/tenants/default_tenant/databases/default_database"
#: How Chroma 1.x's Python client names itself, and what a 0.5/0.6 one sends (its collection
#: requests are translated on the ASGI path: docs/legacy-clients.md).
CURRENT_AGENT = CLIENT_1X_AGENT.encode()
LEGACY_AGENT = b"python-httpx/0.27.2"
#: A request that ends the connection (so an exchange ends when it is answered).
LAST = b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

# -- a Chroma that records what reaches it ------------------------------------------------------


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


#: Answers a request with raw bytes (the whole HTTP response, as Chroma would write it).
Answerer = Callable[[Seen], bytes]


def json_answer(seen: Seen) -> bytes:
    body = json.dumps({"method": seen.method, "target": seen.target, "size": len(seen.body)}).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@dataclass
class RecordingUpstream:
    answer: Answerer = json_answer
    seen: list[Seen] = field(default_factory=list)
    #: Bytes h11 refused: the gateway forwarded something malformed.
    malformed: list[str] = field(default_factory=list)
    connections: int = 0
    #: Close a connection, unanswered, when a second request comes on it (what a Chroma that
    #: had just closed an idle kept-alive connection looks like to the gateway).
    drop_reused: bool = False

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        parser = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body: list[bytes] = []
        served = 0
        with conn:
            while True:
                try:
                    event = parser.next_event()
                except h11.RemoteProtocolError as exc:
                    self.malformed.append(str(exc))
                    return
                if event is h11.NEED_DATA:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    parser.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request, body = event, []
                elif isinstance(event, h11.Data):
                    body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    seen = Seen(
                        request.method.decode(),
                        request.target.decode("latin-1"),
                        [(k.decode(), v.decode("latin-1")) for k, v in request.headers],
                        b"".join(body),
                    )
                    self.seen.append(seen)
                    served += 1
                    if self.drop_reused and served > 1:
                        return
                    reply = self.answer(seen)
                    try:
                        conn.sendall(reply)
                    except OSError:
                        return
                    if b"connection: close" in reply.lower():
                        return
                    # Chroma's side of the keep-alive: a fresh parser, given what came after.
                    rest, closed = parser.trailing_data
                    parser = h11.Connection(h11.SERVER)
                    if rest:
                        parser.receive_data(rest)
                    if closed:
                        parser.receive_data(b"")
                elif isinstance(event, h11.ConnectionClosed):
                    return

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def gateway_before(upstream: RecordingUpstream, **gateway: Any) -> Iterator[RunningGateway]:
    config = {
        "chroma": {"url": upstream.url},
        "gateway": {"auth": {"enabled": False}, "metrics_port": None, **gateway},
    }
    with run_gateway(config) as gw:
        assert gw.gateway.fast is not None
        yield gw


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    up = RecordingUpstream()
    yield up
    up.close()


def exchange(url: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is; everything the gateway answered until it closed (or went quiet)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            sock.settimeout(2.0)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, bytes]]:
    """The answers in ``raw``, parsed strictly (status, body); an answer cut short fails."""
    client = h11.Connection(h11.CLIENT)
    out: list[tuple[int, bytes]] = []
    client.receive_data(raw)
    client.receive_data(b"")
    status, body, answering = 0, [], False
    while True:
        if client.our_state is h11.IDLE:
            # h11 reads answers to requests it sent: send one for each answer there may be.
            client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
            client.send(h11.EndOfMessage())
        try:
            event = client.next_event()
        except h11.RemoteProtocolError:
            assert not answering, f"an answer was cut short: {raw[-200:]!r}"
            return out  # the connection ended between answers
        if isinstance(event, h11.InformationalResponse):
            continue  # 100 Continue
        if isinstance(event, h11.Response):
            status, body, answering = event.status_code, [], True
        elif isinstance(event, h11.Data):
            body.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, b"".join(body)))
            answering = False
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                return out
            client.start_next_cycle()
        else:
            return out


# -- which path -------------------------------------------------------------------------------


def _fast(config: dict[str, Any]) -> Any:
    gateway = build_gateway(parse_config(config))
    assert gateway.fast is not None
    return gateway.fast


@pytest.mark.parametrize(
    ("method", "path", "extra", "fast"),
    [
        ("POST", f"{DB}/collections/c1/query", {}, True),
        ("POST", f"{DB}/collections/c1/get", {}, True),
        ("GET", f"{DB}/collections/c1/count", {}, True),
        ("GET", "/api/v2/heartbeat", {}, True),
        ("POST", f"{DB}/collections/c1/add", {}, True),
        ("POST", f"{DB}/collections", {"current_client": True}, True),
        ("GET", f"{DB}/collections/c1", {}, True),
        # a 0.5/0.6 client's requests (0.x's collections and error names), and 0.4's v1
        ("POST", f"{DB}/collections", {"legacy_client": True}, False),
        ("GET", f"{DB}/collections", {"legacy_client": True}, False),
        ("GET", f"{DB}/collections/c1", {"legacy_client": True}, False),
        ("POST", f"{DB}/collections/c1/query", {"legacy_client": True}, False),
        ("POST", f"{DB}/collections/c1/query", {"current_client": True}, True),
        # httpx's agent with a Content-Type (a program's json=), and a route 0.x answered alike
        ("POST", f"{DB}/collections/c1/query", {"legacy_client": True, "typed": True}, True),
        ("GET", "/api/v2/heartbeat", {"legacy_client": True}, True),
        ("GET", "/api/v1/collections", {"current_client": True}, False),
        ("POST", f"{DB}/collections/c1/add", {"limits": True}, True),
        ("POST", f"{DB}/collections/c1/add", {"records_limit": True}, False),
        ("POST", f"{DB}/collections", {"cap": True, "current_client": True}, False),
        ("POST", f"{DB}/collections/c1/query", {"records_limit": True}, True),
        ("POST", f"{DB}/collections/c1/query", {"chunked": True}, False),
        ("HEAD", "/api/v2/heartbeat", {}, False),
        ("GET", "/api/v2/auth/identity", {}, False),
        ("GET", "/chromactl/v1/holds", {}, False),
        ("GET", "/api/v2/collections/crn:x", {}, False),
        ("GET", "/not/a/chroma/route", {}, False),
    ],
)
def test_which_requests_take_the_fast_path(
    method: str, path: str, extra: dict[str, bool], fast: bool
) -> None:
    config: dict[str, Any] = {
        "chroma": {"url": "http://127.0.0.1:1"},
        "gateway": {"auth": {"enabled": False}},
    }
    limits: dict[str, Any] = {"enabled": True, "credentials": {"*": {"requests_per_second": 10}}}
    if extra.get("records_limit"):
        limits["credentials"]["*"]["records_per_minute"] = 1000
    if extra.get("cap"):
        limits["tenants"] = {"team-a": {"max_collections": 3}}
    if set(extra) - {"current_client", "legacy_client", "typed"}:
        config["gateway"]["limits"] = limits
    path_ = _fast(config)
    headers = [(b"transfer-encoding", b"chunked")] if extra.get("chunked") else []
    if extra.get("current_client") or extra.get("legacy_client"):
        headers.append((b"user-agent", CURRENT_AGENT if extra.get("current_client") else LEGACY_AGENT))
    if extra.get("typed"):
        headers.append((b"content-type", b"application/json"))
    assert (path_.route_for(method, path, headers) is not None) is fast


def test_off_or_for_a_tls_chroma_everything_takes_the_asgi_app() -> None:
    off = {"chroma": {"url": "http://127.0.0.1:1"}, "gateway": {"fast_path": False}}
    assert build_gateway(parse_config(off)).fast is None
    tls = {"chroma": {"url": "https://127.0.0.1:1"}}
    assert build_gateway(parse_config(tls)).fast is None


# -- the same answers ---------------------------------------------------------------------------


def _comparable(resp: httpx.Response) -> tuple[int, Any, list[tuple[str, str]]]:
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.content
    if isinstance(body, dict) and "id" in body:
        body = {k: v for k, v in body.items() if k not in ("id", "configuration_json", "configuration")}
    skip = {"date", "x-request-id", "content-length", "transfer-encoding", "connection"}
    return resp.status_code, body, sorted((k, v) for k, v in resp.headers.items() if k not in skip)


def test_the_fast_path_answers_as_the_asgi_app_does(chroma: Chroma, secrets_dir: Path) -> None:
    """The same requests through a gateway with the fast path and one without: the same
    statuses, bodies and headers (ids and dates aside), refusals included."""
    answers: dict[bool, list[Any]] = {}
    for fast in (True, False):
        config = token_config(chroma, secrets_dir, fast_path=fast, metrics_port=None)
        with run_gateway(config) as gw:
            assert (gw.gateway.fast is not None) is fast
            admin = gw.client(authorization=f"Bearer {ADMIN_TOKEN}")
            reader = gw.client(authorization=f"Bearer {READER_TOKEN}")
            anon = gw.client()
            name = "alike"
            got: list[Any] = []
            created = admin.post(f"{DB}/collections", json={"name": name})
            got.append(_comparable(created))
            cid = created.json()["id"]
            records = {"ids": ["a", "b", "c"], "embeddings": [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]}
            records["documents"] = ["apple", "banana", "cherry"]
            got.append(_comparable(admin.post(f"{DB}/collections/{cid}/add", json=records)))
            got.append(_comparable(admin.get(f"{DB}/collections/{cid}/count")))
            query = {"query_embeddings": [[0.9, 0.1]], "n_results": 2, "include": ["documents", "distances"]}
            got.append(_comparable(reader.post(f"{DB}/collections/{cid}/query", json=query)))
            got.append(_comparable(reader.post(f"{DB}/collections/{cid}/get", json={"ids": ["b"]})))
            got.append(_comparable(reader.post(f"{DB}/collections/{cid}/add", json=records)))  # 403
            got.append(_comparable(anon.post(f"{DB}/collections/{cid}/get", json={})))  # 401
            got.append(_comparable(admin.get(f"{DB}/collections/{cid}/nope")))  # Chroma's 404
            got.append(_comparable(admin.post(f"{DB}/collections/{cid}/get", content=b"{not json")))
            got.append(_comparable(admin.get(f"{DB}/collections/..%2F")))  # 400 by the gateway
            big = admin.post(f"{DB}/collections/{cid}/get", content=b"x" * (41943040 + 1))
            got.append(_comparable(big))  # 413
            got.append(_comparable(admin.delete(f"{DB}/collections/{name}")))
            got.append(_comparable(admin.get(f"{DB}/collections/{name}")))  # gone
            answers[fast] = got
    for fast_answer, asgi_answer in zip(answers[True], answers[False], strict=True):
        assert fast_answer == asgi_answer


# -- smuggling and injection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "request_bytes"),
    [
        (
            "content-length and transfer-encoding",
            b"POST /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "two content-lengths",
            b"POST /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        ),
        (
            "bare LF in a header line",
            b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\n\r\n",
        ),
        (
            "chunk size overflow",
            b"POST /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"FFFFFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "CR inside a header value",
            b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\rX-Injected: 1\r\n\r\n",
        ),
        (
            "space before the colon",
            b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nabcde",
        ),
    ],
)
def test_an_ambiguous_request_is_refused_and_nothing_reaches_chroma(
    upstream: RecordingUpstream, name: str, request_bytes: bytes
) -> None:
    with gateway_before(upstream) as gw:
        raw = exchange(gw.url, request_bytes)
    assert raw.startswith(b"HTTP/1.1 400"), f"{name}: {raw[:200]!r}"
    assert upstream.seen == [], f"{name}: forwarded {upstream.seen}"
    assert upstream.malformed == []


def test_forwarded_heads_are_rebuilt_not_copied(upstream: RecordingUpstream) -> None:
    """What reaches Chroma is one well-formed request per client request: its length ours, the
    caller's credentials, hop-by-hop headers and ``Expect`` gone, the client's address appended."""
    body = b'{"name": "x"}'
    data = (
        b"POST " + DB.encode() + b"/collections?limit=1 HTTP/1.1\r\nHost: evil.example\r\n"
        b"Authorization: Bearer secret\r\nX-Chroma-Token: secret\r\nConnection: keep-alive, X-Hop\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nExpect: 100-continue\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"User-Agent: " + CURRENT_AGENT + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with gateway_before(upstream) as gw:
        raw = exchange(
            gw.url, data + b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    answers = responses(raw)
    assert [status for status, _ in answers] == [200, 200]
    assert upstream.malformed == []
    first, second = upstream.seen
    assert (first.method, first.target, first.body) == ("POST", f"{DB}/collections?limit=1", body)
    names = [k for k, _ in first.headers]
    for gone in ("authorization", "x-chroma-token", "keep-alive", "te", "expect", "connection"):
        assert gone not in names
    assert dict(first.headers)["host"] == upstream.url.removeprefix("http://")
    assert dict(first.headers)["content-length"] == str(len(body))
    assert [v for k, v in first.headers if k == "x-forwarded-for"] == ["6.6.6.6", "127.0.0.1"]
    assert (second.method, second.target) == ("GET", "/api/v2/heartbeat")


def test_pipelined_requests_are_answered_in_order(upstream: RecordingUpstream) -> None:
    one = b"GET /api/v2/heartbeat?n=%d HTTP/1.1\r\nHost: x\r\n\r\n"
    data = (
        b"".join(one % n for n in range(5))
        + b"GET /api/v2/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    with gateway_before(upstream) as gw:
        answers = responses(exchange(gw.url, data))
    targets = [json.loads(body)["target"] for _, body in answers]
    assert targets == [f"/api/v2/heartbeat?n={n}" for n in range(5)] + ["/api/v2/version"]


# -- answers that lie ---------------------------------------------------------------------------


def test_an_answer_shorter_than_its_length_ends_the_connection() -> None:
    """Chroma promises 100 bytes, sends 10 and closes: the client sees the connection end rather
    than a short answer taken as whole, or a wait forever."""
    lying = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789"
    up = RecordingUpstream(lambda _: lying)
    try:
        with gateway_before(up) as gw:
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(f"{gw.url}/api/v2/heartbeat", timeout=10)
            # and the next request is served on a new connection to Chroma
            up.answer = json_answer
            assert httpx.get(f"{gw.url}/api/v2/heartbeat", timeout=10).status_code == 200
    finally:
        up.close()


def test_bytes_after_an_answer_never_reach_the_client() -> None:
    """Chroma says 5 bytes and sends a second, unasked-for answer behind them: the client gets the
    5 bytes; the extra answer is not taken for the next request's (that connection is dropped)."""
    smuggled = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED"
    up = RecordingUpstream(lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst" + smuggled)
    try:
        with gateway_before(up) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
            assert client.get("/api/v2/heartbeat").content == b"first"
            up.answer = json_answer
            for _ in range(3):
                resp = client.get("/api/v2/version")
                assert resp.status_code == 200 and b"SMUGGLED" not in resp.content
    finally:
        up.close()


def test_a_chunked_answer_is_passed_on_whole() -> None:
    up = RecordingUpstream(
        lambda _: (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
    )
    try:
        with gateway_before(up) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
            for _ in range(2):
                assert client.get("/api/v2/heartbeat").content == b"hello world"
    finally:
        up.close()


def test_a_large_body_streams_both_ways(upstream: RecordingUpstream) -> None:
    body = json.dumps({"name": "big", "metadata": {"k": "v" * 2_000_000}}).encode()
    with gateway_before(upstream) as gw:
        resp = httpx.post(
            f"{gw.url}{DB}/collections",
            content=body,
            headers={"user-agent": CURRENT_AGENT.decode()},
            timeout=30,
        )
    assert resp.status_code == 200 and resp.json()["size"] == len(body)
    assert upstream.seen[-1].body == body


def test_a_client_that_stops_sending_its_body_gets_408(upstream: RecordingUpstream) -> None:
    with gateway_before(upstream, client_limits={"body_timeout_s": 0.5}) as gw:
        raw = exchange(gw.url, b"POST /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert raw.startswith(b"HTTP/1.1 408"), raw[:100]
    assert raw.lower().count(b"connection: close") == 1
    assert upstream.seen == []


# -- fuzzing the request parser -------------------------------------------------------------------

_LINES = st.sampled_from(
    [
        b"GET /api/v2/heartbeat HTTP/1.1",
        b"POST " + DB.encode() + b"/collections/c1/get HTTP/1.1",
        b"POST /api/v2/heartbeat HTTP/1.0",
        b"GET /api/v2/../v2/heartbeat HTTP/1.1",
        b"GET /api/v2/%2e%2e/heartbeat HTTP/1.1",
        b"GET http://other/api/v2/heartbeat HTTP/1.1",
    ]
)
_HEADERS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Host: x",
                b"Content-Length: 3",
                b"Content-Length: -1",
                b"Content-Length: 99999999999999999999",
                b"Transfer-Encoding: chunked",
                b"Transfer-Encoding: gzip, chunked",
                b"Transfer-Encoding: chunked, identity",
                b"Expect: 100-continue",
                b"Connection: close",
                b"Upgrade: websocket",
                b" folded",
            ]
        ),
        st.binary(min_size=0, max_size=40),
    ),
    max_size=6,
)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=_LINES, headers=_HEADERS, body=st.binary(max_size=64), then=st.booleans())
def test_fuzzed_requests_get_an_answer_and_only_well_formed_requests_reach_chroma(
    shared_fuzz_gateway: tuple[RunningGateway, RecordingUpstream],
    line: bytes,
    headers: list[bytes],
    body: bytes,
    then: bool,
) -> None:
    gw, up = shared_fuzz_gateway
    data = b"\r\n".join([line, *headers]) + b"\r\n\r\n" + body
    if then:
        data += b"GET /api/v2/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    before = len(up.seen)
    raw = exchange(gw.url, data, timeout=5)
    # The gateway stays up and whatever it answered is well-formed HTTP.
    if raw:
        assert raw.startswith(b"HTTP/1."), raw[:80]
        for status, _ in responses(raw):
            assert status != 500 or b"InternalError" not in raw, raw[:400]
    assert up.malformed == []
    # Every request that reached Chroma is one the gateway could name.
    for seen in up.seen[before:]:
        assert seen.target.startswith("/api/v2/"), seen
    assert httpx.get(f"{gw.url}/api/v2/heartbeat", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def shared_fuzz_gateway() -> Iterator[tuple[RunningGateway, RecordingUpstream]]:
    up = RecordingUpstream()
    try:
        with gateway_before(up, client_limits={"body_timeout_s": 0.3, "header_timeout_s": 1.0}) as gw:
            yield gw, up
    finally:
        up.close()


def test_fast_path_keeps_chroma_connections_alive(upstream: RecordingUpstream) -> None:
    with gateway_before(upstream) as gw, httpx.Client(base_url=gw.url, timeout=10) as client:
        for _ in range(20):
            assert client.get(f"{DB}/collections").status_code == 200
        time.sleep(0.1)
    assert len(upstream.seen) == 20
    assert upstream.connections == 1


def test_chroma_that_does_not_answer_in_time_gets_504() -> None:
    """The pool's sweep ends an exchange past ``upstream_timeout_s``: 504, and the connection to
    Chroma is not reused."""
    up = RecordingUpstream(lambda seen: (time.sleep(3 if "slow" in seen.target else 0), json_answer(seen))[1])
    try:
        with gateway_before(up, upstream_timeout_s=1.0) as gw:
            resp = httpx.get(f"{gw.url}/api/v2/heartbeat?slow", timeout=10)
            assert resp.status_code == 504 and resp.json()["error"] == "GatewayTimeout"
            # On a kept-alive connection too (served in the callbacks), and a request that
            # timed out is not sent again: Chroma may still be running it.
            with httpx.Client(base_url=gw.url, headers=CLIENT_1X, timeout=10) as client:
                assert client.get("/api/v2/heartbeat").status_code == 200
                resp = client.get("/api/v2/heartbeat?slow-too")
                assert resp.status_code == 504 and resp.json()["error"] == "GatewayTimeout"
        assert [s.target for s in up.seen] == ["/api/v2/heartbeat" + q for q in ("?slow", "", "?slow-too")]
    finally:
        up.close()


# -- served in the protocol's callbacks ---------------------------------------------------------

#: A 1.x client's requests (an httpx agent alone is taken for a 0.x client's).
CLIENT_1X = {"user-agent": CURRENT_AGENT.decode()}


def test_a_read_is_served_without_a_task_while_a_connection_to_chroma_is_idle() -> None:
    """A read whose request came whole in one read is forwarded from the protocol's callbacks on
    an idle kept-alive connection: no task while Chroma answers. With none idle, a task connects."""
    up = RecordingUpstream(lambda seen: (time.sleep(0.6), json_answer(seen))[1])
    listing = f"{DB}/collections?limit=%d"
    try:
        with gateway_before(up) as gw:
            tasks = gw.server.server_state.tasks
            with httpx.Client(base_url=gw.url, headers=CLIENT_1X, timeout=10) as client:
                assert client.get(listing % 1).status_code == 200  # a task, and a connection
                in_flight: list[int] = []

                def watch() -> None:
                    time.sleep(0.3)
                    in_flight.append(len(tasks))

                watcher = threading.Thread(target=watch)
                watcher.start()
                resp = client.get(listing % 2)
                watcher.join()
                assert resp.status_code == 200 and resp.json()["target"] == listing % 2
                assert in_flight == [0]
            # two at once: one takes the idle connection, the other a task and a new one
            with ThreadPoolExecutor(2) as pool:
                answers = list(
                    pool.map(lambda n: httpx.get(gw.url + listing % n, headers=CLIENT_1X, timeout=10), (3, 4))
                )
            assert [a.status_code for a in answers] == [200, 200]
        assert up.connections == 2
    finally:
        up.close()


def test_a_read_on_a_connection_chroma_closed_is_sent_again_on_a_new_one() -> None:
    """Chroma closes a kept-alive connection as the gateway reuses it (nothing answered): the
    read goes once more, on a new connection, and the client sees only the answer."""
    up = RecordingUpstream(drop_reused=True)
    listing = f"{DB}/collections?limit=%d"
    try:
        with gateway_before(up) as gw, httpx.Client(base_url=gw.url, headers=CLIENT_1X, timeout=10) as client:
            for n in range(3):
                resp = client.get(listing % n)
                assert resp.status_code == 200 and resp.json()["target"] == listing % n
        # the first on its own connection; each later one dropped once, then sent on a new one
        assert [s.target for s in up.seen] == [listing % n for n in (0, 1, 1, 2, 2)]
        assert up.connections == 3
    finally:
        up.close()


def test_a_long_pipeline_of_refused_reads_is_answered_whole(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    """Refusals made in the callbacks go out from the loop: a client that pipelines thousands
    of reads with a wrong token gets a 401 for each, in order, and the gateway stays up."""
    token = write_secret(tmp_path, "reader.token", READER_TOKEN)
    auth = {"token": {"credentials": [{"name": "reader", "token_file": str(token), "role": "reader"}]}}
    listing = (
        b"GET " + DB.encode() + b"/collections HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n"
    )
    good = listing % (READER_TOKEN.encode(), b"")  # the first connects to Chroma (in a task)
    wrong = listing % (b"wrong", b"")
    close = listing % (READER_TOKEN.encode(), b"Connection: close\r\n")
    with gateway_before(upstream, auth=auth) as gw:
        answers = responses(exchange(gw.url, good + wrong * 3000 + close, timeout=60))
        assert [status for status, _ in answers] == [200] + [401] * 3000 + [200]
        assert httpx.get(f"{gw.url}/api/v2/heartbeat", timeout=10).status_code == 200
    assert [s.target for s in upstream.seen] == [f"{DB}/collections"] * 2 + ["/api/v2/heartbeat"]


def test_a_read_handed_to_a_task_keeps_the_path_its_prefix_was_taken_from() -> None:
    """A read that needs a lookup first (the collection's owner, not cached yet) goes from the
    callbacks to a task with its prepared context: the path prefix is taken off once, even
    when what follows it starts with the prefix again."""

    def answer(seen: Seen) -> bytes:
        if "/collections/by-id/" in seen.target:
            doc = {"id": "c1", "name": "c1", "tenant": "default_tenant", "database": "default_database"}
            body = json.dumps(doc).encode()
            return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        return json_answer(seen)

    up = RecordingUpstream(answer)
    try:
        with (
            gateway_before(up, path_prefix="/api") as gw,
            httpx.Client(headers=CLIENT_1X, timeout=10) as client,
        ):
            assert client.get(f"{gw.url}/api/api/v2/heartbeat").status_code == 200  # connects
            resp = client.get(f"{gw.url}/api{DB}/collections/c1/count")
            assert resp.status_code == 200 and resp.json()["target"] == f"{DB}/collections/c1/count"
        assert [s.target for s in up.seen if "by-id" not in s.target] == [
            "/api/v2/heartbeat",
            f"{DB}/collections/c1/count",
        ]
    finally:
        up.close()
