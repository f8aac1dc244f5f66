"""The answer's head and body leave in one write; nothing is held past one loop turn."""

from __future__ import annotations

import asyncio

from chromactl.gateway.coalesce import CoalescingTransport


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


def _pair() -> tuple[CoalescingTransport, _Recorder]:
    rec = _Recorder()
    return CoalescingTransport(rec, asyncio.get_running_loop()), rec  # type: ignore[arg-type]


def test_head_and_body_in_one_turn_are_one_write() -> None:
    asyncio.run(_test_head_and_body_in_one_turn_are_one_write())


async def _test_head_and_body_in_one_turn_are_one_write() -> None:
    tr, rec = _pair()
    tr.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    tr.write(b"{}")
    assert rec.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await asyncio.sleep(0)
    assert len(rec.writes) == 1


def test_a_lone_write_goes_out_on_the_next_turn() -> None:
    asyncio.run(_test_a_lone_write_goes_out_on_the_next_turn())


async def _test_a_lone_write_goes_out_on_the_next_turn() -> None:
    tr, rec = _pair()
    tr.write(b"head")
    assert rec.writes == []
    await asyncio.sleep(0)
    assert rec.writes == [b"head"]
    # Streaming: later chunks are not merged into what has been sent.
    tr.write(b"chunk-1")
    await asyncio.sleep(0)
    assert rec.writes == [b"head", b"chunk-1"]


def test_close_sends_what_is_held_first() -> None:
    asyncio.run(_test_close_sends_what_is_held_first())


async def _test_close_sends_what_is_held_first() -> None:
    tr, rec = _pair()
    tr.write(memoryview(b"last words"))
    tr.close()
    assert rec.writes == [b"last words"] and rec.closed
    await asyncio.sleep(0)
    assert rec.writes == [b"last words"]


def test_other_attributes_reach_the_transport() -> None:
    asyncio.run(_test_other_attributes_reach_the_transport())


async def _test_other_attributes_reach_the_transport() -> None:
    tr, rec = _pair()
    assert tr.get_extra_info("peername") == "extra:peername"
    assert not tr.is_closing()
    rec.closed = True
    assert tr.is_closing()
