"""``chromactl restore``: a snapshot or a point in time into a data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    QuietOpt,
    RepoOpt,
    console,
    emit,
    open_repo,
    progress_of,
    renamed,
    repo_url,
    settings_of,
)
from chromactl.backup.recovery.restore import RestoreResult, read_marker, restore
from chromactl.errors import ChromactlError
from chromactl.localstack import local_stack


def _up_data_dir() -> Path:
    """The data directory of a stopped `chromactl up` stack here: the default restore target."""
    stack = local_stack()
    if stack is None:
        raise ChromactlError(
            "--data-dir is required: no `chromactl up` data directory here to restore into", exit_code=2
        )
    data = stack.settings.chroma.persist_path
    if stack.running:
        raise ChromactlError(
            f"`chromactl up` is running on {data}: stop it (Ctrl-C) before restoring into its data "
            "directory, or pass --data-dir for another directory",
            exit_code=2,
        )
    return data


def restore_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Data directory to restore into (default: a stopped `chromactl up`'s)."
        ),
    ] = None,
    repo: RepoOpt = None,
    old_to: Annotated[Path | None, typer.Option("--to", hidden=True)] = None,
    repo_alias: Annotated[str | None, typer.Option("--from", hidden=True)] = None,
    snapshot: Annotated[str, typer.Option(help="Snapshot id or 'latest'.")] = "latest",
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to-time",
            help="Restore what Chroma held at this RFC 3339 time (2026-03-15T12:00:05Z), or at "
            "'latest' shipped write: a snapshot and the continuous backup's journal.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty target.")] = False,
    if_not_restored: Annotated[
        bool, typer.Option("--if-not-restored", help="Do nothing if the target holds a restore marker.")
    ] = False,
    chroma_version: Annotated[
        str | None, typer.Option(help="Chroma version that will serve the target (default: chroma.version).")
    ] = None,
    skip_if_no_snapshot: Annotated[
        bool,
        typer.Option(
            "--skip-if-no-snapshot",
            help="With --snapshot latest: exit 0 without restoring when the "
            "source holds no complete snapshot (a first install that restores itself later).",
        ),
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Restore a snapshot (or a point in time): verify every hash, then swap it in atomically."""
    settings = settings_of(config)
    if to_time is not None and snapshot != "latest":
        raise ChromactlError("--to-time and --snapshot go separately: pick one", exit_code=2)
    to = data_dir or renamed("--data-dir", "--to", old_to) or _up_data_dir()
    source = open_repo(settings, repo_url(repo, repo_alias))
    restored_before = if_not_restored and to.is_dir() and read_marker(to) is not None
    if skip_if_no_snapshot and snapshot == "latest" and not restored_before and not source.complete():
        result = RestoreResult(
            "skipped",
            "",
            str(to.absolute()),
            message=(f"no complete snapshot in {source.display}: nothing to restore, {to} left as it is"),
        )
    else:
        result = restore(
            source,
            to,
            snapshot=snapshot,
            force=force,
            if_not_restored=if_not_restored,
            target_chroma_version=chroma_version or settings.chroma.version,
            progress=progress_of(as_json, quiet),
            to_time=to_time,
        )
    if as_json:
        emit(result.to_dict())
    elif result.outcome == "skipped":
        console.print(result.message)
    else:
        console.print(
            f"restored snapshot [bold]{result.snapshot_id}[/] into {result.target} "
            f"({result.files} files, {result.bytes:,} bytes)"
        )
        if result.to_time is not None:
            console.print(
                f"replayed {result.journal_entries} journal entries: "
                f"the data is as of [bold]{result.to_time}[/]"
            )
