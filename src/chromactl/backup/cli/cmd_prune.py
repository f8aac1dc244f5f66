"""``chromactl backup prune``: apply retention."""

from __future__ import annotations

from typing import Annotated

import typer

from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    RepoAliasOpt,
    RepoOpt,
    console,
    emit,
    open_repo,
    repo_url,
    settings_of,
)
from chromactl.backup.operations.prune import prune


def prune_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    keep_last: Annotated[int | None, typer.Option(help="Keep the newest N.")] = None,
    keep_daily: Annotated[int | None, typer.Option(help="Keep one a day for N days.")] = None,
    keep_weekly: Annotated[int | None, typer.Option(help="Keep one a week for N weeks.")] = None,
    keep_monthly: Annotated[int | None, typer.Option(help="Keep one a month for N months.")] = None,
    incomplete_grace: Annotated[
        float | None, typer.Option(help="Remove incomplete snapshots older than this many seconds.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be removed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply retention; never removes the newest complete snapshot."""
    repo = repo_url(repo, repo_alias)
    settings = settings_of(config)
    overrides = {
        k: v
        for k, v in {
            "keep_last": keep_last,
            "keep_daily": keep_daily,
            "keep_weekly": keep_weekly,
            "keep_monthly": keep_monthly,
            "incomplete_grace_s": incomplete_grace,
        }.items()
        if v is not None
    }
    policy = settings.backup.retention.model_copy(update=overrides)
    result = prune(open_repo(settings, repo), policy, dry_run=dry_run)
    if as_json:
        emit(result.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    console.print(
        f"kept {len(result.kept)}, {verb} {len(result.removed)} snapshot(s), "
        f"{len(result.removed_incomplete)} incomplete one(s), {len(result.removed_epochs)} "
        f"journal epoch(s) and {result.removed_chunks} chunk(s) ({result.removed_chunk_bytes:,} bytes) "
        "no snapshot needs"
    )
    if result.chunks_skipped:
        console.print(f"[yellow]no chunk deleted[/]: {result.chunks_skipped}; the next prune deletes them")
