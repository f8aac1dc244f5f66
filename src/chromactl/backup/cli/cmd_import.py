"""``chromactl import``: an export into any Chroma."""

from __future__ import annotations

from typing import Annotated

import typer

from chromactl.backup.cli.cmd_export import (
    ApiUrl,
    CollectionOpt,
    DatabaseOpt,
    HeaderOpt,
    TenantOpt,
    TokenEnvOpt,
)
from chromactl.backup.cli.options import (
    ConfigOpt,
    JsonOpt,
    QuietOpt,
    console,
    emit,
    headers_of,
    progress_of,
    renamed,
    settings_of,
)
from chromactl.backup.recovery.logical import ChromaApi, import_export
from chromactl.backup.repository.repository import store_of
from chromactl.errors import ChromactlError


def import_cmd(
    url: ApiUrl,
    source: Annotated[
        str | None, typer.Option("--source", help="The export to read: a path, s3://, ...")
    ] = None,
    old_from: Annotated[str | None, typer.Option("--from", hidden=True)] = None,
    header: HeaderOpt = None,
    token_env: TokenEnvOpt = None,
    tenant: TenantOpt = "default_tenant",
    database: DatabaseOpt = "default_database",
    collection: CollectionOpt = None,
    batch_size: Annotated[int | None, typer.Option(help="Records per upsert.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import an export into any Chroma (upserts: safe to re-run)."""
    settings = settings_of(config)
    source = source or renamed("--source", "--from", old_from)
    if source is None:
        raise ChromactlError("--source is required: the export to import", exit_code=2)
    api = ChromaApi(url, headers=headers_of(header, token_env), tenant=tenant, database=database)
    try:
        result = import_export(
            store_of(settings.backup, url=source),
            api,
            collections=collection,
            batch_size=batch_size,
            progress=progress_of(as_json, quiet),
        )
    finally:
        api.close()
    if as_json:
        emit(result.to_dict())
    else:
        console.print(
            f"imported {result.records:,} records into {len(result.collections)} "
            f"collection(s) in {result.duration_s:.1f} s"
        )
