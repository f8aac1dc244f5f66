"""Backups of Chroma: consistent online snapshots, verified restores, logical export."""

from chromactl.backup.recovery.restore import RestoreResult, restore
from chromactl.backup.repository.manifest import FORMAT_VERSION, Manifest
from chromactl.backup.repository.repository import Repository
from chromactl.backup.snapshot.create import BackupResult, create_snapshot
from chromactl.backup.snapshot.hold import CallbackHold, GatewayHold, HoldError, NoHold, WriteHold
from chromactl.backup.snapshot.run import hold_from_settings, run_backup

__all__ = [
    "FORMAT_VERSION",
    "BackupResult",
    "CallbackHold",
    "GatewayHold",
    "HoldError",
    "Manifest",
    "NoHold",
    "Repository",
    "RestoreResult",
    "WriteHold",
    "create_snapshot",
    "hold_from_settings",
    "restore",
    "run_backup",
]
