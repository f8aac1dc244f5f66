"""``chromactl backup trigger``: ask the pod's backup service for a backup and follow it.

This is what the chart's CronJob runs. The snapshot itself is taken inside Chroma's
pod (the data volume is ReadWriteOnce); this command only starts it, waits for it and
exits non-zero with the agent's error when it fails, so that the Job fails. With
``--prune`` the agent applies the retention of its config after a successful snapshot
(the target's credentials and volume stay in Chroma's pod only).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from chromactl.agentapi import AgentClient, AgentUnreachable, ClientTLS
from chromactl.agentapi.contract import BackupStatus
from chromactl.errors import ChromactlError
from chromactl.secrets import read_secret

console = Console(stderr=True, soft_wrap=True, highlight=False)

#: Consecutive seconds of an unreachable gateway tolerated while following a run.
UNREACHABLE_GRACE_S = 60.0
#: Attempts to start a backup while the gateway cannot be reached.
START_ATTEMPTS = 3


class TriggerError(ChromactlError):
    """The backup failed, or could not be followed."""


def start(
    client: AgentClient, *, prune: bool, sleep: Callable[[float], None] = time.sleep
) -> tuple[BackupStatus, bool]:
    """Start a backup (or follow the running one); retry while the gateway is unreachable."""
    attempt = 1
    while True:
        try:
            return client.start_backup(prune=prune)
        except AgentUnreachable:
            if attempt >= START_ATTEMPTS:
                raise
            sleep(2.0 * attempt)
            attempt += 1


def follow(
    client: AgentClient,
    run: BackupStatus,
    *,
    poll_s: float = 2.0,
    on_poll: Callable[[BackupStatus], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BackupStatus:
    """Poll the run until it is no longer ``running``; tolerate a briefly unreachable gateway."""
    unreachable_since: float | None = None
    while run["state"] == "running":
        sleep(poll_s)
        try:
            run = client.backup(run["backup_id"])
            unreachable_since = None
        except AgentUnreachable as exc:
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since > UNREACHABLE_GRACE_S:
                raise TriggerError(
                    f"lost the gateway while following backup {run['backup_id']}: {exc}"
                ) from None
            continue
        if on_poll is not None:
            on_poll(run)
    return run


def _summary(run: BackupStatus) -> str:
    r = run.get("result") or {}
    line = (
        f"backup {run['backup_id']}: snapshot {r.get('snapshot_id')} in {r.get('target')}, "
        f"{r.get('files', 0):,} files, {r.get('bytes', 0):,} bytes ({r.get('stored_bytes', 0):,} stored, "
        f"{r.get('uploaded_bytes', 0):,} uploaded), "
        f"{r.get('records', 0):,} records, writes held {float(r.get('hold_s', 0)) * 1000:.1f} ms, "
        f"{float(r.get('duration_s', 0)):.1f} s"
    )
    pruned = run.get("prune_result")
    if pruned:
        line += (
            f"; pruned {len(pruned.get('removed', []))} snapshot(s), "
            f"{len(pruned.get('removed_incomplete', []))} incomplete one(s) and "
            f"{pruned.get('removed_chunks', 0):,} chunk(s)"
        )
        if pruned.get("chunks_skipped"):
            line += f" ({pruned['chunks_skipped']})"
    return line


def trigger_cmd(
    gateway: Annotated[
        str,
        typer.Option("--gateway", envvar="CHROMACTL_GATEWAY_URL", help="The gateway URL (its client port)."),
    ],
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the agent (admin) token, e.g. a mounted Secret.")
    ] = None,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the token when no --token-file.")
    ] = "CHROMACTL_ADMIN_TOKEN",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the backup until it ends.")] = True,
    prune: Annotated[
        bool,
        typer.Option("--prune/--no-prune", help="After a successful snapshot, apply the agent's retention."),
    ] = False,
    poll_interval: Annotated[float, typer.Option(min=0.1, help="Seconds between status polls.")] = 2.0,
    ca_file: Annotated[
        Path | None,
        typer.Option(envvar="CHROMA_CA_FILE", help="CA bundle for https (absent file: system CAs)."),
    ] = None,
    client_cert: Annotated[
        Path | None, typer.Option(help="Client certificate (PEM) when the gateway asks for one.")
    ] = None,
    client_key: Annotated[Path | None, typer.Option(help="Key of --client-cert (PEM).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as one JSON object.")] = False,
) -> None:
    """Ask the gateway's backup agent for a snapshot; exit 1 with its error when it fails."""
    from chromactl.smoke import ca_bundle

    ca = ca_bundle(ca_file)
    if (client_cert is None) != (client_key is None):
        raise TriggerError("--client-cert and --client-key go together", exit_code=2)
    pair = (client_cert, client_key) if client_cert and client_key else None
    tls = ClientTLS(Path(ca) if ca else None, pair)
    token = read_secret(token_file, token_env, what="the gateway admin token", optional=True)
    client = AgentClient(gateway, token, tls=tls)
    try:
        run, started = start(client, prune=prune)
        verb = "started" if started else "already running, following"
        if not as_json:
            console.print(f"backup {run['backup_id']} {verb} on {client.url}")
        if wait:
            last_note = time.monotonic()

            def note(current: BackupStatus) -> None:
                nonlocal last_note
                if not as_json and time.monotonic() - last_note >= 30:
                    last_note = time.monotonic()
                    console.print(f"backup {current['backup_id']} still running")

            run = follow(client, run, poll_s=poll_interval, on_poll=note)
    finally:
        client.close()
    if as_json:
        print(json.dumps(run, indent=2))
    elif run["state"] == "succeeded":
        console.print(_summary(run))
    if run["state"] == "failed":
        raise TriggerError(f"backup {run['backup_id']} failed: {run.get('error') or 'unknown error'}")
