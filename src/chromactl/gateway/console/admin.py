"""The console's admin pages: backups (snapshots, points in time, runs, copies, drills),
operations (write holds, limits, high availability) and the audit log.

They read the agent API (``chromactl.agentapi.contract``) through the gateway, which serves it
to admins over every tenant and database only: anyone else gets the API's 403 here too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from chromactl.agentapi import contract
from chromactl.gateway.console.api import ApiError
from chromactl.ha import contract as ha_contract

if TYPE_CHECKING:
    from chromactl.gateway.console.app import Console, Visit

#: The audit page's filters (``chromactl.gateway.admin_api``) and the lines it shows.
AUDIT_FILTERS = ("principal", "operation", "outcome", "tenant", "class")
AUDIT_LINES = 100


def when(seconds: float | None) -> str:
    """Unix seconds as UTC text."""
    if seconds is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


class AdminPages:
    def __init__(self, console: Console) -> None:
        self.console = console

    async def _read(self, visit: Visit, path: str, query: dict[str, str] | None = None) -> Any:
        """One agent API read; None where this pod does not serve it (404)."""
        try:
            return await visit.api.get(path, query)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def backups(self, request: Request, visit: Visit) -> Response:
        try:
            snapshots = await self._read(visit, contract.SNAPSHOTS)
            runs = await self._read(visit, contract.BACKUPS)
            drills = await self._read(visit, contract.DRILLS)
        except ApiError as error:
            return self.console.failed(visit, error, "Backups")
        copies = [
            {"backup_id": run["backup_id"], **copy}
            for run in (runs or {}).get("backups", [])
            for copy in run.get("copies") or []
        ]
        return self.console.render(
            "backups.html",
            visit=visit,
            title="Backups",
            snapshots=snapshots,
            runs=(runs or {}).get("backups", []),
            drills=sorted((drills or {}).get("drills", []), key=lambda d: -float(d.get("finished_at") or 0)),
            copies=copies,
            when=when,
            size=size,
        )

    async def operations(self, request: Request, visit: Visit) -> Response:
        try:
            holds = await self._read(visit, contract.HOLDS)
            limits = await self._read(visit, contract.LIMITS)
            ha = await self._read(visit, ha_contract.STATUS)
        except ApiError as error:
            return self.console.failed(visit, error, "Operations")
        pods: list[dict[str, Any]] = []
        if ha:
            primary = ha.get("primary") or (ha if ha.get("role") == "primary" else None)
            seen = set()
            for status in (primary, ha):
                if status and status["pod"] not in seen:
                    seen.add(status["pod"])
                    pods.append(status)
            for standby in (primary or {}).get("standbys", []):
                if standby["pod"] not in seen:
                    seen.add(standby["pod"])
                    pods.append({"pod": standby["pod"], "role": "standby", **standby})
        return self.console.render(
            "operations.html", visit=visit, title="Operations", holds=holds, limits=limits, ha=ha, pods=pods
        )

    async def audit(self, request: Request, visit: Visit) -> Response:
        filters = {k: request.query_params.get(k, "").strip() for k in AUDIT_FILTERS}
        query = {k: v for k, v in filters.items() if v} | {"limit": str(AUDIT_LINES)}
        try:
            listing = await self._read(visit, contract.AUDIT, query)
        except ApiError as error:
            return self.console.failed(visit, error, "Audit log")
        return self.console.render(
            "audit.html",
            visit=visit,
            title="Audit log",
            listing=listing or {"source": "", "lines": []},
            filters=filters,
        )
