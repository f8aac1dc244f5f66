"""The high-availability routes of the agent API (paths and payloads: :mod:`.contract`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from chromactl.errors import ChromactlError
from chromactl.gateway.hold_gate import DrainTimeout, HoldGate

from . import base, contract
from .node import Node
from .replication_log import Heartbeat

log = logging.getLogger("chromactl.ha.routes")

#: Records sent per read of the log before the stream yields.
BATCH = 256
#: Longest hold of writes while a base copy is made.
BASE_HOLD_S = 120.0
SWITCHOVER_HOLD_S = 30.0


def _error(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


def _not_primary(node: Node) -> JSONResponse:
    return _error(503, "NotPrimary", node.refusal())


def ha_routes(node: Node, gate: HoldGate) -> list[BaseRoute]:
    async def status(request: Request) -> JSONResponse:
        """This pod's status; a standby adds the primary's as it answers (``primary``), so one
        call to any pod shows the whole cluster."""
        mine: dict[str, object] = dict(node.status())
        holder = node.elector.holder
        if node.role != "primary" and holder and holder != node.pod and "local" not in request.query_params:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                answer = await node.client.get(
                    node.peer_url(holder) + contract.STATUS, params={"local": "1"}, timeout=3.0
                )
                if answer.status_code == 200:
                    mine["primary"] = answer.json()
        return JSONResponse(mine)

    async def ack(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            found: contract.Ack = {
                "pod": str(body["pod"]),
                "applied": int(body["applied"]),
                "lag_s": float(body.get("lag_s", 0.0)),
            }
        except (ValueError, KeyError, TypeError):
            return _error(400, "InvalidArgumentError", 'expected {"pod": ..., "applied": <index>}')
        await node.acked(found)
        return JSONResponse({})

    def refused(after: int, term: str) -> JSONResponse | None:
        replog, state = node.log, node.state
        if after > replog.last_index or (after > 0 and state.term_at(after) != term):
            return _error(
                409,
                "Diverged",
                f"the standby holds index {after} of term {term!r}, which the primary "
                f"(last index {replog.last_index}) does not have",
            )
        if after < replog.first_index - 1:
            return _error(
                409,
                "TooFarBehind",
                f"the primary keeps records from index {replog.first_index} on, not {after + 1}",
            )
        if after == 0 and state.origin != "empty":
            return _error(409, "NeedsBase", "the primary's data predates its log: a base copy is needed")
        return None

    async def stream(request: Request) -> Response:
        if not node.accepts_writes():
            return _not_primary(node)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return _error(400, "InvalidArgumentError", "after is an index")
        problem = refused(after, request.query_params.get("term", ""))
        if problem is not None:
            return problem
        pod = request.query_params.get("pod", "?")

        async def records() -> AsyncIterator[bytes]:
            position = after
            heartbeat = 0.0
            while node.role == "primary" and not node.shutting_down():
                node.streaming(pod, position)
                last, data = node.log.read_encoded(position, BATCH)
                if data:
                    position = last
                    yield data
                    continue
                if time.monotonic() - heartbeat >= contract.HEARTBEAT_S / 2:
                    heartbeat = time.monotonic()
                    yield Heartbeat(node.log.last_index).encode()
                await node.log.wait_beyond(position, contract.HEARTBEAT_S / 2)
            log.info("stream to %s ends: this pod is no longer the primary, or stops", pod)

        headers = {
            contract.HISTORY_HEADER: json.dumps(node.state.history),
            contract.ORIGIN_HEADER: node.state.origin,
            contract.SYNCHRONOUS_HEADER: "1" if node.ha.synchronous else "0",
        }
        return StreamingResponse(records(), media_type="application/octet-stream", headers=headers)

    async def base_copy(request: Request) -> Response:
        if not node.accepts_writes():
            return _not_primary(node)
        work = node.state_file.path.parent
        tmp = tempfile.mkdtemp(prefix="base-", dir=work)
        copy = work / tmp / "copy"
        tar = work / tmp / "base.tar"
        try:
            hold = await gate.hold(BASE_HOLD_S, BASE_HOLD_S)
        except DrainTimeout as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            return _error(503, "ServiceUnavailable", f"could not hold writes for a base copy: {exc}")
        try:
            index = node.log.last_index
            await asyncio.to_thread(base.copy_consistent, node.settings.chroma.persist_path, copy)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            gate.release(hold.hold_id)
        await asyncio.to_thread(base.pack, copy, tar)
        headers = {
            contract.INDEX_HEADER: str(index),
            contract.HISTORY_HEADER: json.dumps(node.state.history),
            contract.ORIGIN_HEADER: node.state.origin or "data",
        }
        log.info("base copy at index %d for %s", index, request.query_params.get("pod", "?"))
        return FileResponse(
            tar, headers=headers, background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
        )

    async def switchover(request: Request) -> JSONResponse:
        if not node.accepts_writes():
            return _not_primary(node)
        body = None
        with contextlib.suppress(ValueError):
            body = await request.json()
        to = (body or {}).get("to") if isinstance(body, dict) else None
        candidates = [s for s in node.standby_status() if s["in_sync"]]
        if to is None:
            if not candidates:
                return _error(409, "NoStandby", "no standby is in sync: nothing to switch over to")
            to = max(candidates, key=lambda s: s["applied"])["pod"]
        elif to == node.pod:
            return _error(409, "AlreadyPrimary", f"{to} is the primary already")
        elif to not in node.standbys:
            known = ", ".join(node.standbys) or "none"
            return _error(404, "NotFoundError", f"{to} is not a standby of this primary (standbys: {known})")
        started = time.monotonic()
        try:
            hold = await gate.hold(SWITCHOVER_HOLD_S, SWITCHOVER_HOLD_S)
        except DrainTimeout as exc:
            return _error(503, "ServiceUnavailable", f"could not hold writes: {exc}")
        try:
            await node.hand_over(str(to))
        except ChromactlError as exc:
            return _error(409, "SwitchoverFailed", str(exc))
        finally:
            gate.release(hold.hold_id)
        done: contract.Switchover = {
            "previous": node.pod,
            "primary": str(to),
            "held_s": round(time.monotonic() - started, 3),
        }
        log.warning("switchover: %s hands the primary to %s", node.pod, to)
        return JSONResponse(done)

    return [
        Route(contract.STATUS, status, methods=["GET"]),
        Route(contract.STREAM, stream, methods=["GET"]),
        Route(contract.ACK, ack, methods=["POST"]),
        Route(contract.BASE, base_copy, methods=["GET"]),
        Route(contract.SWITCHOVER, switchover, methods=["POST"]),
    ]
