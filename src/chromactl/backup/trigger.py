"""``chromactl backup trigger``: ask the gateway's agent for a backup and follow it.

This is what the chart's CronJob runs. The snapshot itself is taken inside Chroma's
pod (the data volume is ReadWriteOnce); this command only starts it, waits for it and
exits non-zero with the agent's error when it fails, so that the Job fails. With
``--prune`` the agent applies the retention of its config after a successful snapshot
(the target's credentials and volume stay in Chroma's pod only).
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from chromactl.errors import ChromactlError

from .service import BACKUPS_PATH

console = Console(stderr=True, soft_wrap=True, highlight=False)

#: Consecutive seconds of an unreachable gateway tolerated while following a run.
UNREACHABLE_GRACE_S = 60.0
#: Attempts to start a backup while the gateway cannot be reached.
START_ATTEMPTS = 3


class TriggerError(ChromactlError):
    """The backup could not be started, failed, or could not be followed."""


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body)
    except ValueError:
        return resp.text[:300]


class AgentClient:
    """The gateway's backup agent API."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        ca_file: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if client_cert is not None:
            try:
                tls.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
            except (OSError, ssl.SSLError) as exc:
                raise TriggerError(
                    f"cannot load the client certificate {client_cert[0]}: {exc}", exit_code=2
                ) from None
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(30.0, connect=5.0),
            verify=tls,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _check(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        if resp.status_code in (401, 403):
            raise TriggerError(
                f"the gateway refused the agent's credentials to {what} (HTTP {resp.status_code}: "
                f"{_message(resp)}): check the agent token (the chart's backup agent Secret)",
                exit_code=2,
            )
        if resp.status_code == 404 and what == "start a backup":
            raise TriggerError(
                f"{self.url} has no backup agent (HTTP 404): is it a chromactl gateway "
                "of a version with backups?",
                exit_code=2,
            )
        if resp.status_code >= 400:
            raise TriggerError(f"cannot {what}: HTTP {resp.status_code}: {_message(resp)}")
        data: dict[str, Any] = resp.json()
        return data

    def start(self, *, prune: bool) -> tuple[dict[str, Any], bool]:
        """Start a backup; ``(run, started)``. A running one is followed instead (409)."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                resp = self._client.post(BACKUPS_PATH, json={"prune": prune})
                break
            except httpx.TransportError as exc:
                if attempt == START_ATTEMPTS:
                    raise TriggerError(f"cannot reach the gateway at {self.url}: {exc}") from None
                time.sleep(2.0 * attempt)
        if resp.status_code == 409:
            running = resp.json().get("backup_id")
            if running:
                return self.get(str(running)), False
        return self._check(resp, "start a backup"), True

    def get(self, backup_id: str) -> dict[str, Any]:
        resp = self._client.get(f"{BACKUPS_PATH}/{backup_id}")
        if resp.status_code == 404:
            raise TriggerError(
                f"the gateway no longer knows backup {backup_id}: it restarted while the backup "
                "ran; the partial snapshot is left incomplete (never restorable) and removed by prune"
            )
        return self._check(resp, f"follow backup {backup_id}")


def follow(
    client: AgentClient,
    run: dict[str, Any],
    *,
    poll_s: float = 2.0,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the run until it is no longer ``running``; tolerate a briefly unreachable gateway."""
    unreachable_since: float | None = None
    while run.get("state") == "running":
        sleep(poll_s)
        try:
            run = client.get(str(run["backup_id"]))
            unreachable_since = None
        except httpx.TransportError as exc:
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


def _token(token_file: Path | None, token_env: str) -> str | None:
    if token_file is not None:
        try:
            return token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TriggerError(
                f"cannot read the token file {token_file}: {exc.strerror}", exit_code=2
            ) from None
    return os.environ.get(token_env) or None


def _summary(run: dict[str, Any]) -> str:
    r = run.get("result") or {}
    line = (
        f"backup {run['backup_id']}: snapshot {r.get('snapshot_id')} in {r.get('target')}, "
        f"{r.get('files', 0):,} files, {r.get('bytes', 0):,} bytes ({r.get('stored_bytes', 0):,} stored), "
        f"{r.get('records', 0):,} records, writes held {float(r.get('hold_s', 0)) * 1000:.1f} ms, "
        f"{float(r.get('duration_s', 0)):.1f} s"
    )
    pruned = run.get("prune_result")
    if pruned:
        line += (
            f"; pruned {len(pruned.get('removed', []))} snapshot(s) and "
            f"{len(pruned.get('removed_incomplete', []))} incomplete one(s)"
        )
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
    client = AgentClient(
        gateway, _token(token_file, token_env), ca_file=Path(ca) if ca else None, client_cert=pair
    )
    try:
        run, started = client.start(prune=prune)
        verb = "started" if started else "already running, following"
        if not as_json:
            console.print(f"backup {run['backup_id']} {verb} on {client.url}")
        if wait:
            last_note = time.monotonic()

            def note(current: dict[str, Any]) -> None:
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
