"""The backup commands, one module each: ``chromactl backup ...``, ``restore``, ``export``,
``import`` and ``migrate snapshot``.

Flags mean one thing everywhere: ``--repo`` a snapshot repository, ``--data-dir`` a Chroma data
directory, ``--dest`` where a copy or an export is written and ``--source`` where an import reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from chromactl.backup.cli.cmd_copy import copy_cmd
from chromactl.backup.cli.cmd_create import create_cmd
from chromactl.backup.cli.cmd_delete import delete_cmd
from chromactl.backup.cli.cmd_drill import drill_cmd
from chromactl.backup.cli.cmd_export import export_cmd
from chromactl.backup.cli.cmd_import import import_cmd
from chromactl.backup.cli.cmd_list import list_cmd
from chromactl.backup.cli.cmd_migrate import migrate_snapshot_cmd
from chromactl.backup.cli.cmd_prune import prune_cmd
from chromactl.backup.cli.cmd_rekey import rekey_cmd
from chromactl.backup.cli.cmd_restore import restore_cmd
from chromactl.backup.cli.cmd_trigger import trigger_cmd
from chromactl.backup.cli.cmd_verify import verify_cmd

#: ``chromactl backup <name>``, in the order ``--help`` lists them.
BACKUP_COMMANDS: dict[str, Callable[..., Any]] = {
    "create": create_cmd,
    "list": list_cmd,
    "verify": verify_cmd,
    "drill": drill_cmd,
    "copy": copy_cmd,
    "prune": prune_cmd,
    "delete": delete_cmd,
    "rekey": rekey_cmd,
    "trigger": trigger_cmd,
}
#: ``chromactl <name>``.
TOP_COMMANDS: dict[str, Callable[..., Any]] = {
    "restore": restore_cmd,
    "export": export_cmd,
    "import": import_cmd,
}


def register(app: typer.Typer) -> None:
    """Add the backup commands to the main CLI."""
    backup_app = typer.Typer(
        help="Consistent snapshots of Chroma's data directory: create, list, verify, prune.",
        no_args_is_help=True,
    )
    for name, command in BACKUP_COMMANDS.items():
        backup_app.command(name)(command)
    app.add_typer(backup_app, name="backup")
    for name, command in TOP_COMMANDS.items():
        app.command(name)(command)
    migrate_app = typer.Typer(
        help="Moving a data directory from Chroma 0.x to 1.x: a snapshot before the first 1.x start.",
        no_args_is_help=True,
    )
    migrate_app.command("snapshot")(migrate_snapshot_cmd)
    app.add_typer(migrate_app, name="migrate")
