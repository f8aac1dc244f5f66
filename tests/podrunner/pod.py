"""A pod and its containers: lifecycle, probes, restarts.

Each ``Pod`` is driven by one thread: its network namespace, volumes, init containers in
order, then its containers, supervised (startup, readiness and liveness probes; restarts
by ``restartPolicy`` with a back-off) until it finishes or is stopped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.podrunner import images as image_table
from tests.podrunner import sandbox, volumes
from tests.podrunner.common import (
    NSENTER,
    SETPRIV,
    TICK_S,
    UNSHARE,
    Obj,
    PodError,
    _main_process,
    _pid_alive,
    log_tail,
)
from tests.podrunner.network import PortForward

if TYPE_CHECKING:
    from tests.podrunner.runner import PodRunner
    from tests.podrunner.sandbox import Identity


@dataclass
class ProbeState:
    spec: Obj
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    last_error: str = ""

    def setting(self, key: str, default: int) -> int:
        return int(self.spec.get(key, default))


@dataclass
class Container:
    """One container of a pod: its spec, process, probe state and log."""

    pod: Pod
    spec: Obj
    init: bool = False
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    liveness_restarts: int = 0
    crashes: int = 0
    #: Exits a test caused on purpose (``PodRunner.kill_containers``): restarts, not crashes.
    kills: int = 0
    exit_codes: list[int] = field(default_factory=list)
    started: bool = False
    ready: bool = False
    done: bool = False
    next_start: float = 0.0
    started_at: float = 0.0
    startup: ProbeState | None = None
    liveness: ProbeState | None = None
    readiness: ProbeState | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    #: Who the running process is (set at each start; ``exec`` runs as the same).
    who: Identity | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def log(self) -> Path:
        return self.pod.runner.workdir / "logs" / self.pod.name / f"{self.name}.log"

    def where(self) -> str:
        kind = "init container" if self.init else "container"
        return f"pod {self.pod.name}, {kind} {self.name} (image {self.spec.get('image')})"

    def describe_failure(self, what: str) -> str:
        return f"{self.where()}: {what}\n  last log lines of {self.log}:\n{log_tail(self.log)}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Pod:
    """A pod: network namespace, volumes and containers, driven by one thread.

    All processes of the pod are started and stopped from its own thread, so
    that they die with it (bubblewrap's --die-with-parent follows the thread).
    """

    def __init__(self, runner: PodRunner, manifest: Obj, origin: str) -> None:
        self.runner = runner
        self.manifest = manifest
        self.meta: Obj = manifest.setdefault("metadata", {})
        self.name: str = self.meta["name"]
        self.uid = str(uuid.uuid4())
        self.meta["uid"] = self.uid
        self.spec: Obj = manifest["spec"]
        self.origin = origin
        #: The pod's labels, the same dict as ``meta["labels"]`` (with ``PodRunner(kube=...)``
        #: replaced as a whole when the API object's labels change).
        self.labels: dict[str, str] = self.meta.setdefault("labels", {})
        self.namespace: str = self.meta.get("namespace") or runner.namespace
        if self.namespace not in runner.namespaces:
            raise PodError(
                f"pod {self.name}: namespace {self.namespace} does not exist (PodRunner.add_namespace)"
            )
        #: The nftables script last loaded into the pod's network namespace.
        self.nft_rules = ""
        self.restart_policy: str = self.spec.get("restartPolicy", "Always")
        self.ip = runner.network.address(self.name)
        self.dir = runner.workdir / "pods" / f"{self.name}-{self.uid[:8]}"
        self.hosts = self.dir / "hosts"
        self.holder: subprocess.Popen[bytes] | None = None
        self.phase = "Pending"
        self.error: str | None = None
        self.init_containers = [Container(self, c, init=True) for c in self.spec.get("initContainers") or []]
        self.containers = [Container(self, c) for c in self.spec.get("containers") or []]
        self.forwards: list[PortForward] = []
        #: A Job's backoffLimit: restarts (OnFailure) after which the pod fails.
        self.max_restarts: int | None = None
        #: The service account token it was given (``PodRunner(kube=...)``), else None.
        self.token: str | None = None
        #: Cut off the network (``PodRunner.partition``): its probes wait, as a kubelet on its
        #: side of the cut would neither restart it nor mark it unready.
        self.partitioned = False
        self._stop = threading.Event()
        self._live = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"pod-{self.name}", daemon=True)

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._live.wait(30)

    def stop(self, timeout: float = 60) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise PodError(f"pod {self.name} did not stop within {timeout}s")

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def _main(self) -> None:
        try:
            self._setup()
            self._live.set()
            self.phase = "Running" if not self.init_containers else "Pending"
            if self._run_init_containers():
                self.phase = "Running"
                self._supervise()
        except PodError as exc:
            self.error = str(exc)
            self.phase = "Failed"
        except Exception as exc:
            self.error = f"pod {self.name}: {type(exc).__name__}: {exc}"
            self.phase = "Failed"
        finally:
            self._live.set()
            for c in self.init_containers + self.containers:
                self._kill(c)
            self._teardown()

    def _setup(self) -> None:
        self.dir.mkdir(parents=True)
        self.holder = subprocess.Popen(
            [SETPRIV, "--pdeathsig", "KILL", UNSHARE, "--net", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        own = os.readlink("/proc/self/ns/net")
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == own:
            if time.monotonic() > deadline or self.holder.poll() is not None:
                raise PodError(f"pod {self.name}: could not create its network namespace")
            time.sleep(0.01)
        self.runner.network.attach(self.holder.pid, self.name)
        self.runner.pod_network_changed()
        self.volumes = volumes.volumes_for(self.runner, self)

    def _teardown(self) -> None:
        for fwd in self.forwards:
            fwd.close()
        self.forwards.clear()
        if self.holder and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(10)

    def _run_init_containers(self) -> bool:
        for c in self.init_containers:
            while not self._stop.is_set():
                self._start(c)
                code = self._wait_exit(c)
                if code is None:
                    return False
                if code == 0:
                    c.done = True
                    break
                c.crashes += 1
                if self.restart_policy == "Never" or (
                    self.max_restarts is not None and c.crashes > self.max_restarts
                ):
                    self.phase = "Failed"
                    self.error = c.describe_failure(f"exited with code {code}")
                    return False
                if self._stop.wait(self.runner.backoff(c.crashes)):
                    return False
            if self._stop.is_set():
                return False
        return True

    def _wait_exit(self, c: Container) -> int | None:
        assert c.proc is not None
        while not self._stop.is_set():
            code = c.proc.poll()
            if code is not None:
                c.exit_codes.append(code)
                return code
            time.sleep(TICK_S)
        return None

    def _supervise(self) -> None:
        for c in self.containers:
            self._start(c)
        while not self._stop.wait(TICK_S):
            now = time.monotonic()
            for c in self.containers:
                self._tick(c, now)
            if self.restart_policy != "Always" and all(c.done for c in self.containers):
                failed = [c for c in self.containers if c.exit_codes and c.exit_codes[-1] != 0]
                self.phase = "Failed" if failed else "Succeeded"
                if failed:
                    self.error = failed[0].describe_failure(f"exited with code {failed[0].exit_codes[-1]}")
                return

    def _tick(self, c: Container, now: float) -> None:
        if c.done:
            return
        if c.proc is None:
            if now >= c.next_start:
                self._start(c)
            return
        code = c.proc.poll()
        if code is not None:
            c.exit_codes.append(code)
            c.proc = None
            c.ready = c.started = False
            restart = self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)
            c.crashes += 1 if restart else 0
            if not restart or (self.max_restarts is not None and c.crashes > self.max_restarts):
                c.done = True
                return
            c.next_start = now + self.runner.backoff(c.crashes)
            return
        self._probe_all(c, now)

    def _probe_all(self, c: Container, now: float) -> None:
        if self.partitioned:
            return
        if not c.started:
            if c.startup is None:
                c.started = True
            elif self._due(c.startup, c, now):
                ok = self._probe(c, c.startup)
                if ok:
                    c.started = True
                elif c.startup.failures >= c.startup.setting("failureThreshold", 3):
                    self._restart(c, f"startup probe failed: {c.startup.last_error}")
                return
            else:
                return
        if c.liveness and self._due(c.liveness, c, now):
            self._probe(c, c.liveness)
            if c.liveness.failures >= c.liveness.setting("failureThreshold", 3):
                c.ready = False  # before the count: a watcher of the count must not see it ready
                c.liveness_restarts += 1
                self._restart(c, f"liveness probe failed: {c.liveness.last_error}")
                return
        if c.readiness is None:
            c.ready = True
        elif self._due(c.readiness, c, now):
            self._probe(c, c.readiness)
            if c.readiness.successes >= c.readiness.setting("successThreshold", 1):
                c.ready = True
            if c.readiness.failures >= c.readiness.setting("failureThreshold", 3):
                c.ready = False

    def _due(self, state: ProbeState, c: Container, now: float) -> bool:
        if state.next_at == 0.0:
            state.next_at = c.started_at + state.setting("initialDelaySeconds", 0)
        if now < state.next_at:
            return False
        state.next_at = now + state.setting("periodSeconds", 10)
        return True

    def _restart(self, c: Container, reason: str) -> None:
        c.ready = False  # not ready while the old process gets its grace period
        with c.log.open("a") as log:
            log.write(f"[podrunner] restarting {c.name}: {reason}\n")
        self._kill(c)
        c.restarts += 1
        self._start(c)

    # -- processes ---------------------------------------------------------------

    def _start(self, c: Container) -> None:
        try:
            argv, env, bwrap, who = sandbox.container_command(self.runner, self, c)
        except image_table.ImageNotFoundError as exc:
            raise PodError(f"{c.where()}: {exc}") from None
        except PodError as exc:
            raise PodError(f"{c.where()}: {exc}") from None
        c.argv, c.env, c.who = argv, env, who
        c.log.parent.mkdir(parents=True, exist_ok=True)
        with c.log.open("ab") as log:
            log.write(f"[podrunner] start {c.name}: {json.dumps(argv)}\n".encode())
            log.flush()
            assert self.holder is not None
            c.proc = subprocess.Popen(
                [NSENTER, f"--net=/proc/{self.holder.pid}/ns/net", *bwrap],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                pass_fds=(self.runner.shim.fd,),
            )
        c.started_at = time.monotonic()
        c.started = c.ready = False
        c.startup, c.liveness, c.readiness = (
            ProbeState(c.spec[k]) if c.spec.get(k) else None
            for k in ("startupProbe", "livenessProbe", "readinessProbe")
        )

    def _kill(self, c: Container) -> None:
        proc = c.proc
        if proc is None or proc.poll() is not None:
            return
        grace = min(float(self.spec.get("terminationGracePeriodSeconds", 30)), self.runner.grace_cap_s)
        main = _main_process(proc.pid)
        if main:
            with contextlib.suppress(ProcessLookupError):
                os.kill(main, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _pid_alive(main) and time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(10)
        c.exit_codes.append(code)
        c.proc = None
        c.ready = c.started = False

    def kill_containers(self, container: str | None = None) -> list[str]:
        """SIGKILL the processes of the pod's running containers (or of one): they restart by
        ``restartPolicy`` with the usual back-off; the exits are not counted as crashes by
        ``crashed``. The names of the containers killed."""
        targets = [self.container(container)] if container else self.containers
        killed = []
        for c in targets:
            proc = c.proc
            if proc is None or proc.poll() is not None:
                continue
            c.kills += 1
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            c.ready = False  # before it returns: a waiter must not see the dead one ready
            killed.append(c.name)
        return killed

    def exec(self, container: str, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a running container (its mounts, network, env)."""
        c = self.container(container)
        main = None
        deadline = time.monotonic() + 2  # bubblewrap forks the container's process
        while c.proc is not None and main is None and time.monotonic() < deadline:
            main = _main_process(c.proc.pid)
            if main is None:
                time.sleep(0.02)
        if main is None or c.who is None:
            raise PodError(f"{c.where()}: not running, cannot exec {argv}")
        return subprocess.run(
            [
                NSENTER,
                "-t",
                str(main),
                "-m",
                "-n",
                "-u",
                "-i",
                "-p",
                "-r",
                "-w",
                *sandbox.exec_argv(self.runner, c.who, argv),
            ],
            capture_output=True,
            text=True,
            env=c.env,
            timeout=timeout,
            check=False,
            pass_fds=(self.runner.shim.fd,),
        )

    def container(self, name: str) -> Container:
        for c in self.init_containers + self.containers:
            if c.name == name:
                return c
        raise PodError(f"pod {self.name} has no container {name!r}")

    # -- probes ------------------------------------------------------------------

    def _probe(self, c: Container, state: ProbeState) -> bool:
        try:
            ok, detail = self._probe_once(c, state.spec)
        except PodError:
            raise
        except Exception as exc:
            ok, detail = False, f"{self._probe_target(c, state.spec)}: {type(exc).__name__}: {exc}"
        if ok:
            state.successes += 1
            state.failures = 0
        else:
            state.failures += 1
            state.successes = 0
            state.last_error = detail
        return ok

    def _port(self, c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise PodError(f"{c.where()}: probe names port {port!r}, which the container lacks")

    def _probe_target(self, c: Container, spec: Obj) -> str:
        if "httpGet" in spec:
            get = spec["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            host = get.get("host") or self.ip
            return f"GET {scheme}://{host}:{self._port(c, get['port'])}{get.get('path', '/')}"
        if "tcpSocket" in spec:
            return f"tcp {self.ip}:{self._port(c, spec['tcpSocket']['port'])}"
        return f"exec {spec.get('exec', {}).get('command')}"

    def _probe_once(self, c: Container, spec: Obj) -> tuple[bool, str]:
        timeout = float(spec.get("timeoutSeconds", 1))
        if "httpGet" in spec:
            get = spec["httpGet"]
            port, host = self._port(c, get["port"]), get.get("host") or self.ip
            conn: http.client.HTTPConnection
            if get.get("scheme", "HTTP").upper() == "HTTPS":
                ctx = ssl._create_unverified_context()
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            try:
                conn.request("GET", get.get("path", "/"), headers=headers)
                status = conn.getresponse().status
            finally:
                conn.close()
            return 200 <= status < 400, f"GET {host}:{port}{get.get('path', '/')} -> {status}"
        if "tcpSocket" in spec:
            port = self._port(c, spec["tcpSocket"]["port"])
            with socket.create_connection((self.ip, port), timeout=timeout):
                return True, ""
        if "exec" in spec:
            try:
                done = self.exec(c.name, list(spec["exec"]["command"]), timeout=timeout)
            except PodError as exc:
                return False, str(exc)
            return done.returncode == 0, f"exec exited {done.returncode}: {done.stderr[-300:]}"
        raise PodError(f"{c.where()}: unsupported probe {sorted(spec)}")

    # -- status ------------------------------------------------------------------

    def is_ready(self) -> bool:
        return self.phase == "Running" and all(c.ready for c in self.containers)

    def crashed(self) -> Container | None:
        """The first container that exited on its own (not through ``kill_containers``)."""
        for c in self.init_containers + self.containers:
            if c.crashes > c.kills:
                return c
        return None


# --------------------------------------------------------------------------- runner
