"""Write-hold: the in-process WriteGate and the agent API that backups call."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from chromactl.gateway.hold_gate import DrainTimeout, WriteGate, WritesHeld
from tests.gateway.conftest import ADMIN_TOKEN, READER_TOKEN, WRITER_TOKEN
from tests.gateway.helpers import RunningGateway, wait_until


def is_held(gate: WriteGate) -> bool:
    """A hold is on (the gate's holds, as the agent API lists them)."""
    return bool(gate.holds())


def test_hold_waits_for_writes_in_flight_and_stops_new_ones() -> None:
    async def main() -> list[str]:
        gate = WriteGate()
        events: list[str] = []
        finish = asyncio.Event()

        async def slow_write() -> None:
            async with gate.write(wait_s=5):
                events.append("write1 started")
                await finish.wait()
                events.append("write1 done")

        async def later_write() -> None:
            async with gate.write(wait_s=5):
                events.append("write2 ran")

        w1 = asyncio.create_task(slow_write())
        await asyncio.sleep(0)
        hold_task = asyncio.create_task(gate.hold(timeout_s=5))
        await asyncio.sleep(0)
        w2 = asyncio.create_task(later_write())
        await asyncio.sleep(0.01)
        assert not hold_task.done()  # write1 is still in flight
        assert gate.in_flight == 1
        finish.set()
        hold = await hold_task
        events.append("held")
        await asyncio.sleep(0.01)
        assert "write2 ran" not in events
        assert gate.release(hold.hold_id)
        await asyncio.gather(w1, w2)
        return events

    assert asyncio.run(main()) == ["write1 started", "write1 done", "held", "write2 ran"]


def test_a_write_gives_up_after_its_wait() -> None:
    async def main() -> None:
        gate = WriteGate()
        await gate.hold(timeout_s=5)
        with pytest.raises(WritesHeld):
            async with gate.write(wait_s=0.05):
                pass

    asyncio.run(main())


def test_holds_end_by_themselves() -> None:
    async def main() -> None:
        gate = WriteGate()
        hold = await gate.hold(timeout_s=0.05)
        assert is_held(gate)
        async with gate.write(wait_s=5):  # waits for the automatic release
            pass
        assert not is_held(gate)
        assert not gate.release(hold.hold_id)

    asyncio.run(main())


def test_several_holds_all_must_end() -> None:
    async def main() -> None:
        gate = WriteGate()
        a = await gate.hold(timeout_s=5)
        b = await gate.hold(timeout_s=5)
        gate.release(a.hold_id)
        assert is_held(gate)
        gate.release(b.hold_id)
        assert not is_held(gate)

    asyncio.run(main())


def test_drain_timeout_gives_the_hold_back() -> None:
    async def main() -> None:
        gate = WriteGate()
        stuck = asyncio.Event()

        async def stuck_write() -> None:
            async with gate.write(wait_s=5):
                await stuck.wait()

        task = asyncio.create_task(stuck_write())
        await asyncio.sleep(0)
        with pytest.raises(DrainTimeout):
            await gate.hold(timeout_s=5, drain_timeout_s=0.05)
        assert not is_held(gate)
        stuck.set()
        await task

    asyncio.run(main())


def test_a_quiet_hold_closes_between_writes_and_lets_writes_run_until_then() -> None:
    """A single writer, one write after another with a short pause between: the quiet hold
    waits for the pause, so no write waits for another; the writes before it are not held."""

    async def main() -> tuple[float, list[str]]:
        gate = WriteGate()
        log: list[str] = []
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                async with gate.write(wait_s=5):
                    log.append(f"write {n}")
                    await asyncio.sleep(0.03)
                n += 1
                await asyncio.sleep(0.005)  # the client's pause between two writes

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.01)  # a write is in flight now
        assert gate.in_flight == 1
        hold = await gate.hold(timeout_s=5, quiet_s=1.0)
        assert gate.in_flight == 0
        log.append("held")
        await asyncio.sleep(0.05)
        gate.release(hold.hold_id)
        await asyncio.sleep(0.05)
        stop.set()
        await task
        return hold.waited_s, log

    waited, log = asyncio.run(main())
    assert waited < 0.005  # closed in a pause: nothing to drain
    held = log.index("held")
    assert held >= 1 and log[held + 1 :]  # writes ran before the hold and after its release


def test_a_quiet_hold_without_a_pause_closes_after_quiet_s_and_drains() -> None:
    async def main() -> tuple[bool, float]:
        gate = WriteGate()
        finish = asyncio.Event()
        held_when_the_write_ended: list[bool] = []

        async def long_write() -> None:
            async with gate.write(wait_s=5):
                await finish.wait()
                held_when_the_write_ended.append(is_held(gate))

        task = asyncio.create_task(long_write())
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_later(0.5, finish.set)
        hold = await gate.hold(timeout_s=5, quiet_s=0.05)
        await task
        return held_when_the_write_ended[0], hold.waited_s

    held, waited = asyncio.run(main())
    assert held  # no quiet moment came: the gate closed after quiet_s, with the write in flight
    assert waited > 0  # and the hold waited for it to finish


def test_held_context_manager_releases() -> None:
    async def main() -> None:
        gate = WriteGate()
        async with gate.held(timeout_s=5) as hold:
            assert is_held(gate) and hold.waited_s >= 0
        assert not is_held(gate)

    asyncio.run(main())


# --- agent API, end to end ----------------------------------------------------------

D = "/api/v2/tenants/default_tenant/databases/default_database"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.mark.slow
def test_agent_api_is_admin_only(token_gateway: RunningGateway) -> None:
    for token in (READER_TOKEN, WRITER_TOKEN):
        resp = httpx.post(
            f"{token_gateway.url}/chromactl/v1/hold",
            json={"timeout_s": 5},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status_code == 403
    assert httpx.post(f"{token_gateway.url}/chromactl/v1/hold", json={"timeout_s": 5}).status_code == 401
    assert not is_held(token_gateway.gateway.gate)


@pytest.mark.slow
def test_hold_over_http_blocks_writes_not_reads(token_gateway: RunningGateway) -> None:
    with token_gateway.client(**ADMIN) as c:
        col = c.post(f"{D}/collections", json={"name": "held", "get_or_create": True}).json()
        add = f"{D}/collections/{col['id']}/add"
        resp = c.post("/chromactl/v1/hold", json={"timeout_s": 30})
        assert resp.status_code == 200
        body = resp.json()
        assert set(body) == {"hold_id", "waited_s"}
        assert c.get("/chromactl/v1/hold").json()["holds"][0]["hold_id"] == body["hold_id"]

        result: dict[str, int] = {}

        def writer() -> None:
            with token_gateway.client(**ADMIN) as w:
                result["status"] = w.post(add, json={"ids": ["h1"], "embeddings": [[1.0, 1.0]]}).status_code

        thread = threading.Thread(target=writer)
        thread.start()
        wait_until(lambda: token_gateway.gateway.metrics.in_flight._value.get() >= 1, 10, "the write")
        # Reads go on during the hold; the write is still waiting.
        assert c.get(f"{D}/collections/{col['id']}/count").json() == 0
        assert "status" not in result
        assert c.delete(f"/chromactl/v1/hold/{body['hold_id']}").json() == {"released": True}
        thread.join(20)
        assert result["status"] == 201
        assert c.get(f"{D}/collections/{col['id']}/count").json() == 1
        assert c.delete(f"/chromactl/v1/hold/{body['hold_id']}").status_code == 404


@pytest.mark.slow
def test_held_write_gets_503_after_its_wait(chroma, secrets_dir) -> None:  # type: ignore[no-untyped-def]
    from tests.gateway.conftest import token_config
    from tests.gateway.helpers import run_gateway

    with run_gateway(token_config(chroma, secrets_dir, write_wait_s=0.2)) as gw, gw.client(**ADMIN) as c:
        hold = c.post("/chromactl/v1/hold", json={"timeout_s": 30}).json()
        resp = c.post(f"{D}/collections", json={"name": "never", "get_or_create": True})
        assert resp.status_code == 503
        assert resp.headers["retry-after"] == "1"
        assert resp.json()["error"] == "ServiceUnavailable"
        c.delete(f"/chromactl/v1/hold/{hold['hold_id']}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "body",
    [
        {},
        {"timeout_s": 0},
        {"timeout_s": 10_000},
        {"timeout_s": "x"},
        {"timeout_s": 5, "quiet_s": -1},
        {"timeout_s": 5, "quiet_s": 60},
    ],
)
def test_bad_hold_requests(token_gateway: RunningGateway, body: dict[str, object]) -> None:
    resp = httpx.post(f"{token_gateway.url}/chromactl/v1/hold", json=body, headers=ADMIN)
    assert resp.status_code == 400
    assert resp.json()["error"] == "InvalidArgumentError"
    assert not is_held(token_gateway.gateway.gate)
