"""``chromactl backup copy``: bring copy targets up to date."""

from __future__ import annotations

from typing import Annotated

import typer

from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    RepoOpt,
    console,
    emit,
    open_repo,
    renamed,
    repo_url,
    settings_of,
)
from chromactl.backup.operations.copies import copy_all, copy_to
from chromactl.backup.repository.repository import repository_of
from chromactl.config import CopySettings
from chromactl.errors import ChromactlError


def copy_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: Annotated[str | None, typer.Option("--from", hidden=True)] = None,
    dest: Annotated[
        str | None,
        typer.Option(
            "--dest", help="Copy into this repository URL (default: every target of backup.copies)."
        ),
    ] = None,
    old_to: Annotated[str | None, typer.Option("--to", hidden=True)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy every complete snapshot (and the journal) the copy lacks, manifests last."""
    repo = repo_url(repo, repo_alias)
    to = dest or renamed("--dest", "--to", old_to)
    settings = settings_of(config)
    source = open_repo(settings, repo)
    if to is not None:
        results = [copy_to(source, repository_of(settings.backup, CopySettings(target=to)))]
    elif settings.backup.copies:
        results = copy_all(settings.backup, source)
    else:
        raise ChromactlError("nowhere to copy to: pass --dest URL or set backup.copies", exit_code=2)
    if as_json:
        emit({"copies": [r.to_dict() for r in results]})
    else:
        for r in results:
            state = "copied" if r.outcome == "success" else f"FAILED ({r.error})"
            console.print(
                f"{r.target}: {state} {len(r.copied)} snapshot(s), {r.bytes:,} bytes "
                f"({r.chunks:,} new chunks), "
                f"{r.journal_segments} journal segment(s); {r.already} there already"
            )
    if any(r.outcome != "success" for r in results):
        raise typer.Exit(1)
