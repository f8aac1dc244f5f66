"""The auth-bypass corpus: requests that must be refused, or answered harmlessly.

Every case is sent byte for byte over a socket (``rawhttp``) to a real gateway in front of
a real Chroma. The attacker holds tenant-a credentials (or none); tenant-b's data is the
target. Each case names the answers it accepts, and every answer is checked for tenant-b's
data. At the end, everything in Chroma (tenants, databases, collections, records) must be
exactly as before the corpus ran, and Chroma still up: "harmless" is checked, not assumed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.gateway.helpers import RunningGateway
from tests.security import rawhttp
from tests.security.conftest import (
    ADMIN,
    BASIC_PASSWORD,
    BASIC_USER,
    OIDC,
    READER_A,
    WRITER_A,
    WRONG,
    Watch,
    World,
)

pytestmark = pytest.mark.slow

T = "/api/v2/tenants"
A = f"{T}/tenant-a/databases/data"
B = f"{T}/tenant-b/databases/data"
#: Refusals: bad request, unauthenticated, forbidden, not found, method not allowed,
#: too large, URI too long, header fields too large.
REFUSED = {400, 401, 403, 404, 405, 413, 414, 431}
DENY = {403}
AUTHN = {401}
GONE = {404}
#: The gateway's 400 for paths it refuses to classify (dot segments, encoded slashes).
BAD = {400}

Headers = list[tuple[bytes, bytes]]


def bearer(token: str) -> Headers:
    return [(b"authorization", b"Bearer " + token.encode())]


def basic(user: str, password: str) -> Headers:
    return [(b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    #: ``{a}``/``{b}``: the collection ids of tenant-a/tenant-b; ``{b_name}``: B's name.
    target: str
    #: Which credentials (a key of ``credentials()``).
    cred: str
    expect: frozenset[int]
    body: dict[str, Any] | bytes | None = None
    extra: tuple[tuple[bytes, bytes], ...] = ()


def case(name: str, method: str, target: str, cred: str, expect: set[int], **kw: Any) -> Case:
    if "extra" in kw:
        kw["extra"] = tuple(kw["extra"])
    return Case(name, method, target, cred, frozenset(expect), **kw)


ADD = {"ids": ["pwned"], "embeddings": [[9.0, 9.0, 9.0]], "documents": ["pwned"]}
RECORD_OPS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("count", "GET", "count", None),
    ("get", "POST", "get", {}),
    ("query", "POST", "query", {"query_embeddings": [[0.0, 1.0, 0.5]], "n_results": 3}),
    ("search", "POST", "search", {"searches": [{}]}),
    ("add", "POST", "add", ADD),
    ("update", "POST", "update", {"ids": ["r0"], "documents": ["pwned"]}),
    ("upsert", "POST", "upsert", ADD),
    ("delete", "POST", "delete", {"ids": ["r0"]}),
    ("fork", "POST", "fork", {"new_name": "stolen"}),
    ("attach_function", "POST", "functions/attach", {"name": "f", "function_id": "x"}),
]

CASES: list[Case] = [
    # --- path tricks: a tenant-a reader reaching tenant-b ------------------------------------
    case("control-own-tenant-allowed", "GET", f"{A}/collections", "reader", {200}),
    case("control-other-tenant-denied", "GET", f"{B}/collections", "reader", DENY),
    case("double-slash-leading", "GET", f"/{B}/collections", "reader", REFUSED),
    case(
        "double-slash-inner",
        "GET",
        "/api/v2//tenants/tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case("dot-segment", "GET", "/api/v2/./tenants/tenant-b/databases/data/collections", "reader", REFUSED),
    case(
        "dot-dot-from-own-tenant",
        "GET",
        f"{T}/tenant-a/../tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case(
        "encoded-dot-dot",
        "GET",
        f"{T}/tenant-a/%2e%2e/tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case(
        "encoded-dot-dot-upper",
        "GET",
        f"{T}/tenant-a/%2E%2E/tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case(
        "dot-dot-climb-from-collection",
        "GET",
        f"{A}/collections/%2e%2e/%2e%2e/%2e%2e/%2e%2e/tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case(
        "encoded-slash-in-tenant",
        "GET",
        f"{T}/tenant-a%2F..%2Ftenant-b/databases/data/collections",
        "reader",
        BAD,
    ),
    case(
        "encoded-slash-everywhere",
        "GET",
        "/api/v2%2Ftenants%2Ftenant-b%2Fdatabases%2Fdata%2Fcollections",
        "reader",
        BAD,
    ),
    case("encoded-slash-own-tenant", "GET", f"{T}/tenant-a%2fx/databases/data/collections", "writer", BAD),
    case("encoded-slash-id-suffix", "POST", A + "/collections/{b}%2Fget", "reader", BAD, body={}),
    case(
        "double-encoded-dot-dot",
        "GET",
        f"{T}/tenant-a/%252e%252e/tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case("double-encoded-hyphen", "GET", f"{T}/tenant%252Db/databases/data/collections", "reader", REFUSED),
    case("encoded-hyphen", "GET", f"{T}/tenant%2Db/databases/data/collections", "reader", DENY),
    case(
        "encoded-tenant-letters",
        "GET",
        f"{T}/%74%65%6e%61%6e%74-b/databases/data/collections",
        "reader",
        DENY,
    ),
    case("trailing-slash", "GET", f"{B}/collections/", "reader", DENY),
    case("trailing-slashes", "GET", f"{B}/collections//", "reader", REFUSED),
    case("case-prefix", "GET", "/API/V2/tenants/tenant-b/databases/data/collections", "reader", REFUSED),
    case("case-keyword", "GET", "/api/v2/Tenants/tenant-b/databases/data/collections", "reader", REFUSED),
    case("case-tenant", "GET", f"{T}/TENANT-B/databases/data/collections", "reader", REFUSED),
    case("semicolon-param-tenant", "GET", f"{T}/tenant-b;x=1/databases/data/collections", "reader", REFUSED),
    case(
        "semicolon-dot-dot", "GET", f"{T}/tenant-a;/../tenant-b/databases/data/collections", "reader", REFUSED
    ),
    case("semicolon-param-end", "GET", f"{B}/collections;jsessionid=1", "reader", REFUSED),
    case(
        "backslash-dot-dot",
        "GET",
        f"{T}/tenant-a\\..\\tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case("nul-byte", "GET", f"{T}/tenant-b%00/databases/data/collections", "reader", REFUSED),
    case("fullwidth-hyphen", "GET", f"{T}/tenant%EF%BC%8Db/databases/data/collections", "reader", REFUSED),
    case(
        "fragment",
        "GET",
        f"{A}/collections#/../../../tenant-b/databases/data/collections",
        "reader",
        {200, *REFUSED},
    ),
    case("query-tenant-override", "GET", f"{A}/collections?tenant=tenant-b&database=data", "reader", {200}),
    case("absolute-form-target", "GET", f"http://127.0.0.1{B}/collections", "reader", REFUSED),
    case("very-long-path", "GET", f"{B}/collections/" + "a" * 60000, "reader", REFUSED),
    case(
        "very-long-dot-path",
        "GET",
        "/api/v2" + "/." * 20000 + "/tenants/tenant-b/databases/data/collections",
        "reader",
        REFUSED,
    ),
    case(
        "public-prefix-dot-dot-no-auth",
        "GET",
        "/api/v2/heartbeat/../tenants/tenant-b/databases/data/collections",
        "none",
        REFUSED,
    ),
    case(
        "public-prefix-encoded-no-auth",
        "GET",
        "/api/v2/heartbeat%2F..%2Ftenants%2Ftenant-b%2Fdatabases%2Fdata%2Fcollections",
        "none",
        BAD,
    ),
    case("public-probe-trailing-slash-no-auth", "GET", "/api/v2/heartbeat/", "none", {200, 404}),
    # The v1 API of 0.4 clients is translated to the 1.x path (docs/legacy-clients.md): its
    # tenant and database parameters are checked as the path's would be.
    case(
        "v1-collections-other-tenant",
        "GET",
        "/api/v1/collections?tenant=tenant-b&database=data",
        "reader",
        DENY,
    ),
    case("v1-tenant-dot-dot", "GET", "/api/v1/collections?tenant=..&database=data", "reader", BAD),
    case(
        "v1-tenant-with-a-slash", "GET", "/api/v1/collections?tenant=tenant-a%2F..%2Ftenant-b", "reader", BAD
    ),
    case(
        "v1-collection-dot-dot-delete",
        "DELETE",
        "/api/v1/collections/..?tenant=tenant-a&database=data",
        "writer",
        BAD,
    ),
    case("v1-no-auth", "GET", "/api/v1/collections", "none", AUTHN),
    # The web console (docs/console.md) signs browsers in itself: no path through it reaches
    # the API unauthenticated, and API credentials or a forged cookie open none of its pages.
    case("console-dot-dot-to-api-no-auth", "GET", f"/console/..{B}/collections", "none", BAD),
    case("console-encoded-to-api-no-auth", "GET", "/console%2F..%2Fapi%2Fv2%2Ftenants", "none", REFUSED),
    case("console-page-of-other-tenant-no-session", "GET", "/console/t/tenant-b/d/data/", "none", {303}),
    case("console-page-with-an-api-token", "GET", "/console/t/tenant-b/d/data/c/{b_name}/", "reader", {303}),
    case(
        "console-forged-session-cookie",
        "GET",
        "/console/t/tenant-b/d/data/",
        "none",
        {303},
        extra=[(b"cookie", b"chromactl-console=eyJ1IjoiYWRtaW4ifQ")],
    ),
    case(
        "console-session-cookie-on-the-api",
        "GET",
        f"{B}/collections",
        "none",
        AUTHN,
        extra=[(b"cookie", b"chromactl-console=eyJ1IjoiYWRtaW4ifQ")],
    ),
    case("console-write-method", "DELETE", "/console/t/tenant-b/d/data/", "none", AUTHN),
    case(
        "console-sign-in-with-a-wrong-token",
        "POST",
        "/console/sign-in",
        "none",
        AUTHN,
        body=b"method=token&token=ck_wrong",
        extra=[(b"content-type", b"application/x-www-form-urlencoded")],
    ),
    # Dot segments after a known route: the upstream client (yarl) normalises them away,
    # so the gateway would authorize one route and Chroma would run another.
    case("dot-dot-collection-delete-is-database-delete", "DELETE", f"{A}/collections/..", "writer", {400}),
    case("encoded-dot-dot-collection-delete", "DELETE", f"{A}/collections/%2e%2e", "writer", {400}),
    case("dot-dot-as-collection-id", "POST", f"{A}/collections/../get", "reader", {400}, body={}),
    case("dot-dot-database-list", "GET", f"{T}/tenant-a/databases/../collections", "reader", {400}),
    case("dot-as-collection", "GET", f"{A}/collections/.", "reader", {400}),
    case("dot-dot-to-reset-admin", "POST", "/api/v2/x/../reset", "admin", {400}),
    case("encoded-dot-dot-to-crn-admin", "GET", "/api/v2/x/%2E%2E/collections/{b}", "admin", {400}),
    # --- method games -------------------------------------------------------------------------
    case("head-other-tenant", "HEAD", f"{B}/collections", "reader", DENY),
    case("options-other-tenant", "OPTIONS", f"{B}/collections", "reader", DENY),
    case("lowercase-method", "delete", f"{A}/collections/docs-a", "writer", REFUSED),
    case("trace-method", "TRACE", f"{A}/collections", "reader", REFUSED),
    case("unknown-method", "PURGE", f"{A}/collections/docs-a", "writer", REFUSED),
    case(
        "override-header-delete-collection",
        "GET",
        f"{A}/collections/docs-a",
        "reader",
        {200},
        extra=[(b"x-http-method-override", b"DELETE")],
    ),
    case(
        "override-header-delete-records",
        "POST",
        A + "/collections/{a}/get",
        "reader",
        {200},
        body={"ids": ["r0"]},
        extra=[
            (b"x-http-method-override", b"DELETE"),
            (b"x-http-method", b"DELETE"),
            (b"x-method-override", b"DELETE"),
        ],
    ),
    case("override-query-param", "GET", f"{A}/collections/docs-a?_method=DELETE", "reader", {200}),
    case(
        "override-to-admin-route",
        "GET",
        f"{A}",
        "writer",
        {200},
        extra=[(b"x-http-method-override", b"DELETE")],
    ),
    case("get-on-write-route", "GET", A + "/collections/{a}/add", "reader", REFUSED),
    case("head-public-probe", "HEAD", "/api/v2/heartbeat", "none", {200}),
    # --- header games -------------------------------------------------------------------------
    case("no-credentials", "GET", f"{A}/collections", "none", AUTHN),
    case("bearer-without-token", "GET", f"{A}/collections", "bearer-empty", AUTHN),
    case("bearer-spaces-only", "GET", f"{A}/collections", "bearer-spaces", AUTHN),
    case("basic-empty", "GET", f"{A}/collections", "basic-empty", AUTHN),
    case("basic-not-base64", "GET", f"{A}/collections", "basic-garbage", AUTHN),
    case("basic-no-password", "GET", f"{A}/collections", "basic-no-password", AUTHN),
    case("basic-wrong-password", "GET", f"{A}/collections", "basic-wrong", AUTHN),
    case("basic-right-other-tenant", "GET", f"{B}/collections", "basic", DENY),
    case("wrong-token-typo", "GET", f"{A}/collections", "typo", AUTHN),
    case("non-ascii-token", "GET", f"{A}/collections", "non-ascii", AUTHN),
    case(
        "non-ascii-header-name-value",
        "GET",
        f"{B}/collections",
        "reader",
        DENY,
        extra=[(b"x-tenant", "tenant-b\u00e9".encode())],
    ),
    case("duplicate-authorization-reader-then-wrong", "GET", f"{B}/collections", "dup-reader-wrong", REFUSED),
    case("duplicate-authorization-wrong-then-reader", "GET", f"{B}/collections", "dup-wrong-reader", REFUSED),
    case("authorization-and-x-chroma-token-differ", "GET", f"{B}/collections", "both-headers", REFUSED),
    case("x-chroma-token-other-tenant", "GET", f"{B}/collections", "x-chroma-token", DENY),
    case("scheme-case-and-header-case", "GET", f"{B}/collections", "upper-case", DENY),
    case("oversized-authorization", "GET", f"{A}/collections", "huge-bearer", REFUSED),
    case(
        "oversized-other-header",
        "GET",
        f"{A}/collections",
        "reader",
        REFUSED,
        extra=[(b"x-padding", b"p" * 200_000)],
    ),
    case(
        "many-headers",
        "GET",
        f"{A}/collections",
        "reader",
        {200, *REFUSED},
        extra=[(f"x-h{i}".encode(), b"v") for i in range(2000)],
    ),
    case(
        "spoofed-forwarded-headers",
        "GET",
        f"{B}/collections",
        "reader",
        DENY,
        extra=[
            (b"x-forwarded-for", b"127.0.0.1"),
            (b"x-real-ip", b"127.0.0.1"),
            (b"x-forwarded-user", b"sec-admin"),
            (b"x-chroma-user", b"sec-admin"),
        ],
    ),
    case(
        "smuggled-second-request",
        "POST",
        A + "/collections/{a}/get",
        "reader",
        {200, *REFUSED},
        body=b"0\r\n\r\nGET " + B.encode() + b"/collections HTTP/1.1\r\nHost: x\r\n\r\n",
        extra=[(b"transfer-encoding", b"chunked")],
    ),
    # --- cross-tenant collection ids: every record operation ---------------------------------
    *[
        case(f"cross-tenant-{op}-reader", method, A + "/collections/{b}/" + verb, "reader", GONE, body=body)
        for op, method, verb, body in RECORD_OPS
        if op in ("count", "get", "query", "search")
    ],
    *[
        case(f"cross-tenant-{op}-writer", method, A + "/collections/{b}/" + verb, "writer", GONE, body=body)
        for op, method, verb, body in RECORD_OPS
    ],
    case(
        "cross-tenant-modify-collection",
        "PUT",
        A + "/collections/{b}",
        "writer",
        GONE,
        body={"new_name": "x"},
    ),
    case("cross-tenant-by-id", "GET", A + "/collections/by-id/{b}", "reader", GONE),
    case("cross-tenant-id-as-name-delete", "DELETE", A + "/collections/{b}", "writer", GONE),
    case("cross-tenant-name-delete", "DELETE", A + "/collections/{b_name}", "writer", GONE),
    case("cross-tenant-upper-case-id", "POST", A + "/collections/{b_upper}/get", "reader", GONE, body={}),
    case("cross-tenant-encoded-id", "POST", A + "/collections/{b_encoded}/get", "reader", GONE, body={}),
    case("cross-tenant-id-trailing-slash", "POST", A + "/collections/{b}/get/", "reader", GONE, body={}),
    # --- blocked routes --------------------------------------------------------------------------
    case("crn-route-admin", "GET", "/api/v2/collections/tenant-b:data:{b_name}", "admin", DENY),
    case("crn-route-id-admin", "GET", "/api/v2/collections/{b}", "admin", DENY),
    case("crn-route-trailing-slash", "GET", "/api/v2/collections/{b}/", "admin", DENY),
    case("crn-route-encoded-slash", "GET", "/api/v2/collections/{b}%2F", "admin", BAD),
    case("crn-route-semicolon", "GET", "/api/v2/collections/{b};x", "admin", DENY),
    case("crn-route-double-slash", "GET", "/api/v2//collections/{b}", "admin", REFUSED),
    case("crn-route-reader", "GET", "/api/v2/collections/{b}", "reader", DENY),
    case("reset-admin-disabled", "POST", "/api/v2/reset", "admin", DENY),
    case("reset-trailing-slash", "POST", "/api/v2/reset/", "admin", DENY),
    case("reset-double-slash", "POST", "/api/v2//reset", "admin", REFUSED),
    case("reset-case", "POST", "/api/v2/RESET", "admin", REFUSED),
    case("reset-semicolon", "POST", "/api/v2/reset;x", "admin", REFUSED),
    case("reset-encoded", "POST", "/api/v2/%72eset", "admin", DENY),
    case("reset-writer", "POST", "/api/v2/reset", "writer", DENY),
    case("agent-api-writer", "POST", "/chromactl/v1/hold", "writer", DENY),
    # --- CORS preflight abuse --------------------------------------------------------------------
    case(
        "preflight-no-auth",
        "OPTIONS",
        f"{B}/collections",
        "none",
        AUTHN,
        extra=[
            (b"origin", b"https://evil.example"),
            (b"access-control-request-method", b"DELETE"),
            (b"access-control-request-headers", b"authorization"),
        ],
    ),
    case(
        "preflight-probe-no-auth",
        "OPTIONS",
        "/api/v2/heartbeat",
        "none",
        AUTHN,
        extra=[(b"origin", b"https://evil.example"), (b"access-control-request-method", b"GET")],
    ),
    case(
        "cors-get-with-origin",
        "GET",
        f"{B}/collections",
        "reader",
        DENY,
        extra=[(b"origin", b"https://evil.example")],
    ),
    case("cors-null-origin", "GET", f"{A}/collections", "reader", {200}, extra=[(b"origin", b"null")]),
    # --- forged and invalid JWTs (the control is a valid one) ------------------------------------
    case("jwt-valid-control", "GET", f"{A}/collections", "jwt-valid", {200}),
    case("jwt-valid-other-tenant", "GET", f"{B}/collections", "jwt-valid", DENY),
    case("jwt-alg-none", "GET", f"{A}/collections", "jwt-none", AUTHN),
    case("jwt-alg-none-x-chroma-token", "GET", f"{A}/collections", "jwt-none-x-chroma", AUTHN),
    case("jwt-hs256-public-key", "GET", f"{A}/collections", "jwt-hs256-pub", AUTHN),
    case("jwt-hs512-public-jwk", "GET", f"{A}/collections", "jwt-hs512-jwk", AUTHN),
    case("jwt-wrong-kid", "GET", f"{A}/collections", "jwt-wrong-kid", AUTHN),
    # Signed by the issuer's key: without a ``kid`` the only key of the JWKS is tried. Valid.
    case("jwt-no-kid-issuer-key", "GET", f"{A}/collections", "jwt-no-kid", {200}),
    case("jwt-no-kid-issuer-key-other-tenant", "GET", f"{B}/collections", "jwt-no-kid", DENY),
    case("jwt-foreign-key-right-kid", "GET", f"{A}/collections", "jwt-foreign", AUTHN),
    case("jwt-embedded-jwk", "GET", f"{A}/collections", "jwt-embedded-jwk", AUTHN),
    case("jwt-es256-foreign", "GET", f"{A}/collections", "jwt-es256", AUTHN),
    case("jwt-expired", "GET", f"{A}/collections", "jwt-expired", AUTHN),
    case("jwt-not-yet-valid", "GET", f"{A}/collections", "jwt-nbf", AUTHN),
    case("jwt-wrong-audience", "GET", f"{A}/collections", "jwt-aud", AUTHN),
    case("jwt-no-audience", "GET", f"{A}/collections", "jwt-no-aud", AUTHN),
    case("jwt-wrong-issuer", "GET", f"{A}/collections", "jwt-iss", AUTHN),
    case("jwt-no-exp", "GET", f"{A}/collections", "jwt-no-exp", AUTHN),
    case("jwt-tampered-payload", "GET", f"{B}/collections", "jwt-tampered", AUTHN),
    case("jwt-escalated-groups-self-signed", "GET", f"{B}/collections", "jwt-foreign-admin", AUTHN),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _hmac_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256/HS512 with ``secret`` (PyJWT refuses a public key as secret, by design: we must not)."""
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[header["alg"]]
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(sig)}"


def credentials(oidc: OIDC, watch: Watch) -> dict[str, Headers]:
    """Every credential set the corpus uses; each token is registered as a secret."""
    now = int(time.time())
    claims = {
        "iss": oidc.issuer,
        "aud": "https://chroma.test",
        "sub": "team-a-app",
        "iat": now,
        "exp": now + 600,
        "groups": ["team-a-readers"],
    }
    pub_pem = oidc.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pub_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(oidc.key.public_key())
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    valid = oidc.mint()
    head, payload, sig = valid.split(".")
    escalated = json.loads(base64.urlsafe_b64decode(payload + "=="))
    escalated["groups"] = ["chroma-admins", "team-a-readers"]
    forged: dict[str, str] = {
        "jwt-valid": valid,
        "jwt-none": _unsigned({"alg": "none", "typ": "JWT", "kid": oidc.kid}, claims),
        "jwt-hs256-pub": _hmac_signed({"alg": "HS256", "typ": "JWT", "kid": oidc.kid}, claims, pub_pem),
        "jwt-hs512-jwk": _hmac_signed(
            {"alg": "HS512", "typ": "JWT", "kid": oidc.kid}, claims, pub_jwk.encode()
        ),
        "jwt-wrong-kid": oidc.mint(kid="sec-k-unknown"),
        "jwt-no-kid": jwt.encode(claims, oidc.key, algorithm="RS256"),
        "jwt-foreign": jwt.encode(claims, foreign, algorithm="RS256", headers={"kid": oidc.kid}),
        "jwt-embedded-jwk": jwt.encode(
            claims,
            foreign,
            algorithm="RS256",
            headers={
                "kid": oidc.kid,
                "jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(foreign.public_key())),
            },
        ),
        "jwt-es256": jwt.encode(
            claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": oidc.kid}
        ),
        "jwt-expired": oidc.mint({"iat": now - 3600, "exp": now - 60}),
        "jwt-nbf": oidc.mint({"nbf": now + 3600}),
        "jwt-aud": oidc.mint({"aud": "https://other.example"}),
        "jwt-no-aud": oidc.mint({"aud": None}),
        "jwt-iss": oidc.mint({"iss": "https://evil.example"}),
        "jwt-no-exp": oidc.mint({"exp": None}),
        "jwt-tampered": f"{head}.{_b64(json.dumps(escalated).encode())}.{sig}",
        "jwt-foreign-admin": jwt.encode(
            {**claims, "groups": ["chroma-admins"]}, foreign, algorithm="RS256", headers={"kid": oidc.kid}
        ),
    }
    for token in forged.values():
        watch.secret(token)
    out: dict[str, Headers] = {k: bearer(v) for k, v in forged.items()}
    out["jwt-none-x-chroma"] = [(b"x-chroma-token", forged["jwt-none"].encode())]
    watch.secret(base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode())
    out.update(
        {
            "none": [],
            "reader": bearer(READER_A),
            "writer": bearer(WRITER_A),
            "admin": bearer(ADMIN),
            "bearer-empty": [(b"authorization", b"Bearer")],
            "bearer-spaces": [(b"authorization", b"Bearer    ")],
            "basic-empty": [(b"authorization", b"Basic")],
            "basic-garbage": [(b"authorization", b"Basic !!!not-base64!!!")],
            "basic-no-password": basic(BASIC_USER, ""),
            "basic-wrong": basic(BASIC_USER, WRONG[2]),
            "basic": basic(BASIC_USER, BASIC_PASSWORD),
            "typo": bearer(WRONG[0]),
            "non-ascii": [(b"authorization", "Bearer ck_t\u00f6k\u00e9n-\u2603".encode())],
            "dup-reader-wrong": bearer(READER_A) + bearer(WRONG[1]),
            "dup-wrong-reader": bearer(WRONG[1]) + bearer(READER_A),
            "both-headers": [*bearer(READER_A), (b"x-chroma-token", WRONG[1].encode())],
            "x-chroma-token": [(b"x-chroma-token", READER_A.encode())],
            "upper-case": [(b"AUTHORIZATION", b"BEARER " + READER_A.encode())],
            "huge-bearer": [(b"authorization", b"Bearer " + READER_A.encode() + b"x" * 100_000)],
        }
    )
    return out


@pytest.fixture(scope="module")
def creds(oidc: OIDC, watch: Watch) -> dict[str, Headers]:
    return credentials(oidc, watch)


@pytest.fixture(scope="module")
def before(sec_gateway: RunningGateway, world: World) -> dict[str, Any]:
    return world.snapshot()


def _target(c: Case, world: World) -> str:
    return c.target.format(
        a=world.a_id,
        b=world.b_id,
        b_name=world.b_name,
        b_upper=world.b_id.upper(),
        b_encoded="".join(f"%{ord(ch):02x}" for ch in world.b_id),
    )


def _body(c: Case) -> bytes:
    if c.body is None:
        return b""
    if isinstance(c.body, bytes):
        return c.body
    return json.dumps(c.body).encode()


def test_corpus_is_large_and_named() -> None:
    names = [c.name for c in CASES]
    assert len(CASES) >= 60
    assert len(set(names)) == len(names), "case names must be unique"


@pytest.mark.parametrize("c", CASES, ids=[c.name for c in CASES])
def test_refused_or_harmless(
    c: Case,
    sec_gateway: RunningGateway,
    world: World,
    creds: dict[str, Headers],
    before: dict[str, Any],
    watch: Watch,
) -> None:
    headers = list(creds[c.cred]) + list(c.extra)
    body = _body(c)
    if body and not any(n == b"transfer-encoding" for n, _ in headers):
        headers.append((b"content-type", b"application/json"))
    resp = rawhttp.request(sec_gateway.url, c.method, _target(c, world), headers, body)
    text = resp.text()
    watch.record(f"corpus {c.name}", text)
    assert resp.status in c.expect, f"{c.name}: {resp.status} not in {sorted(c.expect)}\n{text[:2000]}"
    sent = _target(c, world) + body.decode("latin-1")
    for marker in world.b_markers:
        if marker in sent:  # an error may quote what the caller sent
            text = text.replace(marker, "")
        assert marker not in text, f"{c.name}: the answer carries tenant-b data ({marker})"
    allowed_origin = resp.header("access-control-allow-origin")
    if allowed_origin is not None:
        assert not (
            allowed_origin in ("*", "https://evil.example", "null")
            and (resp.header("access-control-allow-credentials") or "").lower() == "true"
        ), f"{c.name}: a foreign origin may send credentials"


def test_everything_in_chroma_unchanged_and_up(
    sec_gateway: RunningGateway, world: World, before: dict[str, Any], sec_chroma: Any
) -> None:
    """Runs after the corpus (same module, later): no case changed or wiped anything."""
    assert sec_chroma.process.poll() is None, "Chroma died during the corpus"
    assert httpx.get(world.chroma_url + "/api/v2/heartbeat", timeout=5).status_code == 200
    after = world.snapshot()
    assert after == before
