"""Run the pods a Helm chart renders, without a cluster.

The runner takes manifests rendered by the real Helm engine and starts their
pods the way a kubelet would, close enough that a chart mistake fails a test:

* each container runs from its image (found in local image storage by the
  reference the manifest names; ``tests/podrunner/images.py``): the image's root
  filesystem under an overlay of the container's own, the image's Entrypoint,
  Cmd, Env, User and WorkingDir under the spec's command, args, env and
  securityContext (user, groups, fsGroup, read-only root, no privilege
  escalation), volumes on top; nothing of the host is visible;
* each pod gets its own network namespace (an address on a private bridge that
  only this host reaches) and each container its own mount and PID namespace
  (bubblewrap), so ``127.0.0.1`` is the pod's alone and containers of a pod
  share it;
* Service names resolve, through an ``/etc/hosts`` mounted into every pod, to
  the pod the Service selects; a Service port that differs from its target
  port is forwarded on the pod's address;
* NetworkPolicy is enforced with nftables in each pod's network namespace
  (``tests/podrunner/netpol.py``); pods may run in several namespaces, with labels;
* volumes (PVCs as directories that outlive the pod, emptyDir, configMap,
  secret, projected, downwardAPI), env (value, valueFrom, envFrom, Service
  links), ``$(VAR)`` expansion, init containers, probes, restart policies;
* Jobs, CronJobs (on demand) and helm test hooks;
* with ``PodRunner(kube=FakeCluster())`` (``tests/chart/fake_kube.py``), the Kubernetes API
  from inside pods (``tests/podrunner/kube.py``): the fake API server over HTTPS on the bridge's
  host address, the ``KUBERNETES_SERVICE_*`` variables, the service account's token, ``ca.crt``
  and namespace mounted as a kubelet mounts them; every pod is a ``Pod`` object of that cluster
  (labels changed through the API are the pod's labels, and Services follow them at once; a
  DELETE through the API has the StatefulSet make the pod again: ``wait_recreated``);
* faults for tests: ``kill_containers`` (SIGKILL; restarts by ``restartPolicy``),
  ``partition``/``heal`` (every packet in and out of the pod dropped but loopback's; open
  connections stall as on a real cut) and the API server's outage (``FakeCluster.down``).

It is not a cluster: no scheduler, no controllers beyond "start the pods of a
StatefulSet/Deployment, run a Job's pod until done" (and "make a StatefulSet's pod again
when it is deleted through the API"). Every wait is bounded and
every process is killed when the runner closes (and by the kernel if the test
process dies: sandboxes die with their parent).

This module is ``PodRunner``: the objects of the manifests, starting workloads, Jobs,
CronJobs and hooks, waiting for pods. The rest lives beside it: ``pod.py`` (a pod and its
containers: lifecycle, probes, restarts), ``network.py`` (the bridge, addresses,
``/etc/hosts``, Service port forwards, loading the NetworkPolicy rules of ``netpol.py``),
``volumes.py``, ``environment.py`` (env and command), ``sandbox.py`` (the container's user,
root filesystem and bubblewrap command line; ``exec.c``), ``images.py``, ``objects.py``
(parsed manifests), ``kube.py`` (the pods' API server, pods as API objects) and ``common.py``
(the error, host tools, process helpers).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.podrunner import images as image_table
from tests.podrunner import network
from tests.podrunner.common import NFT, TICK_S, Obj, PodError, log_tail
from tests.podrunner.environment import expand
from tests.podrunner.network import Network
from tests.podrunner.objects import Store, hook_kinds, parse_manifests
from tests.podrunner.pod import Container, Pod
from tests.podrunner.sandbox import ExecShim

if TYPE_CHECKING:
    from tests.chart.fake_kube import FakeCluster
    from tests.podrunner.kube import KubeLink

#: What tests import from here (the modules above hold them).
__all__ = [
    "Container",
    "JobResult",
    "Obj",
    "Pod",
    "PodError",
    "PodRunner",
    "Store",
    "expand",
    "hook_kinds",
    "parse_manifests",
]


@dataclass
class JobResult:
    name: str
    succeeded: bool
    pods: list[Pod]

    @property
    def error(self) -> str | None:
        return next((p.error for p in reversed(self.pods) if p.error), None)

    def logs(self) -> str:
        return "\n".join(
            c.log.read_text(errors="replace")
            for p in self.pods
            for c in p.init_containers + p.containers
            if c.log.exists()
        )


class PodRunner:
    """Starts the pods of rendered manifests; see the module docstring.

    Use as a context manager (or call :meth:`close`): every pod is stopped and
    the pod network removed on exit.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        namespace: str = "default",
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 10.0,
        grace_cap_s: float = 10.0,
        mirrors: dict[str, str] | None = None,
        network_policy: bool = True,
        kube: FakeCluster | None = None,
        kube_port: int = 443,
    ) -> None:
        self.workdir = workdir
        #: Registry mirrors, as a container runtime has them: ``{"registry.example.com":
        #: "ghcr.io"}`` pulls ``registry.example.com/x`` as ``ghcr.io/x``.
        self.mirrors = mirrors or {}
        self.namespace = namespace
        #: Namespaces pods may run in, with their labels (`kubernetes.io/metadata.name` is added).
        self.namespaces: dict[str, dict[str, str]] = {namespace: {}}
        #: Enforce the NetworkPolicies of the manifests (off: every pod reaches every other).
        self.network_policy = network_policy
        if network_policy and not Path(NFT).exists():
            raise PodError(f"{NFT} is missing (Debian nftables): scripts/install-system-deps.sh")
        self.backoff_base_s, self.backoff_cap_s = backoff_base_s, backoff_cap_s
        self.grace_cap_s = grace_cap_s
        self.store = Store(namespace)
        self.pods: dict[str, Pod] = {}
        #: Every pod source that ran at least one pod: "Kind/name".
        self.ran: set[str] = set()
        self._lock = threading.RLock()
        self._job_counter = 0
        self._balancers: list[network.ServiceBalancer] = []
        workdir.mkdir(parents=True, exist_ok=True)
        self.images = image_table.STORE
        self.shim = ExecShim()
        self.network = Network()
        self._closing = False
        self._controllers: list[threading.Thread] = []
        #: What the StatefulSet stand-in could not do (a pod deleted through the API that did
        #: not start again); ``wait_recreated`` raises it.
        self.controller_errors: list[str] = []
        #: The pods' API server (``kube.py``): ``kube.cluster``, ``kube.endpoint.url``,
        #: ``kube.endpoint.ca_file``, ``kube.tokens``; None without ``kube=``.
        self.kube: KubeLink | None = None
        if kube is not None:
            from tests.podrunner.kube import KubeLink

            try:
                self.kube = KubeLink(self, kube, kube_port)
            except BaseException:
                self.network.close()
                self.shim.close()
                raise

    def __enter__(self) -> PodRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing = True
        for balancer in self._balancers:
            balancer.close()
        for thread in list(self._controllers):
            thread.join(60)
        errors = []
        for pod in list(self.pods.values()):
            try:
                pod.stop()
            except PodError as exc:
                errors.append(str(exc))
        self.pods.clear()
        if self.kube is not None:
            self.kube.close()
        self.network.close()
        self.shim.close()
        if errors:
            raise PodError("; ".join(errors))

    def backoff(self, crashes: int) -> float:
        return min(self.backoff_base_s * 2 ** max(crashes - 1, 0), self.backoff_cap_s)

    # -- objects -----------------------------------------------------------------

    def apply(self, rendered: dict[str, str] | Iterable[Obj]) -> None:
        """Load rendered manifests (``Chart.render`` output or parsed objects)."""
        store = parse_manifests(rendered, self.namespace)
        self.store.objects.update(store.objects)
        self.store.notes = store.notes or self.store.notes

    def add_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """A namespace other pods may run in (``metadata.namespace`` of :meth:`run_pod`)."""
        self.namespaces[name] = dict(labels or {})

    def mirror(self, ref: str) -> str:
        return image_table.mirror(ref, self.mirrors)

    def prepare_images(self) -> list[str]:
        """Resolve every image the manifests name, now, in this thread.

        Mounts each image's root filesystem before a pod waits for it, and fails early,
        naming it, on an image that is not in local storage.
        """
        refs = image_table.references(list(self.store.objects.values()))
        for ref in sorted(refs):
            self.images.resolve(self.mirror(ref))
        return sorted(refs)

    @property
    def notes(self) -> str:
        return self.store.notes

    def pod_sources(self) -> list[str]:
        """Every object in the manifests that makes pods: "Kind/name"."""
        kinds = ("Pod", "Job", "CronJob", "StatefulSet", "Deployment", "DaemonSet", "ReplicaSet")
        return sorted(f"{k}/{n}" for (k, n) in self.store.objects if k in kinds)

    def _template(self, kind: str, name: str) -> Obj:
        obj = self.store.get(kind, name)
        if obj is None:
            raise PodError(f"no {kind} named {name!r} in the manifests")
        return obj

    # -- starting pods -------------------------------------------------------------

    def start_pod(self, manifest: Obj, origin: str, *, max_restarts: int | None = None) -> Pod:
        name = manifest["metadata"]["name"]
        with self._lock:
            old = self.pods.get(name)
            if old is not None and not old.finished:
                raise PodError(f"pod {name} is already running")
            if old is not None:
                old.stop()
            pod = Pod(self, json.loads(json.dumps(manifest)), origin)
            pod.max_restarts = max_restarts
            if self.kube is not None:
                if old is not None:
                    self.kube.unregister(old)
                self.kube.register(pod)
            self.pods[name] = pod
            self.ran.add(origin)
        pod.start()
        return pod

    def _pod_from_template(self, template: Obj, name: str, owner: Obj) -> Obj:
        meta = json.loads(json.dumps(template.get("metadata") or {}))
        meta |= {"name": name, "namespace": self.namespace}
        meta["ownerReferences"] = [
            {
                "apiVersion": owner.get("apiVersion", "apps/v1"),
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": json.loads(json.dumps(template["spec"])),
        }

    def statefulset_pods(self, name: str) -> list[Obj]:
        sts = self._template("StatefulSet", name)
        spec = sts["spec"]
        pods = []
        for ordinal in range(int(spec.get("replicas", 1))):
            pod_name = f"{name}-{ordinal}"
            pod = self._pod_from_template(spec["template"], pod_name, sts)
            pod["spec"].setdefault("hostname", pod_name)
            pod["spec"].setdefault("subdomain", spec.get("serviceName"))
            for claim in spec.get("volumeClaimTemplates") or []:
                claim_name = claim["metadata"]["name"]
                pod["spec"].setdefault("volumes", []).append(
                    {"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{pod_name}"}}
                )
            pods.append(pod)
        return pods

    def start_statefulset(self, name: str) -> list[Pod]:
        return [self.start_pod(p, f"StatefulSet/{name}") for p in self.statefulset_pods(name)]

    def start_deployment(self, name: str) -> list[Pod]:
        dep = self._template("Deployment", name)
        replicas = int(dep["spec"].get("replicas", 1))
        return [
            self.start_pod(
                self._pod_from_template(dep["spec"]["template"], f"{name}-{i}", dep), f"Deployment/{name}"
            )
            for i in range(replicas)
        ]

    def start_workloads(self) -> list[Pod]:
        """Start every StatefulSet, Deployment and plain (non-hook) Pod."""
        started: list[Pod] = []
        for sts in self.store.of_kind("StatefulSet"):
            started += self.start_statefulset(sts["metadata"]["name"])
        for dep in self.store.of_kind("Deployment"):
            started += self.start_deployment(dep["metadata"]["name"])
        for pod in self.store.of_kind("Pod"):
            if not hook_kinds(pod):
                started.append(self.start_pod(pod, f"Pod/{pod['metadata']['name']}"))
        return started

    def install(self, timeout: float = 120) -> list[Pod]:
        """Hooks pre-install, the workloads (until ready), hooks post-install."""
        self._run_hooks("pre-install", timeout)
        pods = self.start_workloads()
        for pod in pods:
            self.wait_ready(pod.name, timeout)
        self._run_hooks("post-install", timeout)
        return pods

    def _run_hooks(self, hook: str, timeout: float) -> None:
        for kind in ("Pod", "Job"):
            for obj in self.store.of_kind(kind):
                if hook in hook_kinds(obj):
                    result = self.run_job(obj["metadata"]["name"], timeout, kind=kind)
                    if not result.succeeded:
                        raise PodError(f"{hook} hook {kind}/{obj['metadata']['name']} failed")

    def delete_pod(self, name: str) -> None:
        with self._lock:
            pod = self.pods.pop(name, None)
        if pod is None:
            raise PodError(f"no pod {name}")
        pod.stop()
        if self.kube is not None:
            self.kube.unregister(pod)
        self.pod_network_changed()

    def _recreate(self, pod: Pod, *, owned_only: bool = False) -> Pod | None:
        """Delete ``pod`` and start it again as its owner would (the same name, a new uid; a
        StatefulSet's from its template). With ``owned_only`` a pod no StatefulSet or
        Deployment owns stays deleted (None)."""
        kind, owner = pod.origin.split("/", 1)
        self.delete_pod(pod.name)
        if kind == "StatefulSet":
            manifest = next(p for p in self.statefulset_pods(owner) if p["metadata"]["name"] == pod.name)
        elif kind == "Deployment" or not owned_only:
            manifest = pod.manifest
        else:
            return None
        return self.start_pod(manifest, pod.origin)

    def restart_pod(self, name: str, timeout: float = 120) -> Pod:
        """Delete a StatefulSet/Deployment pod and let its owner make it again.

        A new pod: fresh emptyDirs and network namespace, the same PVCs.
        """
        new = self._recreate(self.pod(name))
        assert new is not None
        self.wait_ready(name, timeout)
        return new

    def _replace_deleted(self, pod: Pod) -> None:
        """A pod deleted through the API: stop it and let its owner make it again, in the
        background (the DELETE has been answered; the pod comes back a moment later)."""

        def run() -> None:
            if self._closing:
                return
            with self._lock:
                if self.pods.get(pod.name) is not pod:
                    return
            try:
                self._recreate(pod, owned_only=True)
            except Exception as exc:
                self.controller_errors.append(f"pod {pod.name} deleted through the API: {exc}")

        thread = threading.Thread(target=run, name=f"controller-{pod.name}", daemon=True)
        self._controllers = [t for t in self._controllers if t.is_alive()] + [thread]
        thread.start()

    def wait_recreated(self, name: str, old_uid: str, timeout: float = 120) -> Pod:
        """Wait until the pod ``name`` is a new one (not ``old_uid``: deleted through the API
        and made again by its owner) and ready."""
        deadline = time.monotonic() + timeout
        while True:
            if self.controller_errors:
                raise PodError("; ".join(self.controller_errors))
            with self._lock:
                pod = self.pods.get(name)
            if pod is not None and pod.uid != old_uid:
                return self.wait_ready(name, max(deadline - time.monotonic(), 0.1))
            if time.monotonic() > deadline:
                raise PodError(f"pod {name} (uid {old_uid}) was not made again within {timeout:.0f}s")
            time.sleep(TICK_S)

    # -- the API and faults --------------------------------------------------------

    def set_labels(self, name: str, labels: dict[str, str | None]) -> None:
        """Change a pod's labels as ``kubectl label`` does (None removes one): through the API
        (a merge patch) with ``kube=``, else directly; Services follow at once."""
        pod = self.pod(name)
        if self.kube is not None:
            path = f"/api/v1/namespaces/{pod.namespace}/pods/{name}"
            body = json.dumps({"metadata": {"labels": labels}}).encode()
            code, answer = self.kube.cluster.answer(path, "PATCH", body, "application/merge-patch+json")
            if code != 200:
                raise PodError(f"label pod {name}: HTTP {code}: {answer.get('message')}")
            return
        new = {k: v for k, v in {**pod.labels, **labels}.items() if v is not None}
        with self._lock:
            pod.labels = new
            pod.meta["labels"] = new
        self.pod_network_changed()

    def api_requests(self, name: str) -> list[str]:
        """The API requests made with the service account tokens of the pod ``name`` (every
        pod of that name the runner ran), as ``FakeCluster.requests`` writes them."""
        if self.kube is None:
            raise PodError("the runner has no API server (PodRunner(kube=...))")
        tokens = {t for t, pod in self.kube.tokens.items() if pod == name}
        return [line for token, line in self.kube.cluster.callers if token in tokens]

    def kill_containers(self, pod: str, container: str | None = None) -> list[str]:
        """SIGKILL the processes of a pod's containers (or of one), as an OOM kill or a crash
        would end them: they start again by ``restartPolicy`` with the usual back-off, and
        ``wait_ready`` waits for them instead of reporting a crash. The names killed."""
        return self.pod(pod).kill_containers(container)

    def partition(self, pod: str) -> None:
        """Cut the pod off the network while its processes run: every packet into and out of
        its network namespace is dropped (not rejected) but loopback's, to and from other
        pods, the host's clients and balancers, and the API server; open TCP connections stall
        until they time out. Its probes wait meanwhile (it is neither restarted nor marked
        unready: the kubelet is on its side of the cut). A pod made again starts connected."""
        p = self.pod(pod)
        network.partition(p)
        p.partitioned = True

    def heal(self, pod: str) -> None:
        """Undo :meth:`partition`: packets flow again, stalled connections resume."""
        p = self.pod(pod)
        network.heal(p)
        p.partitioned = False

    # -- jobs and tests ----------------------------------------------------------

    def run_job(self, name: str, timeout: float = 120, *, kind: str = "Job") -> JobResult:
        """Run a Job (or CronJob, or a hook Pod) to completion; bounded by ``timeout``."""
        obj = self._template(kind, name)
        if kind == "Pod":
            pod = self.start_pod(obj, f"Pod/{name}")
            self._wait_finished(pod, timeout)
            return JobResult(name, pod.phase == "Succeeded", [pod])
        job_spec = obj["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else obj["spec"]
        backoff_limit = int(job_spec.get("backoffLimit", 6))
        deadline = time.monotonic() + timeout
        pods: list[Pod] = []
        for _attempt in range(backoff_limit + 1):
            with self._lock:
                self._job_counter += 1
                pod_name = f"{name}-{self._job_counter:05d}"
            manifest = self._pod_from_template(job_spec["template"], pod_name, obj)
            manifest["metadata"].setdefault("labels", {})["job-name"] = name
            on_failure = job_spec["template"]["spec"].get("restartPolicy") == "OnFailure"
            pod = self.start_pod(
                manifest, f"{kind}/{name}", max_restarts=backoff_limit if on_failure else None
            )
            pods.append(pod)
            self._wait_finished(pod, deadline - time.monotonic())
            if pod.phase == "Succeeded":
                return JobResult(name, True, pods)
            if on_failure or (pod.error and "exited with code" not in pod.error):
                break  # OnFailure retried inside the pod; other errors will not go away
        return JobResult(name, False, pods)

    def run_cronjob(self, name: str, timeout: float = 120) -> JobResult:
        return self.run_job(name, timeout, kind="CronJob")

    def run_tests(self, timeout: float = 120) -> dict[str, JobResult]:
        """``helm test``: every test hook (Pods and Jobs), by hook weight, then name."""
        hooks = [
            o
            for kind in ("Pod", "Job")
            for o in self.store.of_kind(kind)
            if {"test", "test-success"} & hook_kinds(o)
        ]
        hooks.sort(
            key=lambda o: (
                int((o["metadata"].get("annotations") or {}).get("helm.sh/hook-weight", 0)),
                o["metadata"]["name"],
            )
        )
        return {
            o["metadata"]["name"]: self.run_job(o["metadata"]["name"], timeout, kind=o["kind"]) for o in hooks
        }

    def run_pod(self, manifest: Obj, timeout: float = 120) -> JobResult:
        """Run an ad-hoc pod (``restartPolicy: Never`` by default) to completion."""
        manifest = json.loads(json.dumps(manifest))
        manifest.setdefault("kind", "Pod")
        manifest["spec"].setdefault("restartPolicy", "Never")
        pod = self.start_pod(manifest, f"adhoc/{manifest['metadata']['name']}")
        self._wait_finished(pod, timeout)
        return JobResult(pod.name, pod.phase == "Succeeded", [pod])

    def _wait_finished(self, pod: Pod, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0)
        while not pod.finished:
            if time.monotonic() > deadline:
                running = [c.name for c in pod.containers if c.running()]
                pod.stop()
                raise PodError(
                    self._with_logs(
                        pod,
                        f"pod {pod.name} did not finish within {timeout:.0f}s "
                        f"(still running: {', '.join(running) or 'none'})",
                    )
                )
            time.sleep(TICK_S)

    # -- waiting and looking -----------------------------------------------------

    def pod(self, name: str) -> Pod:
        try:
            return self.pods[name]
        except KeyError:
            raise PodError(f"no pod {name} (running: {', '.join(self.pods)})") from None

    def wait_ready(self, name: str, timeout: float = 60) -> Pod:
        """Wait until every container of the pod is ready (its probes pass).

        Fails fast, naming the pod and container with its last log lines, when
        the pod failed or a container exited (it would crash-loop on a cluster).
        """
        pod = self.pod(name)
        deadline = time.monotonic() + timeout
        while True:
            if pod.error:
                raise PodError(pod.error)
            crashed = pod.crashed()
            if crashed is not None:
                code = crashed.exit_codes[-1] if crashed.exit_codes else "?"
                raise PodError(
                    crashed.describe_failure(
                        f"exited with code {code} while the pod should be running "
                        f"(CrashLoopBackOff on a cluster)"
                    )
                )
            if pod.is_ready():
                return pod
            if time.monotonic() > deadline:
                raise PodError(self._not_ready(pod, timeout))
            time.sleep(TICK_S)

    def _not_ready(self, pod: Pod, timeout: float) -> str:
        for c in pod.init_containers:
            if not c.done:
                return c.describe_failure(f"init container not finished after {timeout:.0f}s")
        for c in pod.containers:
            if not c.ready:
                probes = [p for p in (c.startup, c.readiness) if p and p.last_error]
                why = f": last probe error {probes[0].last_error}" if probes else ""
                return c.describe_failure(f"not ready after {timeout:.0f}s{why}")
        return f"pod {pod.name} not ready after {timeout:.0f}s (phase {pod.phase})"

    def _with_logs(self, pod: Pod, message: str) -> str:
        parts = [message]
        for c in pod.init_containers + pod.containers:
            parts.append(f"  {c.name} log:\n{log_tail(c.log)}")
        return "\n".join(parts)

    def logs(self, pod: str, container: str | None = None) -> str:
        p = self.pod(pod)
        c = p.container(container) if container else p.containers[0]
        return c.log.read_text(errors="replace") if c.log.exists() else ""

    def exec(
        self, pod: str, container: str, argv: list[str], timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return self.pod(pod).exec(container, argv, timeout)

    def pvc_dir(self, claim: str) -> Path:
        return self.workdir / "pvc" / claim

    # -- services ----------------------------------------------------------------

    def pod_network_changed(self) -> None:
        """Rewrite every pod's /etc/hosts and the Service port forwards (and policies)."""
        network.pod_network_changed(self)

    def service_address(self, service: str, port: int) -> tuple[str, int]:
        """Where a client on the host reaches ``service:port``."""
        svc = self._template("Service", service)
        pod = network.service_pod(self, svc)
        if pod is None:
            raise PodError(f"Service {service} selects no running pod")
        ports = [p for p in svc["spec"].get("ports") or [] if int(p["port"]) == port]
        if not ports:
            raise PodError(f"Service {service} has no port {port}")
        return pod.ip, port

    def balanced_service_url(self, service: str, port: int, scheme: str = "http") -> str:
        """A URL on the host that spreads connections over every ready pod of ``service``
        (round robin, as kube-proxy does), closed with the runner."""
        balancer = network.ServiceBalancer(self, self._template("Service", service), port)
        self._balancers.append(balancer)
        return f"{scheme}://127.0.0.1:{balancer.port}"

    def balancer_failures(self) -> list[str]:
        """Why each balanced Service URL last closed a connection unforwarded ('' if never)."""
        return [b.last_failure for b in self._balancers]

    def describe(self, pod: str) -> str:
        """A pod at a glance, for a failure's message: phase, labels, each container's readiness,
        restarts and last probe error, and its logs' tails."""
        p = self.pod(pod)
        lines = [f"pod {p.name} {p.ip} phase={p.phase} labels={p.labels}"]
        for c in p.containers:
            probes = [f"{q.last_error}" for q in (c.startup, c.readiness) if q and q.last_error]
            lines.append(f"  {c.name}: ready={c.ready} kills={c.kills} crashes={c.crashes} probes={probes}")
        return self._with_logs(p, "\n".join(lines))

    def service_url(self, service: str, port: int, scheme: str = "http") -> str:
        host, port = self.service_address(service, port)
        return f"{scheme}://{host}:{port}"
