"""The agent API's paths and payloads: the one place they are written down.

The gateway in Chroma's pod serves this API under :data:`PREFIX` to admins only (the
route table classifies every path under it as an admin operation). Its callers are the
backup CronJob (``chromactl backup trigger``) and ``chromactl backup create`` taking an
online snapshot from outside the pod.

Write holds::

    POST   /chromactl/v1/hold            HoldRequest  -> HoldGrant
    DELETE /chromactl/v1/hold/{hold_id}                -> {"released": true} (404: ended)
    GET    /chromactl/v1/hold                          -> HoldListing

Backups taken inside the pod::

    POST   /chromactl/v1/backups         BackupRequest -> 202 BackupStatus (409: one runs)
    GET    /chromactl/v1/backups/{id}                  -> BackupStatus (404: unknown)
    GET    /chromactl/v1/backups                       -> BackupListing

Errors are Chroma-shaped: :class:`ErrorBody`, with extra keys where said (a 409 names the
running ``backup_id``).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

PREFIX = "/chromactl/v1"
HOLDS = f"{PREFIX}/hold"
#: The longest a hold request may wait for a quiet moment (``quiet_s``).
MAX_QUIET_S = 10.0
BACKUPS = f"{PREFIX}/backups"
#: Restore drills report here (``POST``, a :class:`DrillResult`); ``GET``: the last ones.
DRILLS = f"{PREFIX}/drills"


def hold_path(hold_id: str) -> str:
    return f"{HOLDS}/{hold_id}"


def backup_path(backup_id: str) -> str:
    return f"{BACKUPS}/{backup_id}"


class DrillResult(TypedDict):
    """What a restore drill found (``chromactl.backup.drill.DrillReport.to_dict()``)."""

    snapshot_id: str
    outcome: Literal["success", "failure"]
    collections: int
    records: int
    sampled: int
    problems: list[str]
    duration_s: float
    finished_at: float


class ErrorBody(TypedDict):
    error: str
    message: str


class HoldRequest(TypedDict):
    #: The hold ends by itself after this many seconds (at most ``gateway.max_hold_s``).
    timeout_s: float
    #: How long to wait for writes in flight to finish (default: ``timeout_s``).
    drain_timeout_s: NotRequired[float]
    #: Before closing, wait up to this long for a moment with no write in flight (writes go
    #: on meanwhile), so that the hold does not wait for one; at most :data:`MAX_QUIET_S`.
    quiet_s: NotRequired[float]


class HoldGrant(TypedDict):
    hold_id: str
    #: Seconds spent waiting for writes in flight to finish.
    waited_s: float


class HoldInfo(TypedDict):
    hold_id: str
    expires_in_s: float


class HoldListing(TypedDict):
    holds: list[HoldInfo]
    writes_in_flight: int


class BackupRequest(TypedDict, total=False):
    #: After a successful snapshot, apply the retention of the pod's config.
    prune: bool


BackupState = Literal["running", "succeeded", "failed"]


class BackupStatus(TypedDict):
    backup_id: str
    state: BackupState
    started_at: str | None
    finished_at: str | None
    prune: bool
    #: The snapshot's result (``BackupResult.to_dict()``) once the snapshot ended.
    result: dict[str, Any] | None
    prune_result: dict[str, Any] | None
    #: Each off-site copy of the run (``CopyResult.to_dict()``): a failed copy does not fail
    #: the backup, it says so here and in its metrics.
    copies: list[dict[str, Any]]
    error: str | None


class BackupListing(TypedDict):
    running: str | None
    #: Newest first.
    backups: list[BackupStatus]
