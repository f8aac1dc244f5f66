"""The pods' Kubernetes API: a ``FakeCluster`` (``tests/chart/fake_kube.py``) the pods reach.

``PodRunner(kube=FakeCluster())`` makes a ``KubeLink``:

* the cluster is served over HTTPS (a CA of its own) on the bridge's host address, port 443 by
  default, where pods reach it as they reach the `kubernetes` Service's address;
* each container gets what a kubelet gives it: ``KUBERNETES_SERVICE_HOST``/``_PORT``/
  ``_PORT_HTTPS`` (and the ``KUBERNETES_PORT*`` links), and, unless
  ``automountServiceAccountToken`` is false (the pod's, else its ServiceAccount's), a read-only
  ``/var/run/secrets/kubernetes.io/serviceaccount`` with ``token`` (one per pod, so requests can
  be attributed: ``PodRunner.api_requests``), ``ca.crt`` and ``namespace``, 0644 in a 0755
  directory (readable by any user, as the kubelet's projected volume);
* each pod the runner starts is a ``Pod`` object in the cluster (name, namespace, labels, uid,
  ownerReferences, spec, a status kept current: phase, podIP, Ready), removed when the runner
  deletes the pod. A label change through the API (PATCH or PUT) is the pod's labels at once:
  Services, ``/etc/hosts`` and NetworkPolicy are re-evaluated before the API answers. A DELETE
  through the API has the pod's owner make it again, as a StatefulSet does (in the background:
  the DELETE answers at once; ``PodRunner.wait_recreated``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tests.chart.fake_kube import FakeCluster, TlsEndpoint, serve_tls
from tests.podrunner.common import Obj, PodError

if TYPE_CHECKING:
    from tests.podrunner.pod import Pod
    from tests.podrunner.runner import PodRunner

#: Where the kubelet mounts a pod's service account token, CA and namespace.
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
#: How often pod status is written to the cluster (when it changed).
STATUS_PERIOD_S = 0.2


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeLink:
    """A runner's API server: serving, service account files, pods as API objects."""

    def __init__(self, runner: PodRunner, cluster: FakeCluster, port: int) -> None:
        self.runner, self.cluster = runner, cluster
        try:
            self.endpoint: TlsEndpoint = serve_tls(cluster, runner.network.gateway, port)
        except OSError as exc:
            raise PodError(f"{exc} (PodRunner(kube_port=...) picks another port)") from None
        #: token -> the pod (by name) it was given to
        self.tokens: dict[str, str] = {}
        self._synced: dict[str, str] = {}
        self._stop = threading.Event()
        cluster.on_write.append(self._on_write)
        self._thread = threading.Thread(target=self._sync_status, name="podrunner-kube", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(ValueError):
            self.cluster.on_write.remove(self._on_write)
        self.endpoint.close()

    # -- what a container gets ---------------------------------------------------

    def env(self) -> dict[str, str]:
        """The variables the kubelet sets for the `kubernetes` Service in every container."""
        host, port = self.endpoint.host, str(self.endpoint.port)
        base = f"KUBERNETES_PORT_{port}_TCP"
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            base: f"tcp://{host}:{port}",
            f"{base}_PROTO": "tcp",
            f"{base}_PORT": port,
            f"{base}_ADDR": host,
        }

    def automount(self, pod: Pod) -> bool:
        """``automountServiceAccountToken``: the pod's, else its ServiceAccount's, else true."""
        own = pod.spec.get("automountServiceAccountToken")
        if own is not None:
            return bool(own)
        account = self.runner.store.get("ServiceAccount", pod.spec.get("serviceAccountName") or "default")
        if account is not None and account.get("automountServiceAccountToken") is not None:
            return bool(account["automountServiceAccountToken"])
        return True

    def service_account_dir(self, pod: Pod) -> Path | None:
        """The pod's token, ca.crt and namespace on the host (None without automount)."""
        if not self.automount(pod):
            return None
        directory = pod.dir / "serviceaccount"
        if not directory.exists():
            directory.mkdir(parents=True)
            directory.chmod(0o755)
            for name, text in (
                ("token", pod.token or ""),
                ("ca.crt", self.endpoint.ca_crt),
                ("namespace", pod.namespace),
            ):
                (directory / name).write_text(text)
                (directory / name).chmod(0o644)
        return directory

    # -- pods as API objects -----------------------------------------------------

    def register(self, pod: Pod) -> None:
        """Give the pod its token and make it an object of the cluster (before it starts)."""
        pod.token = f"podrunner.{pod.namespace}.{pod.name}.{pod.uid}"
        self.tokens[pod.token] = pod.name
        self.cluster.put(self._object(pod), pod.namespace)
        self._synced[pod.uid] = ""

    def unregister(self, pod: Pod) -> None:
        self.cluster.discard("Pod", pod.name, pod.namespace, uid=pod.uid)
        self._synced.pop(pod.uid, None)

    def _owner_references(self, pod: Pod) -> list[Obj]:
        refs = copy.deepcopy(pod.meta.get("ownerReferences") or [])
        for ref in refs:
            owner = self.cluster.find(ref["kind"], ref["name"], pod.namespace)
            stable = uuid.uuid5(uuid.NAMESPACE_URL, f"podrunner/{pod.namespace}/{ref['kind']}/{ref['name']}")
            ref.setdefault("uid", owner["metadata"]["uid"] if owner else str(stable))
        return refs

    def _object(self, pod: Pod) -> Obj:
        meta: Obj = {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "labels": dict(pod.labels),
            "creationTimestamp": _now(),
        }
        if pod.meta.get("annotations"):
            meta["annotations"] = dict(pod.meta["annotations"])
        refs = self._owner_references(pod)
        if refs:
            meta["ownerReferences"] = refs
        spec = json.loads(json.dumps(pod.spec))
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("nodeName", "podrunner")
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": spec,
            "status": self._status(pod),
        }

    def _status(self, pod: Pod) -> Obj:
        ready = "True" if pod.is_ready() else "False"
        return {
            "phase": pod.phase,
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "hostIP": self.runner.network.gateway,
            "conditions": [
                {"type": "Initialized", "status": "True" if pod.phase != "Pending" else "False"},
                {"type": "ContainersReady", "status": ready},
                {"type": "Ready", "status": ready},
            ],
            "containerStatuses": [
                {
                    "name": c.name,
                    "ready": c.ready,
                    "started": c.started,
                    "restartCount": c.restarts + c.crashes,
                    "image": c.spec.get("image", ""),
                }
                for c in pod.containers
            ],
        }

    def _sync_status(self) -> None:
        while not self._stop.wait(STATUS_PERIOD_S):
            with self.runner._lock:
                pods = list(self.runner.pods.values())
            for pod in pods:
                if pod.uid not in self._synced:
                    continue
                status = self._status(pod)
                key = json.dumps(status, sort_keys=True)
                if key == self._synced.get(pod.uid):
                    continue

                def change(obj: Obj, status: Obj = status) -> None:
                    obj["status"] = status

                if self.cluster.modify("Pod", pod.name, pod.namespace, change, uid=pod.uid) is not None:
                    self._synced[pod.uid] = key

    def _on_write(self, method: str, before: Obj | None, after: Obj | None) -> None:
        obj = after or before
        if obj is None or obj.get("kind") != "Pod":
            return
        meta = obj["metadata"]
        with self.runner._lock:
            pod = self.runner.pods.get(meta["name"])
        if pod is None or pod.uid != meta.get("uid") or pod.namespace != meta.get("namespace"):
            return
        if after is None:  # deleted: its owner makes it again, as a controller would
            self.runner._replace_deleted(pod)
            return
        labels = dict(after["metadata"].get("labels") or {})
        if labels != pod.labels:
            with self.runner._lock:
                pod.labels = labels
                pod.meta["labels"] = labels
            self.runner.pod_network_changed()
