"""Continuous backup in the pod: the gateway's journal and the shipper that sends it on.

Each gateway process writes its own spool file in the journal directory
(``backup.continuous.journal_dir``, else a temporary directory of the pod's process); the
shipper (:mod:`chromactl.backup.continuous.shipper`) runs in the process that runs the backup service,
and asks it for the base snapshots.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from chromactl.backup.continuous.shipper import Shipper
from chromactl.backup.continuous.timeline import Timeline
from chromactl.backup.metrics import JournalMetrics
from chromactl.backup.operations.service import BackupService
from chromactl.backup.repository.repository import repository_of
from chromactl.chromadata import SQLITE_NAME
from chromactl.config import Settings
from chromactl.errors import ChromactlError
from chromactl.gateway.journal_writer import Journal, Replication
from chromactl.journal import Spool


def enabled(settings: Settings) -> bool:
    backup = settings.backup
    if backup.continuous.enabled and not backup.target:
        raise ChromactlError(
            "backup.continuous.enabled needs backup.target: the journal is shipped beside the "
            "snapshots (chart: backup.target)",
            exit_code=2,
        )
    return backup.continuous.enabled


def with_journal_dir(settings: Settings, default: Path | None = None) -> Settings:
    """``settings`` with ``backup.continuous.journal_dir`` set (every gateway process of the
    pod must write to the same one)."""
    if settings.backup.continuous.journal_dir is not None:
        return settings
    directory = default or Path(tempfile.mkdtemp(prefix="chromactl-journal-"))
    continuous = settings.backup.continuous.model_copy(update={"journal_dir": directory})
    backup = settings.backup.model_copy(update={"continuous": continuous})
    return settings.model_copy(update={"backup": backup})


def journal(settings: Settings, origin: str, replication: Replication | None = None) -> Journal:
    """The journal a gateway process writes (``origin`` names its spool file); with high
    availability its entries go to ``replication`` too."""
    directory = settings.backup.continuous.journal_dir
    assert directory is not None, "with_journal_dir() first"
    return Journal(directory, origin, settings.chroma.persist_path / SQLITE_NAME, replication=replication)


def break_journal(settings: Settings, reason: str) -> None:
    """Record a break (a gateway process died: its last writes may be missing)."""
    directory = settings.backup.continuous.journal_dir
    assert directory is not None
    spool = Spool(directory, "pod")
    try:
        spool.append(time.time(), "break", reason=reason)
    finally:
        spool.close()


def shipper(
    settings: Settings, backups: BackupService, registry: CollectorRegistry, loop: asyncio.AbstractEventLoop
) -> Shipper:
    """The shipper of the pod's journal; base snapshots come from ``backups``."""
    cont = settings.backup.continuous
    assert cont.journal_dir is not None

    def request_base() -> None:
        backups.start(loop)

    return Shipper(
        cont.journal_dir,
        Timeline(repository_of(settings.backup)),
        JournalMetrics(registry, cont.max_lag_s),
        request_base=request_base,
        last_cut=backups.last_cut_at,
        interval_s=cont.ship_interval_s,
        heartbeat_s=cont.max_lag_s,
    )
