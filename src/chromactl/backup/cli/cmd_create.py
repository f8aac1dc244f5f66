"""``chromactl backup create``: take a consistent snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
from chromactl.backup.snapshot.run import hold_from_settings, run_backup
from chromactl.errors import ChromactlError


def create_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Chroma data directory (default: chroma.persist_path).")
    ] = None,
    offline: Annotated[bool, typer.Option(help="The data directory is stopped: no write hold.")] = False,
    gateway: Annotated[str | None, typer.Option(help="Gateway URL for the write hold.")] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA bundle of an https gateway's certificate (default: system CAs).")
    ] = None,
    client_cert: Annotated[
        Path | None, typer.Option(help="Client certificate (PEM) when the gateway asks for one.")
    ] = None,
    client_key: Annotated[Path | None, typer.Option(help="Key of --client-cert (PEM).")] = None,
    chroma_version: Annotated[str | None, typer.Option(help="Chroma version of the data.")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Take a consistent snapshot (online through the gateway's write hold, or --offline)."""
    repo = repo_url(repo, repo_alias)
    settings = settings_of(config)
    updates: dict[str, Any] = {}
    given = {
        "gateway_url": gateway,
        "gateway_ca_file": ca_file,
        "gateway_cert_file": client_cert,
        "gateway_key_file": client_key,
    }
    if any(given.values()):
        updates["backup"] = settings.backup.model_copy(update={k: v for k, v in given.items() if v})
    if chroma_version:
        updates["chroma"] = settings.chroma.model_copy(update={"version": chroma_version})
    settings = settings.model_copy(update=updates)
    hold = hold_from_settings(settings, offline=offline)
    result = run_backup(
        settings,
        hold,
        target=repo,
        data_dir=data_dir,
        progress=progress_of(as_json, quiet),
    )
    if as_json:
        emit(result.to_dict())
    elif result.outcome == "success":
        console.print(
            f"snapshot [bold]{result.snapshot_id}[/]: {result.files} files, "
            f"{result.bytes:,} bytes ({result.stored_bytes:,} stored, {result.uploaded_bytes:,} uploaded: "
            f"{result.uploaded_chunks:,} new chunks), {result.records:,} records,"
            f" writes held {result.hold_s * 1000:.1f} ms, {result.duration_s:.1f} s"
        )
    if result.outcome != "success":
        raise ChromactlError(result.error or "backup failed")
