"""A small Kubernetes API server in memory, for Helm's `lookup`, `helm install` and `helm upgrade`.

Helm talks to a real cluster; here the cluster is this server: API discovery for the kinds the
charts render, and GET (one object or a list, by namespace and label selector), POST, PUT,
PATCH and DELETE of objects. What it models of the real API server, because the upgrade tests
depend on it:

- the defaults the API server fills into a StatefulSet (podManagementPolicy, updateStrategy,
  revisionHistoryLimit, persistentVolumeClaimRetentionPolicy, the claim templates' volumeMode
  and status), so that what Helm patches is compared with what a cluster really holds;
- the refusal of a StatefulSet update that changes a field Kubernetes never lets change
  (selector, serviceName, volumeClaimTemplates, podManagementPolicy, ...), with the real
  status (422 Invalid) and message text;
- 409 AlreadyExists on create, 404 NotFound, resourceVersion and uid, and 409 Conflict on a
  PUT whose resourceVersion is not the live one (what leader election on a Lease relies on);
- an outage: with ``down`` set every request is answered 503, as an API server that is away;
- the patch types Helm sends: strategic merge (with the merge keys of the fields a chart
  renders: containers, volumes, env, ports, ...), JSON merge, JSON patch, and server-side apply
  (taken as a merge of the applied object: field ownership is not modelled).

Every request is recorded (method and path) so that a test can prove the chart really asked,
and with the bearer token it came with (``callers``), so that a request can be traced to the pod
whose service account token it carried.

``serve_tls`` serves a cluster over HTTPS with a CA of its own, as pods reach the real API server
(the pod runner does that for ``PodRunner(kube=...)``); ``on_write`` lets a test tool (the pod
runner: pods as API objects) follow what clients change.
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import helm_python
import yaml

from chromactl import selfsigned
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
    "Job": ("apis/batch/v1", "jobs", True),
    "CronJob": ("apis/batch/v1", "cronjobs", True),
    "Ingress": ("apis/networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ("apis/networking.k8s.io/v1", "networkpolicies", True),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets", True),
    "CustomResourceDefinition": ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "Lease": ("apis/coordination.k8s.io/v1", "leases", True),
}

#: StatefulSet spec fields an update may change; any other change is refused (apps validation).
STATEFULSET_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
STATEFULSET_FORBIDDEN = (
    "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
    "'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "
    "and 'minReadySeconds' are forbidden"
)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def group_of(kind: str) -> str:
    """The API group a kind belongs to, as error messages name it (`StatefulSet.apps`)."""
    prefix = RESOURCES[kind][0]
    return "" if prefix == "api/v1" else prefix.split("/")[1]


def default_statefulset(obj: dict[str, Any]) -> None:
    """The defaults the API server sets on a StatefulSet (apps/v1 SetDefaults_StatefulSet)."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("type", "RollingUpdate")
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        claim.setdefault("apiVersion", "v1")
        claim.setdefault("kind", "PersistentVolumeClaim")
        claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {}).setdefault("phase", "Pending")


def check_statefulset_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse what ValidateStatefulSetUpdate refuses, with the same message."""

    def fixed(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if k not in STATEFULSET_MUTABLE}

    if fixed(old["spec"]) != fixed(new["spec"]):
        name = old["metadata"]["name"]
        raise ApiError(422, "Invalid", f'StatefulSet.apps "{name}" is invalid: {STATEFULSET_FORBIDDEN}')


# ------------------------------------------------------------------------------------ patches

#: list field -> merge key, for the strategic merge patch of the fields charts render
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
}


def _merge_key(field: str, parent: dict[str, Any]) -> str | None:
    if field == "ports":
        return "containerPort" if "image" in parent else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(live: Any, patch: Any, parent: dict[str, Any] | None = None) -> Any:
    """``live`` with a strategic merge patch applied (the directives Helm's three-way patch uses)."""
    if not isinstance(patch, dict) or not isinstance(live, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = copy.deepcopy(live)
    retain = patch.get("$retainKeys")
    if retain is not None:
        out = {k: v for k, v in out.items() if k in retain}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [v for v in out.get(field, []) if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and (mkey := _merge_key(key, out)) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value, mkey)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value, out)
        else:
            out[key] = _strip_directives(value)
    return out


def _merge_list(live: list[Any], patch: list[Any], key: str) -> list[Any]:
    out = copy.deepcopy(live)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ApiError(400, "BadRequest", f"strategic merge patch: list item without merge key {key}")
        at = next((i for i, x in enumerate(out) if x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del out[at]
        elif at is None:
            out.append(_strip_directives(item))
        else:
            out[at] = strategic_merge(out[at], item, out[at])
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)


def json_merge(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(live) if isinstance(live, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = json_merge(out.get(key), value)
    return out


def json_patch(live: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 JSON patch (add, replace, remove; what Helm sends for labels and annotations)."""
    out = copy.deepcopy(live)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        target: Any = out
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(target, list):
                target.insert(len(target) if last == "-" else int(last), op["value"])
            else:
                target[last] = op["value"]
        elif op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise ApiError(400, "BadRequest", f"json patch op {op['op']} is not modelled")
    return out


# ------------------------------------------------------------------------------------ protobuf


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                return value, at
            shift += 7

    at = 0
    while at < len(data):
        key, at = varint(at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(at)
            yield number, value
        elif wire == 2:
            size, at = varint(at)
            yield number, data[at : at + size]
            at += size
        else:
            raise ApiError(415, "UnsupportedMediaType", f"protobuf wire type {wire} is not modelled")


def _string_map(entries: list[bytes]) -> dict[str, str]:
    out = {}
    for entry in entries:
        pair = dict(_fields(entry))
        out[bytes(pair.get(1, b"")).decode()] = bytes(pair.get(2, b"")).decode()  # type: ignore[arg-type]
    return out


def secret_from_protobuf(body: bytes) -> dict[str, Any]:
    """A Secret sent in Kubernetes' protobuf envelope (how client-go's typed clients, and so
    Helm's release storage, write Secrets), as JSON: name, namespace, labels, type, data."""
    if not body.startswith(b"k8s\x00"):
        raise ApiError(415, "UnsupportedMediaType", "protobuf body without the k8s envelope")
    raw = dict(_fields(body[4:]))[2]  # runtime.Unknown.raw
    fields = list(_fields(bytes(raw)))  # type: ignore[arg-type]
    meta = dict(_fields(next(bytes(v) for n, v in fields if n == 1)))  # type: ignore[arg-type]
    meta_fields = list(_fields(next(bytes(v) for n, v in fields if n == 1)))  # type: ignore[arg-type]
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": bytes(meta.get(1, b"")).decode(),  # type: ignore[arg-type]
            "labels": _string_map([v for n, v in meta_fields if n == 11]),  # type: ignore[misc]
        },
    }
    if 3 in meta:
        secret["metadata"]["namespace"] = bytes(meta[3]).decode()  # type: ignore[arg-type]
    if 6 in meta:
        secret["metadata"]["resourceVersion"] = bytes(meta[6]).decode()  # type: ignore[arg-type]
    data = {}
    for number, value in fields:
        if number == 2:
            pair = dict(_fields(bytes(value)))  # type: ignore[arg-type]
            data[bytes(pair[1]).decode()] = base64.b64encode(bytes(pair.get(2, b""))).decode()  # type: ignore[arg-type]
        elif number == 3:
            secret["type"] = bytes(value).decode()  # type: ignore[arg-type]
    secret["data"] = data
    return secret


# ------------------------------------------------------------------------------------ selectors


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors (`a=b,c!=d,e`), as Helm's storage driver sends them."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# ------------------------------------------------------------------------------------ cluster


#: What ``FakeCluster.on_write`` callbacks get: the method ("POST", "PUT", "PATCH", "DELETE"), the
#: object before (None for a create) and after (None for a delete).
WriteCallback = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]


class FakeCluster:
    def __init__(self, objects: list[dict[str, Any]] | None = None) -> None:
        self.objects: list[dict[str, Any]] = []
        self.requests: list[str] = []
        #: (bearer token or None, request as in ``requests``) of every request
        self.callers: list[tuple[str | None, str]] = []
        #: (method, path) of every request that changed something
        self.writes: list[tuple[str, str]] = []
        #: Called after each successful write through the API (``answer``), outside the
        #: cluster's lock, before the answer goes back: ``callback(method, before, after)``.
        self.on_write: list[WriteCallback] = []
        self._version = 0
        self._lock = threading.Lock()
        self._events: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = []
        #: While set, every request is answered 503 (the API server is away).
        self.down = False
        for obj in objects or []:
            self.add(obj)

    # -- objects

    def add(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Store ``obj`` as the API server would after a create (defaults, uid, resourceVersion)."""
        obj = json.loads(json.dumps(obj))
        namespaced = RESOURCES.get(obj["kind"], ("", "", False))[2]
        if namespace and namespaced and not obj["metadata"].get("namespace"):
            obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "StatefulSet":
            default_statefulset(obj)
        meta = obj["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self._bump(obj)
        self.objects.append(obj)
        return obj

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return next(
            (
                o
                for o in self.objects
                if o["kind"] == kind
                and o["metadata"]["name"] == name
                and (namespace is None or o["metadata"].get("namespace") == namespace)
            ),
            None,
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = self.find(kind, name, namespace)
        assert found is not None, f"no {kind} {name} in the cluster"
        return found

    def remove(self, kind: str, name: str, namespace: str | None = None) -> None:
        """`kubectl delete <kind> <name>` (with `--cascade=orphan`: nothing else goes with it)."""
        self.objects.remove(self.get(kind, name, namespace))

    def put(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """Create or replace ``obj`` (by kind, name and namespace) as a controller would, under
        the cluster's lock; no ``on_write`` callback (they follow what API clients do)."""
        with self._lock:
            meta = obj["metadata"]
            live = self.find(obj["kind"], meta["name"], meta.get("namespace") or namespace)
            if live is None:
                return self.add(obj, namespace)
            new: dict[str, Any] = json.loads(json.dumps(obj))
            new["metadata"].setdefault("namespace", live["metadata"].get("namespace"))
            self._bump(new)
            self.objects[self.objects.index(live)] = new
            return new

    def modify(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        change: Callable[[dict[str, Any]], None],
        uid: str | None = None,
    ) -> dict[str, Any] | None:
        """Change the live object in place under the cluster's lock (a controller's status
        update: nothing a client writes at the same time is lost); None when it is not there
        (or has another ``uid``)."""
        with self._lock:
            live = self.find(kind, name, namespace)
            if live is None or (uid is not None and live["metadata"].get("uid") != uid):
                return None
            new: dict[str, Any] = json.loads(json.dumps(live))
            change(new)
            self._bump(new)
            self.objects[self.objects.index(live)] = new
            return new

    def discard(self, kind: str, name: str, namespace: str | None = None, uid: str | None = None) -> bool:
        """Remove the object if it is there (and has ``uid``, when given); whether it was."""
        with self._lock:
            live = self.find(kind, name, namespace)
            if live is None or (uid is not None and live["metadata"].get("uid") != uid):
                return False
            self.objects.remove(live)
            return True

    def _bump(self, obj: dict[str, Any]) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    # -- HTTP

    def _discovery(self, group_version: str) -> dict[str, Any]:
        resources = [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for kind, (path, plural, namespaced) in RESOURCES.items()
            if path.split("/", 1)[1] == group_version
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    def _openapi(self, prefix: str) -> dict[str, Any]:
        """An OpenAPI v3 document for a group version: a PATCH operation per kind that takes
        the `fieldValidation` parameter, so clients leave validation to the server (as they do
        with a real one) instead of downloading schemas."""
        group_version = prefix.split("/", 1)[1]
        group, version = group_version.rsplit("/", 1) if "/" in group_version else ("", group_version)
        paths = {}
        for kind, (path, plural, namespaced) in RESOURCES.items():
            if path != prefix:
                continue
            scope = "/namespaces/{namespace}" if namespaced else ""
            paths[f"/{path}{scope}/{plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                    "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": paths}

    def _groups(self) -> dict[str, Any]:
        groups = sorted({p.split("/", 1)[1] for p, _, _ in RESOURCES.values() if p.startswith("apis/")})
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": gv.split("/")[0],
                    "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                    "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                }
                for gv in groups
            ],
        }

    def _route(self, path: str) -> tuple[str, str | None, str | None] | None:
        """(kind, namespace, name) of a resource path, or None."""
        for kind, (prefix, plural, namespaced) in RESOURCES.items():
            if not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :].split("/")
            namespace = None
            if namespaced and len(rest) >= 3 and rest[0] == "namespaces":
                namespace, rest = rest[1], rest[2:]
            if rest and rest[0] == plural and len(rest) <= 2:
                return kind, namespace, rest[1] if len(rest) == 2 else None
        return None

    def answer(
        self,
        path: str,
        method: str = "GET",
        body: bytes = b"",
        content_type: str = "",
        token: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        line = path if method == "GET" else f"{method} {path}"
        self.requests.append(line)
        self.callers.append((token, line))
        url = urlsplit(path)
        query = parse_qs(url.query)
        path = url.path.strip("/")
        if self.down:
            return 503, ApiError(503, "ServiceUnavailable", "the API server is away").status()
        with self._lock:
            try:
                result = self._answer(method, path, query, body, content_type)
            except ApiError as exc:
                result = exc.code, exc.status()
            events, self._events = self._events, []
        for event in events:
            for callback in list(self.on_write):
                callback(*event)
        return result

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, content_type: str
    ) -> tuple[int, dict[str, Any]]:
        if method == "GET":
            if path == "api":
                return 200, {"kind": "APIVersions", "versions": ["v1"]}
            if path == "apis":
                return 200, self._groups()
            if path == "openapi/v3":  # a document per group version, with no schemas in it
                return 200, {
                    "paths": {
                        p: {"serverRelativeURL": f"/openapi/v3/{p}?hash=0"}
                        for p in sorted({r[0] for r in RESOURCES.values()})
                    }
                }
            if path.startswith("openapi/v3/"):
                return 200, self._openapi(path[len("openapi/v3/") :])
            if path == "version":
                return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"}
            if path == "api/v1":
                return 200, self._discovery("v1")
            if path.startswith("apis/") and path.count("/") == 2:
                return 200, self._discovery(path[len("apis/") :])
        route = self._route(path)
        if route is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        kind, namespace, name = route
        if method == "GET" and name is None:
            selector = query.get("labelSelector", [""])[0]
            items = [
                o
                for o in self.objects
                if o["kind"] == kind
                and (namespace is None or o["metadata"].get("namespace") == namespace)
                and matches_selector(o["metadata"].get("labels") or {}, selector)
            ]
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._version)},
                "items": items,
            }
        if method == "POST" and name is None:
            obj = json.loads(body)
            name = obj["metadata"]["name"]
            if self.find(kind, name, namespace):
                raise ApiError(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
            self.writes.append((method, f"{kind}/{name}"))
            created = self.add(obj, namespace)
            self._events.append((method, None, created))
            return 201, created
        assert name is not None
        live = self.find(kind, name, namespace)
        ref = ".".join(filter(None, [RESOURCES[kind][1], group_of(kind)]))
        if live is None and not (method == "PATCH" and "apply-patch" in content_type):
            raise ApiError(404, "NotFound", f'{ref} "{name}" not found')
        if method == "GET":
            assert live is not None
            return 200, live
        self.writes.append((method, f"{kind}/{name}"))
        if method == "DELETE":
            assert live is not None
            self.objects.remove(live)
            self._events.append((method, live, None))
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "PUT":
            new = json.loads(body)
            sent = (new.get("metadata") or {}).get("resourceVersion")
            if sent and sent != live["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {ref} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
        elif method == "PATCH":
            new = self._patched(live, body, content_type)
            if live is None:
                created = self.add(new, namespace)
                self._events.append((method, None, created))
                return 201, created
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")
        assert live is not None
        replaced = self._replace(live, new)
        self._events.append((method, live, replaced))
        return 200, replaced

    def _patched(self, live: dict[str, Any] | None, body: bytes, content_type: str) -> dict[str, Any]:
        if "apply-patch" in content_type:  # server-side apply: the applied object, merged
            return json_merge(live or {}, yaml.safe_load(body))
        assert live is not None
        patch = json.loads(body)
        if "strategic-merge-patch" in content_type:
            return strategic_merge(live, patch)
        if "merge-patch" in content_type:
            return json_merge(live, patch)
        if "json-patch" in content_type:
            return json_patch(live, patch)
        raise ApiError(415, "UnsupportedMediaType", f"patch type {content_type} is not supported")

    def _replace(self, live: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        new = json.loads(json.dumps(new))
        new.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "namespace"):
            if key in live["metadata"]:
                new["metadata"][key] = live["metadata"][key]
        if live["kind"] == "StatefulSet":
            default_statefulset(new)
            check_statefulset_update(live, new)
        if live.get("immutable") and live.get("data") != new.get("data"):
            raise ApiError(
                422,
                "Invalid",
                f'{live["kind"]} "{live["metadata"]["name"]}" is invalid: '
                "data: Forbidden: field is immutable when `immutable` is set",
            )
        if "status" in live and "status" not in new:
            new["status"] = live["status"]
        self._bump(new)
        self.objects[self.objects.index(live)] = new
        return new

    def handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                content_type = self.headers.get("Content-Type", "")
                if "protobuf" in content_type:
                    try:
                        body = json.dumps(secret_from_protobuf(body)).encode()
                    except (ApiError, KeyError, StopIteration, IndexError) as exc:
                        error = (
                            exc
                            if isinstance(exc, ApiError)
                            else ApiError(
                                415, "UnsupportedMediaType", f"only Secrets are read in protobuf ({exc!r})"
                            )
                        )
                        code, answer = error.code, error.status()
                        return self._send(code, answer)
                    content_type = "application/json"
                auth = self.headers.get("Authorization", "")
                token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
                code, answer = cluster.answer(self.path, self.command, body, content_type, token)
                self._send(code, answer)

            def _send(self, code: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        return Handler


class _TlsServer(ThreadingHTTPServer):
    """A threading HTTP server whose connections are TLS, each handshake in the connection's own
    thread (a client that stalls mid-handshake holds up nobody else)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            request.close()
            return
        super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-request (a partitioned pod, a closed test)


@dataclass
class TlsEndpoint:
    """A FakeCluster served over HTTPS: where (``host``, ``port``, ``url``) and the CA that
    signed its certificate (``ca_crt`` as PEM, ``ca_file`` on disk for clients on the host)."""

    cluster: FakeCluster
    host: str
    port: int
    ca_crt: str
    ca_file: Path
    _server: _TlsServer
    _dir: tempfile.TemporaryDirectory[str]

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()


#: The names the API server's certificate carries (the `kubernetes` Service in `default`).
KUBERNETES_NAMES = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
]


def serve_tls(cluster: FakeCluster, host: str = "127.0.0.1", port: int = 0) -> TlsEndpoint:
    """Serve ``cluster`` over HTTPS on ``host:port`` (0: any free port) with a new CA; the
    certificate names ``host`` and the `kubernetes` Service's names. ``close()`` stops it."""
    pem = selfsigned.generate(KUBERNETES_NAMES, [host])
    directory = tempfile.TemporaryDirectory(prefix="fake-kube-")
    root = Path(directory.name)
    (root / "ca.crt").write_text(pem.ca_crt)
    (root / "tls.crt").write_text(pem.tls_crt)
    (root / "tls.key").write_text(pem.tls_key)
    (root / "tls.key").chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(root / "tls.crt", root / "tls.key")
    try:
        server = _TlsServer((host, port), cluster.handler(), context)
    except OSError as exc:
        directory.cleanup()
        raise OSError(exc.errno, f"cannot serve the fake API server on {host}:{port}: {exc}") from None
    threading.Thread(target=server.serve_forever, name="fake-kube-tls", daemon=True).start()
    return TlsEndpoint(
        cluster, host, server.server_address[1], pem.ca_crt, root / "ca.crt", server, directory
    )


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://%s"}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: %s}}]
current-context: fake
"""


@contextmanager
def helm_config(
    cluster: FakeCluster, namespace: str, storage: str = "memory"
) -> Iterator[helm_python.Config]:
    """A Helm configuration whose cluster is ``cluster``.

    ``storage="secret"`` keeps releases where Helm keeps them by default, in Secrets of the
    cluster (so a release written there beforehand is the one `helm upgrade` finds).
    """
    with serve(cluster.handler()) as host:
        config = helm_python.Config(
            kubeconfig_content=KUBECONFIG % (host, namespace), namespace=namespace, storage_driver=storage
        )
        try:
            yield config
        finally:
            config.close()
