"""The gateway's write gate (or the workers' gate) as the backup's write hold
(:class:`~chromactl.backup.snapshot.hold.WriteHold`).

A backup runs in a worker thread; the gate lives on the event loop that serves the
gateway, so holding and releasing go through that loop.
"""

from __future__ import annotations

import asyncio

from chromactl.backup.snapshot.hold import QUIET_S, CallbackHold, HoldError
from chromactl.gateway.hold_gate import DrainTimeout, Hold, HoldGate

#: Extra seconds a worker waits for the event loop beyond the hold timeout.
LOOP_GRACE_S = 30.0


def gate_hold(gate: HoldGate, loop: asyncio.AbstractEventLoop, timeout_s: float) -> CallbackHold:
    """A hold on ``gate`` for a worker thread; it ends by itself after ``timeout_s``."""

    def acquire(timeout: float) -> Hold:
        future = asyncio.run_coroutine_threadsafe(gate.hold(timeout, timeout, QUIET_S), loop)
        try:
            return future.result(QUIET_S + timeout + LOOP_GRACE_S)
        except DrainTimeout as exc:
            raise HoldError(f"could not hold writes: {exc} (backup.hold_timeout_s is {timeout:g}s)") from None

    def release(token: object) -> None:
        assert isinstance(token, Hold)

        async def end() -> bool:
            return gate.release(token.hold_id)

        if not asyncio.run_coroutine_threadsafe(end(), loop).result(LOOP_GRACE_S):
            raise HoldError(
                f"the write hold ended by itself after {timeout_s:g}s, before the consistent "
                "copy was done, so the copy may not be consistent: raise backup.hold_timeout_s "
                "(chart: backup.holdTimeoutSeconds)"
            )

    return CallbackHold(acquire, release, timeout_s=timeout_s)
