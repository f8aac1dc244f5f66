"""The agent API's hold routes, served by the gateway over its hold gate (:mod:`.hold_gate`).

Paths and payloads: :mod:`chromactl.agentapi.contract`. Routes others add (the pod's
backup service) are served beside these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, Router

from chromactl.agentapi import contract
from chromactl.agentapi.contract import HoldGrant, HoldListing
from chromactl.gateway.hold_gate import DrainTimeout, HoldGate


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def agent_app(gate: HoldGate, max_hold_s: float, extra: Sequence[BaseRoute] = ()) -> Router:
    """The agent API as an ASGI app; ``extra`` routes (e.g. backups) are served beside it."""

    async def create_hold(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            timeout_s = float(body["timeout_s"])
            drain = body.get("drain_timeout_s")
            drain_s = float(drain) if drain is not None else None
            quiet_s = float(body.get("quiet_s", 0.0))
        except (ValueError, KeyError, TypeError):
            return _error(400, "InvalidArgumentError", 'expected {"timeout_s": <seconds>}')
        if not 0 < timeout_s <= max_hold_s:
            return _error(400, "InvalidArgumentError", f"timeout_s must be in (0, {max_hold_s:g}]")
        if not 0 <= quiet_s <= contract.MAX_QUIET_S:
            return _error(400, "InvalidArgumentError", f"quiet_s must be in [0, {contract.MAX_QUIET_S:g}]")
        try:
            hold = await gate.hold(timeout_s, drain_s, quiet_s)
        except DrainTimeout as exc:
            return _error(503, "ServiceUnavailable", str(exc))
        grant: HoldGrant = {"hold_id": hold.hold_id, "waited_s": round(hold.waited_s, 6)}
        return JSONResponse(grant)

    async def release_hold(request: Request) -> JSONResponse:
        hold_id = request.path_params["hold_id"]
        if not gate.release(hold_id):
            return _error(404, "NotFoundError", f"hold {hold_id} does not exist or has ended")
        return JSONResponse({"released": True})

    async def list_holds(request: Request) -> JSONResponse:
        now = asyncio.get_running_loop().time()
        listing: HoldListing = {
            "holds": [
                {"hold_id": h.hold_id, "expires_in_s": round(h.expires_at - now, 3)} for h in gate.holds()
            ],
            "writes_in_flight": await gate.writes_in_flight(),
        }
        return JSONResponse(listing)

    routes: list[BaseRoute] = [
        Route(contract.HOLDS, create_hold, methods=["POST"]),
        Route(contract.HOLDS, list_holds, methods=["GET"]),
        Route(contract.hold_path("{hold_id}"), release_hold, methods=["DELETE"]),
        *extra,
    ]
    return Router(routes=routes)
