"""Classify every request: which operation it is and what it needs.

The table follows Chroma 1.x's routes (``docs/gateway.md`` lists it). Anything not
in it needs an admin with a grant over everything, so a route added by a newer Chroma
is closed until it is classified here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chromactl.gateway.principal import Reach, Role


class Access(enum.Enum):
    PUBLIC = "public"  #: probes: no credentials needed
    SESSION = "session"  #: any authenticated caller
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"  #: admin writes (tenants, databases, reset)
    AGENT = "agent"  #: the chromactl agent API
    BLOCKED = "blocked"  #: never forwarded


@dataclass(frozen=True, slots=True)
class Route:
    """What one request is, for authorization, write-hold and metrics."""

    operation: str
    access: Access
    reach: Reach = Reach.ANY
    tenant: str = ""
    database: str = ""
    #: The collection segment of the path (an id for record operations).
    collection: str = ""
    #: The collection segment is an id that Chroma does not check against the
    #: tenant/database of the path: the gateway has to.
    resolve_collection: bool = False

    @property
    def needed_role(self) -> Role:
        if self.access is Access.WRITE:
            return Role.WRITER
        if self.access in (Access.ADMIN, Access.AGENT):
            return Role.ADMIN
        return Role.READER

    @property
    def is_write(self) -> bool:
        """Changes Chroma's data: held while writes are held."""
        return self.access in (Access.WRITE, Access.ADMIN)


AGENT_PREFIX = "/chromactl/v1"

_PUBLIC = {
    "/api/v2": "root",
    "/api/v2/heartbeat": "heartbeat",
    "/api/v2/healthcheck": "healthcheck",
    "/api/v2/version": "version",
}
_RECORD_READS = {"get": "collection_get", "query": "collection_query", "search": "collection_search"}
_RECORD_WRITES = {
    "add": "collection_add",
    "update": "collection_update",
    "upsert": "collection_upsert",
    "delete": "collection_delete_records",
    "fork": "collection_fork",
}

UNKNOWN = Route("unknown", Access.ADMIN, Reach.EVERYTHING)


def classify(method: str, path: str) -> Route:
    """Classify ``method path`` (``path`` without the gateway's prefix or query)."""
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/")
    if path in _PUBLIC:
        return Route(_PUBLIC[path], Access.PUBLIC) if method in ("GET", "HEAD") else UNKNOWN
    if path == AGENT_PREFIX or path.startswith(AGENT_PREFIX + "/"):
        return Route("agent", Access.AGENT, Reach.EVERYTHING)
    if path.startswith("/api/v1"):
        return Route("v1", Access.SESSION)
    if path in ("/openapi.json", "/docs"):
        return Route("docs", Access.SESSION) if method == "GET" else UNKNOWN
    if not path.startswith("/api/v2/"):
        return UNKNOWN
    parts = path[len("/api/v2/") :].split("/")
    return _classify_v2(method, parts)


def _classify_v2(method: str, p: list[str]) -> Route:
    n = len(p)
    if p == ["auth", "identity"] and method == "GET":
        return Route("identity", Access.SESSION)
    if p == ["pre-flight-checks"] and method == "GET":
        return Route("pre_flight_checks", Access.SESSION)
    if p == ["reset"] and method == "POST":
        return Route("reset", Access.ADMIN, Reach.EVERYTHING)
    if p[0] == "collections" and n == 2:
        # GET /api/v2/collections/{crn} panics Chroma's handler.
        return Route("collection_by_crn", Access.BLOCKED)
    if p[0] != "tenants" or any(not seg for seg in p):
        return UNKNOWN
    if n == 1:
        return Route("create_tenant", Access.ADMIN, Reach.EVERYTHING) if method == "POST" else UNKNOWN
    t = p[1]
    if n == 2:
        if method == "GET":
            return Route("get_tenant", Access.READ, Reach.TENANT, t)
        if method == "PATCH":
            return Route("update_tenant", Access.ADMIN, Reach.WHOLE_TENANT, t)
        return UNKNOWN
    if p[2] != "databases":
        return UNKNOWN
    if n == 3:
        if method == "GET":
            return Route("list_databases", Access.READ, Reach.TENANT, t)
        if method == "POST":
            return Route("create_database", Access.ADMIN, Reach.WHOLE_TENANT, t)
        return UNKNOWN
    d = p[3]
    if n == 4:
        if method == "GET":
            return Route("get_database", Access.READ, Reach.DATABASE, t, d)
        if method == "DELETE":
            return Route("delete_database", Access.ADMIN, Reach.DATABASE, t, d)
        return UNKNOWN
    rest = p[4:]
    if rest == ["collections_count"] and method == "GET":
        return Route("count_collections", Access.READ, Reach.DATABASE, t, d)
    if rest[0] != "collections":
        return UNKNOWN
    if len(rest) == 1:
        if method == "GET":
            return Route("list_collections", Access.READ, Reach.DATABASE, t, d)
        if method == "POST":
            return Route("create_collection", Access.WRITE, Reach.DATABASE, t, d)
        return UNKNOWN
    if len(rest) == 3 and rest[1] == "by-id" and method == "GET":
        return Route("get_collection_by_id", Access.READ, Reach.DATABASE, t, d, rest[2])
    c = rest[1]
    if len(rest) == 2:
        if method == "GET":  # by name; Chroma checks tenant/database itself
            return Route("get_collection", Access.READ, Reach.DATABASE, t, d, c)
        if method == "PUT":  # by id; Chroma does not check tenant/database
            return Route("update_collection", Access.WRITE, Reach.DATABASE, t, d, c, True)
        if method == "DELETE":  # by name; Chroma checks tenant/database itself
            return Route("delete_collection", Access.WRITE, Reach.DATABASE, t, d, c)
        return UNKNOWN
    verb = "/".join(rest[2:])
    if verb == "count" and method == "GET":
        return Route("collection_count", Access.READ, Reach.DATABASE, t, d, c, True)
    if method == "POST" and verb in _RECORD_READS:
        return Route(_RECORD_READS[verb], Access.READ, Reach.DATABASE, t, d, c, True)
    if method == "POST" and verb in _RECORD_WRITES:
        return Route(_RECORD_WRITES[verb], Access.WRITE, Reach.DATABASE, t, d, c, True)
    if method == "POST" and verb == "functions/attach":
        return Route("attach_function", Access.WRITE, Reach.DATABASE, t, d, c, True)
    return UNKNOWN
