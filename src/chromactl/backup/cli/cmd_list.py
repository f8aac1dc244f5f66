"""``chromactl backup list``: the snapshots of a repository, ids and times whole."""

from __future__ import annotations

from typing import Annotated

import typer

from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    RepoAliasOpt,
    RepoOpt,
    emit,
    open_repo,
    repo_url,
    settings_of,
)
from chromactl.tables import Col, print_table


def list_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also list incomplete snapshots.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List complete (restorable) snapshots, oldest first."""
    repo = repo_url(repo, repo_alias)
    snaps = open_repo(settings_of(config), repo).snapshots()
    if not show_all:
        snaps = [s for s in snaps if s.complete]
    rows = [
        {
            "snapshot_id": s.snapshot_id,
            "complete": s.complete,
            "created_at": s.manifest.created_at if s.manifest else None,
            "chroma_version": s.manifest.chroma_version if s.manifest else None,
            "bytes": s.manifest.total_size if s.manifest else None,
            "stored_bytes": s.manifest.stored_size if s.manifest else None,
            "records": s.manifest.record_count if s.manifest else None,
            "collections": len(s.manifest.collections) if s.manifest else None,
        }
        for s in snaps
    ]
    if as_json:
        emit({"snapshots": rows})
        return
    columns = (
        Col("snapshot", key=True),
        Col("created", key=True),
        Col("chroma"),
        Col("size", justify="right"),
        Col("stored", justify="right"),
        Col("records", justify="right"),
        Col("complete"),
    )
    print_table(
        columns,
        [
            (
                str(r["snapshot_id"]),
                str(r["created_at"] or "-"),
                str(r["chroma_version"] or "-"),
                f"{r['bytes']:,}" if r["bytes"] is not None else "-",
                f"{r['stored_bytes']:,}" if r["stored_bytes"] is not None else "-",
                f"{r['records']:,}" if r["records"] is not None else "-",
                "yes" if r["complete"] else "no",
            )
            for r in rows
        ],
    )
