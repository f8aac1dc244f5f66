"""``chromactl backup verify``: re-hash a snapshot, optionally boot Chroma on it."""

from __future__ import annotations

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
    open_repo,
    progress_of,
    repo_url,
    settings_of,
)
from chromactl.backup.recovery.verify import verify


def verify_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    snapshot: Annotated[str, typer.Option(help="Snapshot id or 'latest'.")] = "latest",
    start_chroma: Annotated[
        bool,
        typer.Option(
            "--start-chroma", help="Also restore to scratch space, start Chroma and compare counts."
        ),
    ] = False,
    chroma_bin: Annotated[str | None, typer.Option(help="The chroma executable.")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-hash every file of a snapshot; optionally boot Chroma on a copy and check counts."""
    repo = repo_url(repo, repo_alias)
    report = verify(
        open_repo(settings_of(config), repo),
        snapshot,
        start_chroma=start_chroma,
        chroma_bin=chroma_bin,
        progress=progress_of(as_json, quiet),
    )
    if as_json:
        emit(report.to_dict())
    else:
        for path, problem in report.bad_files.items():
            console.print(f"[red]bad[/] {path}: {problem}")
        for name, counts in report.count_mismatches.items():
            console.print(f"[red]count[/] {name}: manifest {counts['manifest']}, chroma {counts['chroma']}")
        for problem in report.problems:
            console.print(f"[red]problem[/] {problem}")
        state = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
        console.print(
            f"snapshot {report.snapshot_id}: {report.files_checked} files {state}"
            + (" (checked in a running Chroma)" if report.chroma_checked else "")
        )
    if not report.ok:
        raise typer.Exit(1)
