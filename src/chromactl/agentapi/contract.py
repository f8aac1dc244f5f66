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

What the web console's admin pages read (``GET`` only)::

    GET    /chromactl/v1/snapshots                     -> SnapshotListing
    GET    /chromactl/v1/audit?principal=&operation=&outcome=&limit=  -> AuditListing
    GET    /chromactl/v1/limits                        -> LimitsState

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
SNAPSHOTS = f"{PREFIX}/snapshots"
AUDIT = f"{PREFIX}/audit"
LIMITS = f"{PREFIX}/limits"


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


class SnapshotInfo(TypedDict):
    snapshot_id: str
    created_at: str
    #: The moment the snapshot's data is from (continuous backup restores from it onwards).
    cut_at: float | None
    bytes: int
    stored_bytes: int
    chunks: int
    records: int
    collections: int


class RestorableRange(TypedDict):
    #: Unix seconds: any second in [start, end] can be restored.
    start: float
    end: float


class SnapshotListing(TypedDict):
    #: No backup target configured: the rest is empty.
    configured: bool
    #: Newest first, complete snapshots only.
    snapshots: list[SnapshotInfo]
    #: Continuous backup's points in time (empty without it).
    restorable: list[RestorableRange]
    #: Seconds the journal's shipped end trails the writes (None: no continuous backup).
    journal_lag_s: float | None
    error: str | None


class AuditListing(TypedDict):
    #: Where the lines were read: the audit file(s), or this process's recent lines.
    source: str
    #: Newest first, as the audit log wrote them.
    lines: list[dict[str, Any]]


class LimitRefusals(TypedDict):
    scope: str
    name: str
    limit: str
    refused: int


class LimitsState(TypedDict):
    enabled: bool
    #: The rules in force, by credential and by tenant (``LimitRule`` fields set).
    credentials: dict[str, dict[str, Any]]
    tenants: dict[str, dict[str, Any]]
    #: Collections each tenant with a ``max_collections`` cap holds now.
    tenant_collections: dict[str, int]
    #: Refusals since the process started, by whose rule and which limit.
    refusals: list[LimitRefusals]
