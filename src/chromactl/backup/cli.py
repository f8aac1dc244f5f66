"""``chromactl backup ...``, ``chromactl restore``, ``export`` and ``import``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from chromactl.agentapi import AgentClient, ClientTLS
from chromactl.config import CopySettings, Settings, load_config
from chromactl.errors import ChromactlError
from chromactl.localstack import local_stack
from chromactl.logging import configure_logging
from chromactl.secrets import read_secret, require_secret
from chromactl.smoke import ca_bundle
from chromactl.storage import redact_url
from chromactl.tables import Col, print_table

from .copies import copy_all, copy_to
from .drill import drill, record
from .logical import ChromaApi, export, import_export
from .migrate import snapshot_before_upgrade
from .progress import NullProgress, Progress, RichBars
from .prune import prune
from .restore import RestoreResult, read_marker, restore
from .run import gateway_tls, hold_from_settings, run_backup
from .store import MIN_SECRET_BYTES, Repository, repository_of, store_of
from .trigger import trigger_cmd
from .verify import verify

backup_app = typer.Typer(
    help="Consistent snapshots of Chroma's data directory: create, list, verify, prune.",
    no_args_is_help=True,
)
console = Console(stderr=True, soft_wrap=True)  # log lines are not cut at 80 columns

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file (default: $CHROMACTL_CONFIG).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object, no progress bars.")]
RepoOpt = Annotated[
    str | None,
    typer.Option(
        "--repo",
        "--to",
        "--from",
        help="Snapshot repository URL (default: backup.target).",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _settings(config: Path | None) -> Settings:
    """The config file given, else $CHROMACTL_CONFIG, else the `chromactl up` stack of
    .chroma-data in this directory (its gateway and token when it runs), else defaults."""
    stack = None if config or os.environ.get("CHROMACTL_CONFIG") else local_stack()
    settings = stack.settings if stack else load_config(config)
    configure_logging(settings.log)
    return settings


def _up_data_dir() -> Path:
    """The data directory of a stopped `chromactl up` stack here: the default restore target."""
    stack = local_stack()
    if stack is None:
        raise ChromactlError(
            "--to is required: no `chromactl up` data directory here to restore into", exit_code=2
        )
    data = stack.settings.chroma.persist_path
    if stack.running:
        raise ChromactlError(
            f"`chromactl up` is running on {data}: stop it (Ctrl-C) before restoring into its data "
            "directory, or pass --to for another directory",
            exit_code=2,
        )
    return data


def _progress(as_json: bool, quiet: bool) -> Progress:
    return NullProgress() if as_json or quiet else RichBars(console)


def _emit(data: dict[str, Any]) -> None:
    print(json.dumps(data, indent=2, default=str))


def _repo(settings: Settings, url: str | None) -> Repository:
    return repository_of(settings.backup, url=url)


def _headers(header: list[str] | None, token_env: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for h in header or []:
        if ":" not in h:
            raise ChromactlError(f"--header wants 'Name: value', got {h!r}", exit_code=2)
        name, value = h.split(":", 1)
        out[name.strip()] = value.strip()
    if token_env:
        token = read_secret(None, token_env, what="the bearer token (--token-env)", optional=True)
        if not token:
            raise ChromactlError(f"environment variable {token_env} is empty", exit_code=2)
        out["Authorization"] = f"Bearer {token}"
    return out


@backup_app.command("create")
def create_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
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
    settings = _settings(config)
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
        progress=_progress(as_json, quiet),
    )
    if as_json:
        _emit(result.to_dict())
    elif result.outcome == "success":
        console.print(
            f"snapshot [bold]{result.snapshot_id}[/]: {result.files} files, "
            f"{result.bytes:,} bytes ({result.stored_bytes:,} stored, {result.uploaded_bytes:,} uploaded: "
            f"{result.uploaded_chunks:,} new chunks), {result.records:,} records,"
            f" writes held {result.hold_s * 1000:.1f} ms, {result.duration_s:.1f} s"
        )
    if result.outcome != "success":
        raise ChromactlError(result.error or "backup failed")


@backup_app.command("list")
def list_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also list incomplete snapshots.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List complete (restorable) snapshots, oldest first."""
    snaps = _repo(_settings(config), repo).snapshots()
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
        _emit({"snapshots": rows})
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


@backup_app.command("verify")
def verify_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
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
    report = verify(
        _repo(_settings(config), repo),
        snapshot,
        start_chroma=start_chroma,
        chroma_bin=chroma_bin,
        progress=_progress(as_json, quiet),
    )
    if as_json:
        _emit(report.to_dict())
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


@backup_app.command("delete")
def delete_cmd(
    snapshot_ids: Annotated[list[str], typer.Argument(help="Snapshot ids.")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete snapshots (the manifest goes first, so none is ever half-listed)."""
    r = _repo(_settings(config), repo)
    known = set(r.snapshot_ids())
    missing = [s for s in snapshot_ids if s not in known]
    if missing:
        raise ChromactlError(f"no such snapshot(s): {', '.join(missing)}", exit_code=2)
    for sid in snapshot_ids:
        r.delete(sid)
    if as_json:
        _emit({"deleted": snapshot_ids})
    else:
        console.print(f"deleted {len(snapshot_ids)} snapshot(s)")


@backup_app.command("drill")
def drill_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
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
    settings = _settings(config)
    source = _repo(settings, repo)
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
        _emit(report.to_dict())
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


@backup_app.command("rekey")
def rekey_cmd(
    new_key_file: Annotated[Path, typer.Option(help="File holding the new encryption secret.")],
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    remove_old: Annotated[
        bool, typer.Option("--remove-old", help="Then drop the current secret's wrapping of the data key.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rotate the encryption secret: wrap the data key under a new one (nothing is re-uploaded)."""
    settings = _settings(config)
    current = _repo(settings, repo)
    new_secret = require_secret(
        new_key_file, what="the new encryption key", min_length=MIN_SECRET_BYTES
    ).encode()
    new_id = current.add_key(new_secret)
    # The new secret must open the repository before the old one goes.
    reopened = Repository(current.store, secret=new_secret)
    assert reopened.keyring is not None and current.keyring is not None
    old_id = current.keyring.key_id
    if remove_old:
        reopened.remove_key(old_id)
    if as_json:
        _emit({"added": new_id, "removed": old_id if remove_old else None})
    else:
        console.print(
            f"added key {new_id}" + (f", removed key {old_id}" if remove_old else f"; key {old_id} kept")
        )


@backup_app.command("copy")
def copy_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Copy to this URL (default: every target of backup.copies)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy every complete snapshot (and the journal) the copy lacks, manifests last."""
    settings = _settings(config)
    source = _repo(settings, repo)
    if to is not None:
        results = [copy_to(source, repository_of(settings.backup, CopySettings(target=to)))]
    elif settings.backup.copies:
        results = copy_all(settings.backup, source)
    else:
        raise ChromactlError("nowhere to copy to: pass --to URL or set backup.copies", exit_code=2)
    if as_json:
        _emit({"copies": [r.to_dict() for r in results]})
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


@backup_app.command("prune")
def prune_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
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
    settings = _settings(config)
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
    result = prune(_repo(settings, repo), policy, dry_run=dry_run)
    if as_json:
        _emit(result.to_dict())
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


def restore_cmd(
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Data directory to restore into (default: a stopped `chromactl up`'s)."),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--from", help="Snapshot repository URL (default: backup.target).")
    ] = None,
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
    settings = _settings(config)
    if to_time is not None and snapshot != "latest":
        raise ChromactlError("--to-time and --snapshot go separately: pick one", exit_code=2)
    to = to or _up_data_dir()
    repo = _repo(settings, source)
    restored_before = if_not_restored and to.is_dir() and read_marker(to) is not None
    if skip_if_no_snapshot and snapshot == "latest" and not restored_before and not repo.complete():
        result = RestoreResult(
            "skipped",
            "",
            str(to.absolute()),
            message=(
                f"no complete snapshot in {redact_url(repo.url)}: nothing to restore, {to} left as it is"
            ),
        )
    else:
        result = restore(
            repo,
            to,
            snapshot=snapshot,
            force=force,
            if_not_restored=if_not_restored,
            target_chroma_version=chroma_version or settings.chroma.version,
            progress=_progress(as_json, quiet),
            to_time=to_time,
        )
    if as_json:
        _emit(result.to_dict())
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
    out: Annotated[str, typer.Option("--to", help="Export URL (path, s3://, ...).")],
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
    settings = _settings(config)
    api = ChromaApi(url, headers=_headers(header, token_env), tenant=tenant, database=database)
    try:
        result = export(
            api,
            store_of(settings.backup, url=out),
            collections=collection,
            page_size=page_size,
            progress=_progress(as_json, quiet),
        )
    finally:
        api.close()
    if as_json:
        _emit(result.to_dict())
    else:
        console.print(
            f"exported {result.records:,} records from {len(result.collections)} "
            f"collection(s) in {result.duration_s:.1f} s"
        )


def import_cmd(
    url: ApiUrl,
    source: Annotated[str, typer.Option("--from", help="Export URL.")],
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
    settings = _settings(config)
    api = ChromaApi(url, headers=_headers(header, token_env), tenant=tenant, database=database)
    try:
        result = import_export(
            store_of(settings.backup, url=source),
            api,
            collections=collection,
            batch_size=batch_size,
            progress=_progress(as_json, quiet),
        )
    finally:
        api.close()
    if as_json:
        _emit(result.to_dict())
    else:
        console.print(
            f"imported {result.records:,} records into {len(result.collections)} "
            f"collection(s) in {result.duration_s:.1f} s"
        )


migrate_app = typer.Typer(
    help="Moving a data directory from Chroma 0.x to 1.x: a snapshot before the first 1.x start.",
    no_args_is_help=True,
)


@migrate_app.command("snapshot")
def migrate_snapshot_cmd(
    config: ConfigOpt = None,
    repo: RepoOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Chroma data directory (default: chroma.persist_path).")
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Snapshot a directory Chroma 0.x wrote, once, before Chroma 1.x opens (and converts) it.

    Does nothing for an empty directory, one 1.x has opened, or one already snapshotted. The
    snapshot goes to --repo, else backup.target, else .chromactl-pre-1.x/ in the directory.
    """
    settings = _settings(config)
    result = snapshot_before_upgrade(
        settings, data_dir or settings.chroma.persist_path, repo=repo, progress=_progress(as_json, quiet)
    )
    if as_json:
        _emit(result.to_dict())
    elif result.outcome == "taken":
        console.print(
            f"Chroma 0.x data: snapshot [bold]{result.snapshot_id}[/] taken to {result.repository} "
            "before Chroma 1.x converts it"
        )
    elif result.outcome == "already-taken":
        console.print(
            f"Chroma 0.x data: snapshot {result.snapshot_id} in {result.repository} was taken "
            f"at {result.taken_at}; not taken again"
        )
    else:
        console.print(f"data directory: {result.generation}; no snapshot needed")


def register(app: typer.Typer) -> None:
    """Add ``backup``, ``restore``, ``export`` and ``import`` to the main CLI."""
    backup_app.command("trigger")(trigger_cmd)
    app.add_typer(backup_app, name="backup")
    app.command("restore")(restore_cmd)
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.add_typer(migrate_app, name="migrate")
