"""Chroma 0.x clients against a 1.x server: which API a request speaks, and how its request and
answer are translated (``docs/legacy-clients.md``).

Two generations of old clients reach the gateway:

- ``v1``: the 0.4.x Python client (and the JavaScript client ``chromadb`` 1.5-1.10) speaks
  ``/api/v1``: collections at ``/api/v1/collections``, tenant and database (from 0.4.15) as
  query parameters, ``where: {}`` for "no filter". Chroma 1.x has no ``/api/v1``.
- ``v2-0.x``: the 0.5.x and 0.6.x Python clients speak ``/api/v2`` as 1.x does, but parse a
  collection as 0.x served it: ``configuration_json`` holds ``hnsw_configuration`` and
  ``_type`` tags, and nothing else (an unknown key is an error to them); and they raise their
  exception classes by the names 0.x gave errors (``InvalidCollection``, ``InvalidDimension``)
  on every collection's route. On the wire they send
  their HTTP library's ``User-Agent`` (``python-httpx/...``), where the 1.x Python client names
  itself (``Chroma Python Client v1...``), and they send a body without a ``Content-Type``
  (httpx's ``content=``, where a program's ``json=`` names one). The JavaScript clients of
  both generations send the same headers; the old one (npm ``chromadb`` 1.10) reads 1.x's
  answers as they are, so they pass untouched.

A ``v1`` request is rewritten to its 1.x path (and its ``where: {}`` dropped) before any
other step sees it, so authentication, authorization with its tenant scope, limits, the
write hold and the journal all see and record the 1.x request Chroma applies. Answers are
rewritten back: collections in the shape the client parses, Chroma's errors as the names its
exception classes are registered under.

Everything here is a pure function of bytes and strings; the ASGI step is
:mod:`chromactl.gateway.middleware.legacy_clients`.
"""

from __future__ import annotations

import enum
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode

from chromactl.gateway.routes import Operation, Route, classify

V1_PREFIX = "/api/v1"
V2_PREFIX = "/api/v2"
DEFAULT_TENANT = "default_tenant"
DEFAULT_DATABASE = "default_database"
#: How the 0.5 and 0.6 Python clients start their ``User-Agent`` (httpx's own).
LEGACY_V2_AGENT = b"python-httpx/"


class ClientApi(enum.StrEnum):
    """The API an old client speaks (the audit log's ``client_api``)."""

    V1 = "v1"
    V2_0X = "v2-0.x"


class Answer(enum.Enum):
    """What an answer holds, for its translation back."""

    COLLECTION = "collection"
    COLLECTIONS = "collections"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Translation:
    """A request as Chroma 1.x takes it, and how its answer goes back."""

    client_api: ClientApi
    path: str
    query_string: bytes
    answer: Answer
    #: The request body is a record operation's, whose ``where: {}`` 1.x refuses.
    fix_filters: bool = False
    #: The request creates a collection (a 0.x ``configuration`` goes to 1.x's shape).
    creates_collection: bool = False
    #: Why the request cannot be translated (answered 400 with it); empty when it can.
    error: str = ""


#: The 1.x routes whose answer a 0.5/0.6 client parses in 0.x's shape: its collections.
COLLECTION_ANSWERS = {
    Operation.LIST_COLLECTIONS: Answer.COLLECTIONS,
    Operation.CREATE_COLLECTION: Answer.COLLECTION,
    Operation.GET_COLLECTION: Answer.COLLECTION,
}

#: The 1.x routes whose errors a 0.5/0.6 client raises by 0.x's names (a missing collection,
#: an embedding of the wrong dimension).
COLLECTION_ERRORS = frozenset(
    {
        *COLLECTION_ANSWERS,
        Operation.UPDATE_COLLECTION,
        Operation.DELETE_COLLECTION,
        Operation.COLLECTION_COUNT,
        Operation.COLLECTION_GET,
        Operation.COLLECTION_QUERY,
        Operation.COLLECTION_ADD,
        Operation.COLLECTION_UPDATE,
        Operation.COLLECTION_UPSERT,
        Operation.COLLECTION_DELETE_RECORDS,
    }
)

#: v1 collection sub-resources that keep their name in v2.
_RECORD_OPS = frozenset({"add", "update", "upsert", "get", "query", "delete", "count"})
_FILTERED_OPS = frozenset({"get", "query", "delete"})


def is_legacy_v2_request(user_agent: bytes | None, content_type: bool) -> bool:
    """A request with this ``User-Agent``, and a ``Content-Type`` or none, is a 0.5/0.6 Python
    client's: httpx's agent (not Chroma's name), and no ``Content-Type``."""
    return not content_type and user_agent is not None and user_agent.startswith(LEGACY_V2_AGENT)


def is_legacy_v2_client(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """The request with these headers is a 0.5/0.6 Python client's."""
    agent: bytes | None = None
    content_type = False
    for name, value in headers:
        if name == b"user-agent":
            agent = value
        elif name == b"content-type":
            content_type = True
    return is_legacy_v2_request(agent, content_type)


def is_translated(route: Route, user_agent: bytes | None, content_type: bool) -> bool:
    """Whether :func:`translate` rewrites a request classified ``route`` with this
    ``User-Agent`` and a ``Content-Type`` or none (the fast path, which reads them with the
    other headers, leaves such requests to the ASGI app's legacy-clients step)."""
    return route.operation is Operation.V1 or (
        route.operation in COLLECTION_ERRORS and is_legacy_v2_request(user_agent, content_type)
    )


def translate(
    method: str, path: str, query_string: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> Translation | None:
    """How an old client's request goes to 1.x, or None for a 1.x request (left alone)."""
    if path == V1_PREFIX or path.startswith(V1_PREFIX + "/"):
        return _v1(method, path[len(V1_PREFIX) :].rstrip("/"), query_string)
    if path.startswith(V2_PREFIX + "/") and is_legacy_v2_client(headers):
        operation = classify(method, path).operation
        if operation not in COLLECTION_ERRORS:
            return None
        # Collections answered in 0.x's shape; errors by 0.x's names.
        answer = COLLECTION_ANSWERS.get(operation, Answer.OTHER)
        return Translation(
            ClientApi.V2_0X,
            path,
            query_string,
            answer,
            creates_collection=operation is Operation.CREATE_COLLECTION,
        )
    return None


def _v1(method: str, rest: str, query_string: bytes) -> Translation:
    params = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    tenant = next((v for k, v in params if k == "tenant"), DEFAULT_TENANT)
    database = next((v for k, v in params if k == "database"), DEFAULT_DATABASE)
    kept = urlencode([(k, v) for k, v in params if k not in ("tenant", "database")]).encode()
    if "/" in tenant + database:
        refused = "a tenant or database name has no '/'"
        return Translation(ClientApi.V1, V1_PREFIX, kept, Answer.OTHER, error=refused)
    scoped = f"{V2_PREFIX}/tenants/{tenant}/databases/{database}"
    parts = rest.split("/")[1:] if rest else []

    def to(
        path: str, answer: Answer = Answer.OTHER, *, fix_filters: bool = False, creates: bool = False
    ) -> Translation:
        return Translation(ClientApi.V1, path, kept, answer, fix_filters, creates)

    if not parts or parts == ["heartbeat"]:
        return to(f"{V2_PREFIX}/heartbeat")
    head = parts[0]
    if len(parts) == 1 and head in ("version", "pre-flight-checks", "reset"):
        return to(f"{V2_PREFIX}/{head}")
    if head == "count_collections" and len(parts) == 1:
        return to(f"{scoped}/collections_count")
    if head == "tenants":
        return to(f"{V2_PREFIX}/{'/'.join(parts)}")
    if head == "databases":
        return to(f"{V2_PREFIX}/tenants/{tenant}/{'/'.join(parts)}")
    if head == "collections":
        if len(parts) == 1:
            answer = Answer.COLLECTIONS if method == "GET" else Answer.COLLECTION
            return to(f"{scoped}/collections", answer, creates=method == "POST")
        if len(parts) == 2:
            answer = Answer.COLLECTION if method == "GET" else Answer.OTHER
            return to(f"{scoped}/collections/{parts[1]}", answer)
        if len(parts) == 3 and parts[2] in _RECORD_OPS:
            return to(f"{scoped}/collections/{parts[1]}/{parts[2]}", fix_filters=parts[2] in _FILTERED_OPS)
    # No 1.x counterpart: say so, and what to do, rather than forward a path 1.x does not know.
    what = f"{method} {V1_PREFIX}{rest}"
    refused = f"{what} has no Chroma 1.x counterpart; move this app to a Chroma 1.x client (chromadb>=1.0)"
    return Translation(ClientApi.V1, V1_PREFIX, kept, Answer.OTHER, error=refused)


# -- request bodies ---------------------------------------------------------------------------


class Refused(ValueError):
    """An old client's request that its own server refused and 1.x would take (answered 400
    with the old server's reason)."""


#: What a 0.4 server answered for a delete that names no records (1.x deletes none, silently).
DELETE_NOTHING = (
    "You must provide either ids, where, or where_document to delete. If you want to delete all "
    "data in a collection you can delete the collection itself using the delete_collection "
    "method. Or alternatively, you can get() all the relevant ids and then delete them."
)


def request_body(translation: Translation, body: bytes) -> bytes:
    """The body 1.x takes for an old client's ``body`` (unchanged unless it needs to be).

    Raises :class:`Refused` for a request the old client's server refused."""
    if not body or not (translation.fix_filters or translation.creates_collection):
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return body  # Chroma answers what it answers for a malformed body
    if not isinstance(doc, dict):
        return body
    changed = False
    if translation.fix_filters:
        for key in ("where", "where_document"):
            if key in doc and doc[key] in ({}, None):
                del doc[key]  # 0.4's "no filter"; 1.x refuses an empty one
                changed = True
        if translation.path.endswith("/delete") and not (
            doc.get("ids") or doc.get("where") or doc.get("where_document")
        ):
            raise Refused(DELETE_NOTHING)
        for key in ("sort", "page", "page_size"):
            if key in doc and doc[key] is None:
                del doc[key]
                changed = True
    if translation.creates_collection and isinstance(doc.get("configuration"), dict):
        doc["configuration"] = _configuration_to_1x(doc["configuration"])
        changed = True
    return json.dumps(doc, separators=(",", ":")).encode() if changed else body


#: 0.x HNSW settings that 1.x names another way (the rest keep their names).
_HNSW_TO_1X = {"M": "max_neighbors"}
_HNSW_FROM_1X = {v: k for k, v in _HNSW_TO_1X.items()}
#: The HNSW settings a 0.5/0.6 client knows, with 0.x's defaults (it refuses any other key).
HNSW_0X_DEFAULTS: dict[str, Any] = {
    "space": "l2",
    "ef_construction": 100,
    "ef_search": 10,
    "num_threads": 1,
    "M": 16,
    "resize_factor": 1.2,
    "batch_size": 100,
    "sync_threshold": 1000,
}


def _configuration_to_1x(config: dict[str, Any]) -> dict[str, Any]:
    hnsw = config.get("hnsw_configuration")
    if not isinstance(hnsw, dict):
        return {}
    return {"hnsw": {_HNSW_TO_1X.get(k, k): v for k, v in hnsw.items() if k != "_type"}}


# -- answers ----------------------------------------------------------------------------------


def answer_body(translation: Translation, status: int, body: bytes) -> bytes:
    """The answer the old client parses for 1.x's ``status`` and ``body``."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return body
    if status >= 400:
        return _json(_error(translation, doc)) if isinstance(doc, dict) else body
    if translation.answer is Answer.COLLECTION and _is_collection(doc):
        return _json(collection(translation.client_api, doc))
    if translation.answer is Answer.COLLECTIONS and isinstance(doc, list) and all(map(_is_collection, doc)):
        return _json([collection(translation.client_api, c) for c in doc])
    return body


def _is_collection(doc: Any) -> TypeGuard[dict[str, Any]]:
    """``doc`` is a collection as Chroma answers one (anything else passes unchanged)."""
    return isinstance(doc, dict) and "id" in doc and "name" in doc


def collection(client_api: ClientApi, doc: dict[str, Any]) -> dict[str, Any]:
    """A 1.x collection as the 0.x clients parse it: 0.x's keys only (0.4's model takes id,
    name and metadata, and no other key)."""
    out = {"id": doc.get("id"), "name": doc.get("name"), "metadata": doc.get("metadata")}
    if client_api is ClientApi.V1:
        return out
    return {
        **out,
        "tenant": doc.get("tenant", DEFAULT_TENANT),
        "database": doc.get("database", DEFAULT_DATABASE),
        "configuration_json": _configuration_to_0x(doc),
        "dimension": doc.get("dimension"),
        "version": doc.get("version", 0),
        "log_position": doc.get("log_position", 0),
    }


def _configuration_to_0x(doc: dict[str, Any]) -> dict[str, Any]:
    config = doc.get("configuration_json") or {}
    hnsw_1x = config.get("hnsw") if isinstance(config, dict) else None
    hnsw = dict(HNSW_0X_DEFAULTS)
    # What the schema records for the vector index (num_threads, batch_size live there).
    indexed = (
        (((doc.get("schema") or {}).get("keys") or {}).get("#embedding") or {}).get("float_list") or {}
    ).get("vector_index") or {}
    for source in ((indexed.get("config") or {}).get("hnsw"), hnsw_1x):
        if isinstance(source, dict):
            for key, value in source.items():
                name = _HNSW_FROM_1X.get(key, key)
                if name in hnsw and value is not None:
                    hnsw[name] = value
    space = (indexed.get("config") or {}).get("space") or (hnsw_1x or {}).get("space")
    if space:
        hnsw["space"] = space
    hnsw["resize_factor"] = float(hnsw["resize_factor"])
    return {
        "hnsw_configuration": {**hnsw, "_type": "HNSWConfigurationInternal"},
        "_type": "CollectionConfigurationInternal",
    }


#: 1.x's collection errors: the name a 0.5/0.6 server gave them (their clients' exception), and
#: its message's end.
_COLLECTION_ERRORS = {
    "does not exist": ("InvalidCollection", "."),
    "already exists": ("UniqueConstraintError", ""),
}


#: 1.x's message for an embedding of the wrong dimension: (collection's, record's).
_DIMENSION = re.compile(r"Collection expecting embedding with dimension of (\d+), got (\d+)")


def _error(translation: Translation, doc: dict[str, Any]) -> dict[str, Any]:
    """1.x's error as the old client's exception: 0.5/0.6 raise ``InvalidCollectionException``
    for a missing collection and ``UniqueConstraintError`` for a taken name; a 0.4 server
    answered both as a ``ValueError``'s text, which its client raises as a plain exception.
    For an embedding of the wrong dimension all of them raise ``InvalidDimensionException``,
    except on ``add``, which 0.x's servers answered as FastAPI's ``detail`` (a plain exception)."""
    message = str(doc.get("message", ""))
    dimension = _DIMENSION.fullmatch(message)
    if dimension is not None:
        expected, got = dimension.groups()
        text = f"Embedding dimension {got} does not match collection dimensionality {expected}"
        if translation.path.endswith("/add"):
            return {"detail": text}
        return {"error": "InvalidDimension", "message": text}
    if not message.startswith("Collection [") or "]" not in message:
        return doc
    # "Collection [x] does not exist" (1.x) -> "Collection x does not exist." (0.x)
    subject, rest = message[len("Collection [") :].split("]", 1)
    for phrase, (name, end) in _COLLECTION_ERRORS.items():
        if phrase in rest:
            text = f"Collection {subject} {phrase}{end}"
            # 0.4 raised a ValueError for a name, InvalidCollection for an id (its record routes)
            by_id = name == "InvalidCollection" and _is_uuid(subject)
            if translation.client_api is ClientApi.V1 and not by_id:
                return {"error": f"ValueError('Collection {subject} {phrase}.')"}
            return {"error": name, "message": text}
    return doc


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
