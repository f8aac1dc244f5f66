"""Backups of Chroma: consistent online snapshots, verified restores, logical export."""

from .hold import CallbackHold, GatewayHold, HoldError, NoHold, WriteHold
from .manifest import FORMAT_VERSION, Manifest
from .restore import RestoreResult, restore
from .run import hold_from_settings, run_backup
from .snapshot import BackupResult, create_snapshot
from .store import Repository

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
