"""``chromactl backup drill``: restore into a throwaway Chroma and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chromactl.agentapi import AgentClient, ClientTLS
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
from chromactl.backup.recovery.drill import drill, record
from chromactl.backup.snapshot.run import gateway_tls
from chromactl.secrets import read_secret
from chromactl.smoke import ca_bundle


def drill_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    repo_alias: RepoAliasOpt = None,
    snapshot: Annotated[str, typer.Option(help="Snapshot id or 'latest'.")] = "latest",
    workdir: Annotated[
        Path | None,
        typer.Option(help="Scratch directory (the drill Job's emptyDir); default: a temporary one."),
    ] = None,
    chroma_url: Annotated[
        str | None,
        typer.Option(
            help="A Chroma started on WORKDIR/data by someone else (the drill Job's); default: start one."
        ),
    ] = None,
    chroma_bin: Annotated[str | None, typer.Option(help="The chroma executable.")] = None,
    chroma_config: Annotated[
        Path | None,
        typer.Option(help="The live Chroma's config file (options such as sqlitedb.hash_type must match)."),
    ] = None,
    sample: Annotated[
        int, typer.Option(min=0, help="Records per collection queried by their own embedding.")
    ] = 20,
    report_to: Annotated[
        str | None, typer.Option("--report-to", help="Gateway URL whose agent API records the result.")
    ] = None,
    token_file: Annotated[Path | None, typer.Option(help="File holding the gateway's admin token.")] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="CHROMA_CA_FILE", help="CA bundle of an https gateway (absent file: system CAs)."
        ),
    ] = None,
    client_cert: Annotated[
        Path | None, typer.Option(help="Client certificate (PEM) when the gateway asks for one.")
    ] = None,
    client_key: Annotated[Path | None, typer.Option(help="Key of --client-cert (PEM).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a snapshot into a throwaway Chroma and check it: hashes, counts, sampled records."""
    repo = repo_url(repo, repo_alias)
    settings = settings_of(config)
    source = open_repo(settings, repo)
    report = drill(
        source,
        snapshot=snapshot,
        workdir=workdir,
        chroma_url=chroma_url,
        chroma_bin=chroma_bin,
        base_config=chroma_config,
        sample=sample,
    )
    record(source, report)
    if report_to is not None:
        token = read_secret(
            token_file or settings.backup.token_file,
            settings.backup.token_env,
            what="the gateway admin token",
            optional=True,
        )
        tls = gateway_tls(settings.backup)
        ca = ca_bundle(ca_file)
        pair = (client_cert, client_key) if client_cert and client_key else tls.cert
        tls = ClientTLS(Path(ca) if ca else tls.ca_file, pair)
        with AgentClient(report_to, token, tls=tls) as agent:
            agent.report_drill(report.to_dict())  # type: ignore[arg-type]
    if as_json:
        emit(report.to_dict())
    elif report.outcome == "success":
        console.print(
            f"drill of {report.snapshot_id} passed: {report.collections} collection(s), "
            f"{report.records:,} records, {report.sampled} sampled, {report.duration_s:.1f} s"
        )
    else:
        console.print(f"[bold red]drill of {report.snapshot_id or snapshot} FAILED[/]")
        for problem in report.problems:
            console.print(f"  {problem}", highlight=False)
    if report.outcome != "success":
        raise typer.Exit(1)
