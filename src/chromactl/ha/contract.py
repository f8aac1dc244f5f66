"""The high-availability routes of the agent API: the one place their paths and payloads are written.

Served by every pod's gateway to admins (the pods present the ``ha-replication`` credential)::

    GET  /chromactl/v1/ha/status                        -> Status (any pod; a standby adds the
                                                           primary's under "primary")
    GET  /chromactl/v1/ha/stream?after=I&term=T&pod=P   -> the replication stream (primary only)
    POST /chromactl/v1/ha/ack        Ack                -> {} (a standby's position)
    GET  /chromactl/v1/ha/base                          -> a tar of a consistent copy (primary only)
    POST /chromactl/v1/ha/switchover {"to": P | null}   -> Switchover (primary only)

The stream is a chunked body of lines: a heartbeat ``{"hb": 1, "last": N}`` at least every
:data:`HEARTBEAT_S`, or a record of the replication log
(:class:`chromactl.ha.replication_log.Record`: its index line, then the journal entry).
The stream and the base copy carry the primary's term history in :data:`HISTORY_HEADER`
(JSON ``[[term, first index], ...]``), and the base copy its index in :data:`INDEX_HEADER`.
A stream a standby cannot follow is refused with 409 and ``error``: ``Diverged`` (the
standby holds writes the primary lacks), ``TooFarBehind`` (the primary no longer keeps them)
or ``NeedsBase`` (the standby starts empty but the primary's data predates its log).
"""

from __future__ import annotations

from typing import Literal, TypedDict

from chromactl.agentapi.contract import PREFIX

HA = f"{PREFIX}/ha"
STATUS = f"{HA}/status"
STREAM = f"{HA}/stream"
ACK = f"{HA}/ack"
BASE = f"{HA}/base"
SWITCHOVER = f"{HA}/switchover"
HISTORY_HEADER = "x-chromactl-ha-history"
INDEX_HEADER = "x-chromactl-ha-index"
ORIGIN_HEADER = "x-chromactl-ha-origin"
#: On the stream: "1" when the primary waits for a standby's ack before it answers a write.
SYNCHRONOUS_HEADER = "x-chromactl-ha-synchronous"
HEARTBEAT_S = 1.0
#: The label a pod sets on itself, which the Services select.
ROLE_LABEL = "chromactl.io/role"

RoleName = Literal["primary", "standby", "lagging"]
Refusal = Literal["Diverged", "TooFarBehind", "NeedsBase", "NotPrimary"]


class Ack(TypedDict):
    pod: str
    applied: int
    lag_s: float


class StandbyStatus(TypedDict):
    pod: str
    applied: int
    lag_entries: int
    lag_s: float
    seen_s_ago: float
    in_sync: bool


class Status(TypedDict):
    pod: str
    role: RoleName
    holder: str | None
    term: str
    last_index: int
    applied: int
    lag_entries: int
    lag_s: float
    synchronous: bool
    failovers: int
    standbys: list[StandbyStatus]


class Switchover(TypedDict):
    previous: str
    primary: str
    held_s: float
