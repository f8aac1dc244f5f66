"""``chromactl migrate snapshot``: a snapshot of Chroma 0.x data before 1.x converts it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    QuietOpt,
    RepoAliasOpt,
    RepoOpt,
    console,
    emit,
    progress_of,
    repo_url,
    settings_of,
)
from chromactl.backup.snapshot.migrate import snapshot_before_upgrade


def migrate_snapshot_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Chroma data directory (default: chroma.persist_path).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Snapshot a directory Chroma 0.x wrote, once, before Chroma 1.x opens (and converts) it.

    Does nothing for an empty directory, one 1.x has opened, or one already snapshotted. The
    snapshot goes to --repo, else backup.target, else .chromactl-pre-1.x/ in the directory.
    """
    repo = repo_url(repo, repo_alias)
    settings = settings_of(config)
    result = snapshot_before_upgrade(
        settings, data_dir or settings.chroma.persist_path, repo=repo, progress=progress_of(as_json, quiet)
    )
    if as_json:
        emit(result.to_dict())
    elif result.outcome == "taken":
        console.print(
            f"Chroma 0.x data: snapshot [bold]{result.snapshot_id}[/] taken to {result.repository} "
            "before Chroma 1.x converts it"
        )
    elif result.outcome == "already-taken":
        console.print(
            f"Chroma 0.x data: snapshot {result.snapshot_id} in {result.repository} was taken "
            f"at {result.taken_at}; not taken again"
        )
    else:
        console.print(f"data directory: {result.generation}; no snapshot needed")
