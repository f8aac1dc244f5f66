"""``chromactl export``: collections through the HTTP API to Parquet."""

from __future__ import annotations

from typing import Annotated

import typer

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
from chromactl.backup.recovery.logical import ChromaApi, export
from chromactl.backup.repository.repository import store_of
from chromactl.errors import ChromactlError

ApiUrl = Annotated[str, typer.Option("--url", help="Chroma (or gateway) URL.")]
HeaderOpt = Annotated[
    list[str] | None, typer.Option("--header", "-H", help="Extra request header 'Name: value' (repeatable).")
]
TokenEnvOpt = Annotated[str | None, typer.Option(help="Environment variable with a bearer token.")]
TenantOpt = Annotated[str, typer.Option(help="Tenant.")]
DatabaseOpt = Annotated[str, typer.Option(help="Database.")]
CollectionOpt = Annotated[
    list[str] | None, typer.Option("--collection", help="Only this collection (repeatable).")
]


def export_cmd(
    url: ApiUrl,
    dest: Annotated[
        str | None, typer.Option("--dest", help="Where the export goes: a path, s3://, gs://, az://.")
    ] = None,
    old_to: Annotated[str | None, typer.Option("--to", hidden=True)] = None,
    header: HeaderOpt = None,
    token_env: TokenEnvOpt = None,
    tenant: TenantOpt = "default_tenant",
    database: DatabaseOpt = "default_database",
    collection: CollectionOpt = None,
    page_size: Annotated[int, typer.Option(min=1, help="Records per page and file.")] = 1000,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export collections through the HTTP API to Parquet (resumable: re-run to continue)."""
    settings = settings_of(config)
    out = dest or renamed("--dest", "--to", old_to)
    if out is None:
        raise ChromactlError(
            "--dest is required: where the export goes (a path, s3://, gs://, az://)", exit_code=2
        )
    api = ChromaApi(url, headers=headers_of(header, token_env), tenant=tenant, database=database)
    try:
        result = export(
            api,
            store_of(settings.backup, url=out),
            collections=collection,
            page_size=page_size,
            progress=progress_of(as_json, quiet),
        )
    finally:
        api.close()
    if as_json:
        emit(result.to_dict())
    else:
        console.print(
            f"exported {result.records:,} records from {len(result.collections)} "
            f"collection(s) in {result.duration_s:.1f} s"
        )
