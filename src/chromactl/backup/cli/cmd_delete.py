"""``chromactl backup delete``: remove snapshots, manifest first."""

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
from chromactl.errors import ChromactlError


def delete_cmd(
    snapshot_ids: Annotated[list[str], typer.Argument(help="Snapshot ids.")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete snapshots (the manifest goes first, so none is ever half-listed)."""
    repo = repo_url(repo, repo_alias)
    r = open_repo(settings_of(config), repo)
    known = set(r.snapshot_ids())
    missing = [s for s in snapshot_ids if s not in known]
    if missing:
        raise ChromactlError(f"no such snapshot(s): {', '.join(missing)}", exit_code=2)
    for sid in snapshot_ids:
        r.delete(sid)
    if as_json:
        emit({"deleted": snapshot_ids})
    else:
        console.print(f"deleted {len(snapshot_ids)} snapshot(s)")
