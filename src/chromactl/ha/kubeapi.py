"""The few Kubernetes API calls chromactl makes from inside a pod: read and write one Lease, label
its own pod with its role, and delete its own pod (to be rebuilt by its init container).

In a pod the API server, the service account's token and CA and the namespace come from the
standard places (``KUBERNETES_SERVICE_HOST``, ``/var/run/secrets/kubernetes.io/serviceaccount``);
:meth:`KubeApi.in_cluster` reads them. Every call has a short timeout: a lease that cannot be
renewed in time must be noticed in time.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chromactl.errors import ChromactlError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LEASES = "apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
PODS = "api/v1/namespaces/{namespace}/pods"


class KubeApiError(ChromactlError):
    """The API server could not be reached or refused the call."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KubeApiError):
    """The object changed since it was read (409): read it again."""


@dataclass
class KubeApi:
    """One API server, as one service account, in one namespace; one connection pool (and one
    TLS context) for all its calls, from any thread."""

    url: str
    namespace: str
    token: str | None = None
    ca_file: Path | None = None
    timeout_s: float = 2.0
    _client: httpx.Client | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                verify: str | bool = str(self.ca_file) if self.ca_file else True
                self._client = httpx.Client(base_url=self.url, timeout=self.timeout_s, verify=verify)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @classmethod
    def in_cluster(cls, timeout_s: float = 2.0) -> KubeApi:
        host, port = (
            os.environ.get("KUBERNETES_SERVICE_HOST"),
            os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
        )
        if not host:
            raise KubeApiError("not in a pod: KUBERNETES_SERVICE_HOST is not set")
        return cls(
            f"https://{host}:{port}",
            (SERVICE_ACCOUNT / "namespace").read_text().strip(),
            (SERVICE_ACCOUNT / "token").read_text().strip(),
            SERVICE_ACCOUNT / "ca.crt",
            timeout_s,
        )

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, content_type: str | None = None
    ) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if content_type:
            headers["Content-Type"] = content_type
        data = json.dumps(body).encode() if body is not None else None
        headers.setdefault("Content-Type", "application/json")
        try:
            answer = self.client().request(method, "/" + path, content=data, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeApiError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if answer.status_code == 404:
            return None
        if answer.status_code == 409:
            raise Conflict(f"{method} {path}: {answer.json().get('message', 'conflict')}", 409)
        if answer.status_code >= 400:
            raise KubeApiError(
                f"{method} {path}: HTTP {answer.status_code}: {answer.text[:200]}", answer.status_code
            )
        found: dict[str, Any] = answer.json()
        return found

    def get_lease(self, name: str) -> dict[str, Any] | None:
        """The Lease ``name``, or None when there is none."""
        return self._call("GET", f"{LEASES.format(namespace=self.namespace)}/{name}")

    def create_lease(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the Lease; :class:`Conflict` when another pod created it first."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": spec,
        }
        created = self._call("POST", LEASES.format(namespace=self.namespace), body)
        assert created is not None
        return created

    def replace_lease(self, lease: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Write ``spec`` over the Lease as read (its resourceVersion): :class:`Conflict` when it
        changed since."""
        body = {**lease, "spec": spec}
        name = lease["metadata"]["name"]
        replaced = self._call("PUT", f"{LEASES.format(namespace=self.namespace)}/{name}", body)
        if replaced is None:
            raise Conflict(f"lease {name} was deleted", 409)
        return replaced

    def label_pod(self, name: str, labels: dict[str, str]) -> None:
        """Set ``labels`` on the pod ``name`` (a JSON merge patch: other labels stay)."""
        found = self._call(
            "PATCH",
            f"{PODS.format(namespace=self.namespace)}/{name}",
            {"metadata": {"labels": labels}},
            content_type="application/merge-patch+json",
        )
        if found is None:
            raise KubeApiError(f"pod {name} not found", 404)

    def delete_pod(self, name: str) -> None:
        """Delete the pod ``name``: its StatefulSet makes it again, init containers first."""
        self._call("DELETE", f"{PODS.format(namespace=self.namespace)}/{name}")
