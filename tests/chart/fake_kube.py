"""A read-only Kubernetes API server holding a fixed set of objects, for Helm's `lookup`.

Helm renders with `lookup` answered from a real cluster; here the cluster is this server:
API discovery for the core and apps groups, and GET of one object or a list, by namespace.
Anything else is a 404, as for an object that does not exist. Every request is recorded so
that a test can prove the chart really asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import helm_python

from tests.chart.servers import serve

#: kind -> (group/version path, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Secret": ("api/v1", "secrets", True),
    "ConfigMap": ("api/v1", "configmaps", True),
    "Service": ("api/v1", "services", True),
    "ServiceAccount": ("api/v1", "serviceaccounts", True),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims", True),
    "Pod": ("api/v1", "pods", True),
    "Namespace": ("api/v1", "namespaces", False),
    "StatefulSet": ("apis/apps/v1", "statefulsets", True),
    "Deployment": ("apis/apps/v1", "deployments", True),
}


class FakeCluster:
    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self.objects: list[dict[str, Any]] = list(objects or [])
        self.requests: list[str] = []

    def add(self, obj: dict[str, Any], namespace: str | None = None) -> None:
        obj = json.loads(json.dumps(obj))
        if namespace and RESOURCES.get(obj["kind"], ("", "", False))[2]:
            obj["metadata"].setdefault("namespace", namespace)
        self.objects.append(obj)

    def _discovery(self, group_version: str) -> dict[str, Any]:
        resources = [
            {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
             "verbs": ["get", "list"]}
            for kind, (path, plural, namespaced) in RESOURCES.items() if path.endswith(group_version)
        ]
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.requests.append(path)
        path = path.split("?", 1)[0].strip("/")
        if path == "api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if path == "apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}
        if path == "version":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"}
        if path == "api/v1":
            return 200, self._discovery("v1")
        if path == "apis/apps/v1":
            return 200, self._discovery("apps/v1")
        for kind, (prefix, plural, namespaced) in RESOURCES.items():
            if not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :].split("/")
            namespace = None
            if namespaced and len(rest) >= 3 and rest[0] == "namespaces":
                namespace, rest = rest[1], rest[2:]
            if not rest or rest[0] != plural:
                continue
            matches = [
                o for o in self.objects
                if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
            ]
            if len(rest) == 1:
                return 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": matches}
            found = [o for o in matches if o["metadata"]["name"] == rest[1]]
            if found:
                return 200, found[0]
            break
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                     "code": 404, "message": f"{path} not found"}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                code, body = cluster.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://%s"}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: %s}}]
current-context: fake
"""


@contextmanager
def helm_config(cluster: FakeCluster, namespace: str) -> Iterator[helm_python.Config]:
    """A Helm configuration whose cluster is ``cluster`` (releases kept in memory)."""
    with serve(cluster.handler()) as host:
        config = helm_python.Config(
            kubeconfig_content=KUBECONFIG % (host, namespace), namespace=namespace, storage_driver="memory"
        )
        try:
            yield config
        finally:
            config.close()
