"""One client for the agent API, with the TLS options of a private CA and client certificates."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx

from chromactl.errors import ChromactlError

from . import contract
from .contract import BackupListing, BackupStatus, DrillResult, HoldGrant, HoldRequest

#: Seconds a hold request may take beyond its own timeout (it waits for writes to drain).
HOLD_GRACE_S = 10.0


class AgentError(ChromactlError):
    """The agent API refused a request or answered with an error."""


class AgentUnreachable(AgentError):
    """The gateway could not be reached (connection refused, reset, timed out)."""


@dataclass(frozen=True)
class ClientTLS:
    """How to verify an https gateway and what to present when it asks for a certificate."""

    #: CA bundle of the gateway's certificate; None: the system's CAs.
    ca_file: Path | None = None
    #: Client certificate and key (PEM), for a gateway with ``tls.client_auth``.
    cert: tuple[Path, Path] | None = None

    def context(self) -> ssl.SSLContext:
        tls = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert is not None:
            try:
                tls.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
            except (OSError, ssl.SSLError) as exc:
                raise AgentError(
                    f"cannot load the client certificate {self.cert[0]}: {exc}", exit_code=2
                ) from None
        return tls


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body)
    except ValueError:
        return resp.text[:300]


class AgentClient:
    """The agent API of the gateway at ``url``, as an admin (``token``)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        tls: ClientTLS | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            verify=(tls or ClientTLS()).context() if self.url.startswith("https") else True,
            transport=transport,
        )

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, what: str, **kw: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise AgentUnreachable(f"cannot reach the gateway at {self.url}: {exc}") from None

    def _refused(self, resp: httpx.Response, what: str) -> AgentError:
        if resp.status_code in (401, 403):
            return AgentError(
                f"the gateway refused the agent's credentials to {what} (HTTP {resp.status_code}: "
                f"{_message(resp)}): check the agent token (the chart's backup agent Secret)",
                exit_code=2,
            )
        return AgentError(f"cannot {what}: HTTP {resp.status_code}: {_message(resp)}")

    # -- write holds -------------------------------------------------------------------

    def hold(self, timeout_s: float, quiet_s: float = 0.0) -> HoldGrant:
        """Hold writes for at most ``timeout_s``; returns once none is in flight. With
        ``quiet_s``, the gate closes at a moment with no write in flight if one comes."""
        body: HoldRequest = {"timeout_s": timeout_s}
        if quiet_s > 0:
            body["quiet_s"] = quiet_s
        what = "hold writes"
        timeout = quiet_s + timeout_s + HOLD_GRACE_S
        resp = self._send("POST", contract.HOLDS, what, json=body, timeout=timeout)
        if resp.status_code not in (200, 201):
            raise self._refused(resp, what)
        data = resp.json()
        return {"hold_id": str(data["hold_id"]), "waited_s": float(data.get("waited_s", 0.0))}

    def release(self, hold_id: str) -> bool:
        """End a hold; False when it had already ended by itself (its timeout)."""
        what = f"release the write hold {hold_id}"
        resp = self._send("DELETE", contract.hold_path(hold_id), what)
        if resp.status_code == 404:
            return False
        if resp.status_code not in (200, 204):
            raise self._refused(resp, what)
        return True

    # -- backups -----------------------------------------------------------------------

    def start_backup(self, *, prune: bool) -> tuple[BackupStatus, bool]:
        """Start a backup: ``(status, started)``; a running one is returned instead (409)."""
        what = "start a backup"
        resp = self._send("POST", contract.BACKUPS, what, json={"prune": prune})
        if resp.status_code == 409:
            running = resp.json().get("backup_id")
            if running:
                return self.backup(str(running)), False
        if resp.status_code == 404:
            raise AgentError(
                f"{self.url} has no backup agent (HTTP 404): is it a chromactl gateway "
                "of a version with backups?",
                exit_code=2,
            )
        if resp.status_code >= 400:
            raise self._refused(resp, what)
        return cast(BackupStatus, resp.json()), True

    def report_drill(self, result: DrillResult) -> None:
        """Hand a restore drill's result to the gateway (it exports it as metrics)."""
        what = "report a restore drill"
        resp = self._send("POST", contract.DRILLS, what, json=result)
        if resp.status_code >= 400:
            raise self._refused(resp, what)

    def backup(self, backup_id: str) -> BackupStatus:
        what = f"follow backup {backup_id}"
        resp = self._send("GET", contract.backup_path(backup_id), what)
        if resp.status_code == 404:
            raise AgentError(
                f"the gateway no longer knows backup {backup_id}: it restarted while the backup "
                "ran; the partial snapshot is left incomplete (never restorable) and removed by prune"
            )
        if resp.status_code >= 400:
            raise self._refused(resp, what)
        return cast(BackupStatus, resp.json())

    def backups(self) -> BackupListing:
        what = "list backups"
        resp = self._send("GET", contract.BACKUPS, what)
        if resp.status_code >= 400:
            raise self._refused(resp, what)
        return cast(BackupListing, resp.json())
