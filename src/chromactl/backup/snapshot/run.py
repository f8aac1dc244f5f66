"""Taking one snapshot as configured: the write hold it needs, and the run itself."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from chromactl.agentapi import ClientTLS
from chromactl.backup.progress import Progress
from chromactl.backup.repository.repository import repository_of
from chromactl.backup.snapshot.create import BackupResult, create_snapshot
from chromactl.backup.snapshot.hold import GatewayHold, NoHold, WriteHold
from chromactl.config import BackupSettings, Settings
from chromactl.errors import ChromactlError
from chromactl.secrets import read_secret
from chromactl.storage import redact_url

log = logging.getLogger("chromactl.backup")


def gateway_tls(settings: BackupSettings) -> ClientTLS:
    """How to verify the gateway (``backup.gateway_ca_file``) and what to present to it."""
    cert, key = settings.gateway_cert_file, settings.gateway_key_file
    if (cert is None) != (key is None):
        raise ChromactlError(
            "backup.gateway_cert_file and backup.gateway_key_file go together "
            "(--client-cert and --client-key)",
            exit_code=2,
        )
    return ClientTLS(settings.gateway_ca_file, (cert, key) if cert and key else None)


def hold_from_settings(settings: Settings, *, offline: bool = False) -> WriteHold:
    """``NoHold`` for a stopped data directory, otherwise the gateway's hold."""
    if offline:
        return NoHold()
    backup = settings.backup
    if not backup.gateway_url:
        raise ChromactlError(
            "an online snapshot needs the gateway to hold writes: set backup.gateway_url "
            "(or --gateway), or use --offline for a stopped data directory",
            exit_code=2,
        )
    return GatewayHold(
        backup.gateway_url,
        read_secret(backup.token_file, backup.token_env, what="the gateway admin token", optional=True),
        timeout_s=backup.hold_timeout_s,
        tls=gateway_tls(backup),
    )


def run_backup(
    settings: Settings,
    hold: WriteHold,
    *,
    target: str | None = None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> BackupResult:
    """Take one snapshot as configured; never raises for a failed backup.

    The result carries ``outcome`` (``success``/``failure``), ``duration_s``,
    ``bytes``, ``stored_bytes``, ``hold_s`` and ``error`` for metrics.
    """
    start = time.perf_counter()
    url = target or settings.backup.target
    try:
        repo = repository_of(settings.backup, url=url)
        return create_snapshot(
            data_dir or settings.chroma.persist_path,
            repo,
            hold,
            chroma_version=settings.chroma.version,
            level=settings.backup.compression_level,
            staging_dir=settings.backup.staging_dir,
            progress=progress,
        )
    except Exception as exc:
        log.error("backup failed: %s", exc)
        return BackupResult(
            outcome="failure",
            target=redact_url(url),
            duration_s=time.perf_counter() - start,
            error=str(exc),
        )
