"""The console's data pages: tenants and databases, collections, records, similar records.

Each page reads through :class:`~chromactl.gateway.console.api.ConsoleApi` what the signed-in
caller may read; a refusal is shown as the API gave it (a reader scoped to one tenant gets
the same 403 for another tenant's page as its API calls would).
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from chromactl import chromadata
from chromactl.gateway.console.api import ApiError
from chromactl.gateway.principal import ALL

if TYPE_CHECKING:
    from chromactl.gateway.console.app import Console, Visit

#: Tenants the home page looks at, at most.
MAX_TENANTS = 200
#: Collections per page of a database.
COLLECTIONS_PAGE = 50
#: Numbers of an embedding shown (the rest is counted).
PREVIEW = 6
#: Neighbours a similar-records page shows, at most.
MAX_NEIGHBOURS = 100


def preview(embedding: Any) -> str:
    """The first numbers of an embedding and its dimension."""
    if not isinstance(embedding, list) or not embedding:
        return ""
    shown = ", ".join(f"{float(x):.4f}" for x in embedding[:PREVIEW])
    more = f", … ({len(embedding)} in all)" if len(embedding) > PREVIEW else ""
    return f"[{shown}{more}]"


def as_json(value: Any) -> str:
    """A metadata or configuration object as indented JSON text (shown as text, never markup)."""
    if value is None or value == {}:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _page(request: Request) -> int:
    try:
        return max(int(request.query_params.get("page", "0")), 0)
    except ValueError:
        return 0


def _filter(request: Request, name: str) -> tuple[dict[str, Any] | None, str]:
    """A JSON filter from the query (``where``, ``where_document``): the object, or the error."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return None, ""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, f"{name} is not JSON: {exc}"
    except RecursionError:
        return None, f"{name} is nested too deeply"
    if not isinstance(value, dict):
        return None, f'{name} must be a JSON object such as {{"topic": "news"}}'
    return value, ""


class Pages:
    def __init__(self, console: Console) -> None:
        self.console = console

    def _known_tenants(self) -> list[str]:
        """Tenants in Chroma's database, where this gateway can read it (beside the pod)."""
        settings = self.console.settings
        if not settings.gateway.metrics.data_directory:
            return []
        path = settings.chroma.persist_path / chromadata.SQLITE_NAME
        if not path.exists():
            return []
        try:
            conn = chromadata.read_only(path)
            try:
                rows = conn.execute(chromadata.TENANTS_SQL, (MAX_TENANTS,)).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return []
        return [str(r[0]) for r in rows]

    def _candidate_tenants(self, visit: Visit) -> list[str]:
        named = [t for g in visit.principal.grants for t in g.tenants]
        literal = [t for t in named if t != ALL and not any(ch in t for ch in "*?[")]
        if len(literal) < len(named):  # a pattern: the tenants there are, filtered below
            literal += [*self._known_tenants(), "default_tenant"]
        return list(dict.fromkeys(literal))[:MAX_TENANTS]

    async def home(self, request: Request, visit: Visit) -> Response:
        tenants = []
        for tenant in self._candidate_tenants(visit):
            try:
                databases = await visit.api.databases(tenant)
            except ApiError as error:
                if error.status in (403, 404):
                    continue  # not this caller's, or not there
                return self.console.failed(visit, error, "Tenants")
            tenants.append((tenant, sorted(str(d.get("name", "")) for d in databases)))
        try:
            version = await visit.api.version()
        except ApiError as error:
            return self.console.failed(visit, error, "Tenants")
        return self.console.render(
            "home.html", visit=visit, title="Tenants and databases", tenants=tenants, version=version
        )

    async def collections(self, request: Request, visit: Visit) -> Response:
        tenant, database = request.path_params["tenant"], request.path_params["database"]
        page = _page(request)
        api = visit.api
        try:
            found = await api.collections(tenant, database, COLLECTIONS_PAGE + 1, page * COLLECTIONS_PAGE)
            total = await api.count_collections(tenant, database)
            rows = []
            for col in found[:COLLECTIONS_PAGE]:
                rows.append(
                    {
                        "name": col.get("name", ""),
                        "id": col.get("id", ""),
                        "dimension": col.get("dimension"),
                        "count": await api.count(tenant, database, str(col.get("id", ""))),
                        "metadata": as_json(col.get("metadata")),
                        "configuration": as_json(col.get("configuration_json")),
                    }
                )
        except ApiError as error:
            return self.console.failed(visit, error, f"{tenant} / {database}")
        return self.console.render(
            "collections.html",
            visit=visit,
            title=f"{tenant} / {database}",
            tenant=tenant,
            database=database,
            collections=rows,
            total=total,
            page=page,
            more=len(found) > COLLECTIONS_PAGE,
        )

    async def records(self, request: Request, visit: Visit) -> Response:
        p = request.path_params
        tenant, database, name = p["tenant"], p["database"], p["collection"]
        size = self.console.config.page_size
        page = _page(request)
        where, where_error = _filter(request, "where")
        where_document, document_error = _filter(request, "where_document")
        ids = [
            i.strip() for i in request.query_params.get("ids", "").replace("\n", ",").split(",") if i.strip()
        ]
        form = {k: request.query_params.get(k, "") for k in ("where", "where_document", "ids")}
        errors = [e for e in (where_error, document_error) if e]
        context: dict[str, Any] = {
            "tenant": tenant,
            "database": database,
            "name": name,
            "form": form,
            "page": page,
            "records": [],
            "more": False,
        }
        try:
            collection = await visit.api.collection(tenant, database, name)
            context["collection"] = {
                "id": collection.get("id", ""),
                "dimension": collection.get("dimension"),
                "metadata": as_json(collection.get("metadata")),
                "configuration": as_json(collection.get("configuration_json")),
            }
            context["count"] = await visit.api.count(tenant, database, str(collection["id"]))
            if not errors:
                body: dict[str, Any] = {
                    "limit": size + 1,
                    "offset": page * size,
                    "include": ["documents", "metadatas", "embeddings"],
                }
                if where:
                    body["where"] = where
                if where_document:
                    body["where_document"] = where_document
                if ids:
                    body["ids"] = ids
                got = await visit.api.records(tenant, database, str(collection["id"]), body)
                context["records"] = _rows(got)[:size]
                context["more"] = len(got.get("ids") or []) > size
        except ApiError as error:
            if error.status in (400, 422) and "collection" in context:
                errors.append(error.message)
            else:
                return self.console.failed(visit, error, name)
        return self.console.render(
            "records.html", status=400 if errors else 200, visit=visit, title=name, errors=errors, **context
        )

    async def similar(self, request: Request, visit: Visit) -> Response:
        p = request.path_params
        tenant, database, name = p["tenant"], p["database"], p["collection"]
        record_id = request.query_params.get("id", "")
        try:
            n = min(max(int(request.query_params.get("n", "10")), 1), MAX_NEIGHBOURS)
        except ValueError:
            n = 10
        try:
            collection = await visit.api.collection(tenant, database, name)
            cid = str(collection["id"])
            got = await visit.api.records(
                tenant,
                database,
                cid,
                {"ids": [record_id], "include": ["documents", "metadatas", "embeddings"]},
            )
            rows = _rows(got)
            if not rows:
                raise ApiError(404, "NotFoundError", f"no record {record_id!r} in {name}")
            embedding = (got.get("embeddings") or [None])[0]
            found = await visit.api.query(
                tenant,
                database,
                cid,
                {
                    "query_embeddings": [embedding],
                    "n_results": n,
                    "include": ["documents", "metadatas", "distances"],
                },
            )
        except ApiError as error:
            return self.console.failed(visit, error, f"Similar to {record_id}")
        neighbours = _rows({k: (v or [[]])[0] for k, v in found.items() if isinstance(v, list)})
        return self.console.render(
            "similar.html",
            visit=visit,
            title=f"Similar to {record_id}",
            tenant=tenant,
            database=database,
            name=name,
            record=rows[0],
            neighbours=neighbours,
            n=n,
        )


def _rows(got: dict[str, Any]) -> list[dict[str, Any]]:
    """Chroma's column answer (ids, documents, metadatas, ...) as one row per record."""
    ids = got.get("ids") or []

    def column(name: str) -> list[Any]:
        values = got.get(name)
        return list(values) if isinstance(values, list) else [None] * len(ids)

    documents, metadatas = column("documents"), column("metadatas")
    embeddings, distances = column("embeddings"), column("distances")
    return [
        {
            "id": record_id,
            "document": documents[i] if i < len(documents) else None,
            "metadata": as_json(metadatas[i] if i < len(metadatas) else None),
            "embedding": preview(embeddings[i] if i < len(embeddings) else None),
            "distance": distances[i] if i < len(distances) else None,
        }
        for i, record_id in enumerate(ids)
    ]
