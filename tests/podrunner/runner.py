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
* Jobs, CronJobs (on demand) and helm test hooks.

It is not a cluster: no scheduler, no controllers beyond "start the pods of a
StatefulSet/Deployment, run a Job's pod until done". Every wait is bounded and
every process is killed when the runner closes (and by the kernel if the test
process dies: sandboxes die with their parent).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.podrunner import images as image_table
from tests.podrunner import netpol

Obj = dict[str, Any]

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
BASH = shutil.which("bash") or "/bin/bash"
CC = shutil.which("cc") or "/usr/bin/cc"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
IP = shutil.which("ip") or "/usr/sbin/ip"
NFT = shutil.which("nft") or "/usr/sbin/nft"
#: PATH for a container whose image sets none (the runtime's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_DIR = Path("/run/podrunner")
SUBNET_BASE = ipaddress.ip_network("10.213.0.0/16")
CLONE_NEWNET = 0x40000000
LOG_TAIL_LINES = 30
TICK_S = 0.1


class PodError(RuntimeError):
    """A pod did not do what was asked; the message names pod and container."""


# --------------------------------------------------------------------------- helpers


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` escapes, unknown names stay as written."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    | {line}" for line in tail) if tail else "    | (empty log)"


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, input=stdin)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def _main_process(pid: int) -> int | None:
    """The first process under a bubblewrap sandbox that is not bubblewrap itself."""
    queue = [pid]
    while queue:
        current = queue.pop(0)
        try:
            comm = Path(f"/proc/{current}/comm").read_text().strip()
        except OSError:
            continue
        if current != pid and comm != "bwrap":
            return current
        queue += _children(current)
    return None


def _quantity(value: str | int | float) -> float:
    text = str(value)
    suffixes = {
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
    }
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --------------------------------------------------------------------------- network


class Network:
    """A private bridge on this host, ``10.213.N.0/24``; one address per pod.

    Nothing is routed off the host: the bridge has no uplink and forwarding is
    left as it is. Bridges of test runs that died are removed on the next start.
    """

    def __init__(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        with open(RUN_DIR / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._collect_stale()
            self.index = self._free_index()
            self.bridge = f"prb{self.index}"
            self.subnet = ipaddress.ip_network(f"10.213.{self.index}.0/24")
            self.gateway = str(self.subnet[1])
            _run(IP, "link", "add", self.bridge, "type", "bridge")
            (RUN_DIR / self.bridge).write_text(str(os.getpid()))
        _run(IP, "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run(IP, "link", "set", self.bridge, "up")
        self._next = 2
        self._by_pod: dict[str, str] = {}

    @staticmethod
    def _links() -> list[str]:
        out = _run(IP, "-o", "link", "show")
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def _collect_stale(self) -> None:
        for link in self._links():
            if not re.fullmatch(r"prb\d+", link):
                continue
            owner = RUN_DIR / link
            pid = int(owner.read_text()) if owner.exists() else 0
            if not pid or not _pid_alive(pid):
                with contextlib.suppress(RuntimeError):
                    _run(IP, "link", "del", link)
                owner.unlink(missing_ok=True)

    def _free_index(self) -> int:
        used = set(self._links())
        routes = []
        for line in _run(IP, "-4", "route", "show").splitlines():
            dest = line.split()[0]
            if dest != "default":
                with contextlib.suppress(ValueError):
                    routes.append(ipaddress.ip_network(dest, strict=False))
        for n in range(256):
            net = ipaddress.ip_network(f"10.213.{n}.0/24")
            if f"prb{n}" not in used and not any(net.overlaps(r) for r in routes):
                return n
        raise RuntimeError("no free 10.213.N.0/24 subnet for the pod network")

    def address(self, pod: str) -> str:
        """The pod's address: the same one every time the pod (by name) runs."""
        if pod not in self._by_pod:
            if self._next > 254:
                raise RuntimeError("pod network is full")
            self._by_pod[pod] = str(self.subnet[self._next])
            self._next += 1
        return self._by_pod[pod]

    def attach(self, holder_pid: int, pod: str) -> str:
        ip = self.address(pod)
        last = ip.rsplit(".", 1)[1]
        host_end, pod_end = f"prv{self.index}x{last}", f"prp{self.index}x{last}"
        with contextlib.suppress(RuntimeError):
            _run(IP, "link", "del", host_end)
        _run(IP, "link", "add", host_end, "type", "veth", "peer", "name", pod_end)
        _run(IP, "link", "set", pod_end, "netns", str(holder_pid))
        _run(IP, "link", "set", host_end, "master", self.bridge, "up")
        ns = f"--net=/proc/{holder_pid}/ns/net"
        for cmd in (
            ("link", "set", "lo", "up"),
            ("link", "set", pod_end, "name", "eth0"),
            ("addr", "add", f"{ip}/24", "dev", "eth0"),
            ("link", "set", "eth0", "up"),
            ("route", "add", "default", "via", self.gateway),
        ):
            _run(NSENTER, ns, IP, *cmd)
        return ip

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            _run(IP, "link", "del", self.bridge)
        (RUN_DIR / self.bridge).unlink(missing_ok=True)


def _in_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of process ``pid``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


class PortForward:
    """Listen on ``port`` inside a pod's network namespace, forward to ``target``."""

    def __init__(self, holder_pid: int, address: str, port: int, target: int) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._sock: socket.socket | None = None
        self.address, self.port, self.target = address, port, target
        self._thread = threading.Thread(target=self._serve, args=(holder_pid,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error

    def _serve(self, holder_pid: int) -> None:
        try:
            _in_netns(holder_pid)
            sock = socket.create_server(("0.0.0.0", self.port), reuse_port=False)
            self._sock = sock
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.address, self.target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._sock:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()


# --------------------------------------------------------------------------- objects


@dataclass
class Store:
    """The objects a render produced, by kind and name."""

    namespace: str = "default"
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    notes: str = ""

    def add(self, obj: Obj) -> None:
        kind, name = obj.get("kind"), obj.get("metadata", {}).get("name")
        if not kind or not name:
            raise PodError(f"manifest without kind or name: {obj!r:.200}")
        self.objects[(kind, name)] = obj

    def get(self, kind: str, name: str) -> Obj | None:
        return self.objects.get((kind, name))

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for (k, _), o in sorted(self.objects.items()) if k == kind]

    def data(self, kind: str, name: str) -> dict[str, bytes] | None:
        obj = self.get(kind, name)
        if obj is None:
            return None
        out = {k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()}
        if kind == "Secret":
            out |= {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            out |= {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            out |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
        return out


def parse_manifests(rendered: dict[str, str] | Iterable[Obj], namespace: str) -> Store:
    store = Store(namespace)
    if isinstance(rendered, dict):
        docs: list[Obj] = []
        for path, text in sorted(rendered.items()):
            if path.endswith("NOTES.txt"):
                store.notes = text
                continue
            try:
                docs += [d for d in yaml.safe_load_all(text) if d]
            except yaml.YAMLError as exc:
                raise PodError(f"{path} is not valid YAML: {exc}") from None
    else:
        docs = list(rendered)
    for doc in docs:
        store.add(doc)
    return store


def hook_kinds(obj: Obj) -> set[str]:
    raw = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return {h.strip() for h in raw.split(",") if h.strip()}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------- containers


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
        self.labels: dict[str, str] = self.meta.get("labels") or {}
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
        self.volumes = self.runner.volumes_for(self)

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
        with c.log.open("a") as log:
            log.write(f"[podrunner] restarting {c.name}: {reason}\n")
        self._kill(c)
        c.restarts += 1
        self._start(c)

    # -- processes ---------------------------------------------------------------

    def _start(self, c: Container) -> None:
        try:
            argv, env, bwrap, who = self.runner.container_command(self, c)
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
                *self.runner.exec_argv(c.who, argv),
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
        for c in self.init_containers + self.containers:
            if c.crashes:
                return c
        return None


# --------------------------------------------------------------------------- runner


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
        workdir.mkdir(parents=True, exist_ok=True)
        self.images = image_table.STORE
        self.shim = ExecShim()
        self.network = Network()

    def __enter__(self) -> PodRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        errors = []
        for pod in list(self.pods.values()):
            try:
                pod.stop()
            except PodError as exc:
                errors.append(str(exc))
        self.pods.clear()
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
        for registry, mirror in self.mirrors.items():
            if ref.startswith(registry + "/"):
                return mirror + ref[len(registry) :]
        return ref

    def prepare_images(self) -> list[str]:
        """Resolve every image the manifests name, now, in this thread.

        Mounts each image's root filesystem before a pod waits for it, and fails early,
        naming it, on an image that is not in local storage.
        """
        refs: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key in ("containers", "initContainers"):
                    refs.update(str(c.get("image", "")) for c in node.get(key) or [])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(list(self.store.objects.values()))
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
            self.pods[name] = pod
            self.ran.add(origin)
        pod.start()
        return pod

    def _pod_from_template(self, template: Obj, name: str, owner: Obj) -> Obj:
        meta = dict(template.get("metadata") or {})
        meta |= {"name": name, "namespace": self.namespace}
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": json.loads(json.dumps(template["spec"])),
            "ownerReferences": [{"kind": owner["kind"], "name": owner["metadata"]["name"]}],
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
        self.pod_network_changed()

    def restart_pod(self, name: str, timeout: float = 120) -> Pod:
        """Delete a StatefulSet/Deployment pod and let its owner make it again.

        A new pod: fresh emptyDirs and network namespace, the same PVCs.
        """
        pod = self.pod(name)
        kind, owner = pod.origin.split("/", 1)
        self.delete_pod(name)
        if kind == "StatefulSet":
            manifest = next(p for p in self.statefulset_pods(owner) if p["metadata"]["name"] == name)
        else:
            manifest = pod.manifest
        new = self.start_pod(manifest, pod.origin)
        self.wait_ready(name, timeout)
        return new

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

    def _service_pod(self, svc: Obj) -> Pod | None:
        selector = svc.get("spec", {}).get("selector") or {}
        with self._lock:
            live = [p for p in self.pods.values() if not p.finished and p.holder]
        for pod in sorted(live, key=lambda p: p.name):
            if selects(selector, pod.labels):
                return pod
        return None

    def _target_port(self, pod: Pod, port: Obj) -> int:
        target = port.get("targetPort", port["port"])
        if isinstance(target, int) or str(target).isdigit():
            return int(target)
        for c in pod.containers:
            for p in c.spec.get("ports") or []:
                if p.get("name") == target:
                    return int(p["containerPort"])
        raise PodError(
            f"Service port {port} names target port {target!r}, which no container of pod {pod.name} declares"
        )

    def service_address(self, service: str, port: int) -> tuple[str, int]:
        """Where a client on the host reaches ``service:port``."""
        svc = self._template("Service", service)
        pod = self._service_pod(svc)
        if pod is None:
            raise PodError(f"Service {service} selects no running pod")
        ports = [p for p in svc["spec"].get("ports") or [] if int(p["port"]) == port]
        if not ports:
            raise PodError(f"Service {service} has no port {port}")
        return pod.ip, port

    def service_url(self, service: str, port: int, scheme: str = "http") -> str:
        host, port = self.service_address(service, port)
        return f"{scheme}://{host}:{port}"

    def pod_network_changed(self) -> None:
        """Rewrite every pod's /etc/hosts and the Service port forwards."""
        with self._lock:
            pods = [p for p in self.pods.values() if p.holder and not p.finished]
            lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
            # A pod is known by name to others only through its headless Service.
            headless = {
                s["metadata"]["name"]
                for s in self.store.of_kind("Service")
                if s.get("spec", {}).get("clusterIP") == "None"
            }
            for pod in pods:
                sub = pod.spec.get("subdomain")
                if sub in headless:
                    host = pod.spec.get("hostname", pod.name)
                    names = [
                        f"{host}.{sub}",
                        f"{host}.{sub}.{self.namespace}",
                        f"{host}.{sub}.{self.namespace}.svc",
                        f"{host}.{sub}.{self.namespace}.svc.cluster.local",
                    ]
                    lines.append(f"{pod.ip}\t{' '.join(names)}")
            for svc in self.store.of_kind("Service"):
                target = self._service_pod(svc)
                if target is None:
                    continue
                n, ns = svc["metadata"]["name"], self.namespace
                lines.append(f"{target.ip}\t{n} {n}.{ns} {n}.{ns}.svc {n}.{ns}.svc.cluster.local")
                self._forward_ports(svc, target)
            for pod in pods:
                own = f"{pod.ip}\t{pod.spec.get('hostname', pod.name)}"
                if pod.hosts.parent.exists():
                    with pod.hosts.open("w") as f:
                        f.write("\n".join([*lines, own]) + "\n")
            if self.network_policy:
                self._enforce_network_policy(pods)

    def _enforce_network_policy(self, pods: list[Pod]) -> None:
        """Load each running pod's NetworkPolicy rules into its network namespace."""
        policies = []
        for policy in self.store.of_kind("NetworkPolicy"):
            policy = json.loads(json.dumps(policy))
            policy["metadata"].setdefault("namespace", self.namespace)
            policies.append(policy)
        endpoints = {}
        for pod in pods:
            aliases: dict[int, tuple[int, ...]] = {}
            for fwd in pod.forwards:
                aliases[fwd.target] = (*aliases.get(fwd.target, ()), fwd.port)
            endpoints[pod.name] = netpol.Endpoint.of(
                pod.name, pod.namespace, pod.labels, pod.ip, pod.spec, aliases
            )
        cluster = netpol.Cluster(endpoints.values(), self.namespaces, policies)
        for pod in pods:
            rules = netpol.ruleset(cluster, endpoints[pod.name], self.network.gateway)
            if rules != pod.nft_rules and pod.holder is not None:
                _run(NSENTER, f"--net=/proc/{pod.holder.pid}/ns/net", NFT, "-f", "-", stdin=rules)
                pod.nft_rules = rules

    def _forward_ports(self, svc: Obj, pod: Pod) -> None:
        for port in svc["spec"].get("ports") or []:
            number, target = int(port["port"]), self._target_port(pod, port)
            if number == target or any(f.port == number for f in pod.forwards):
                continue
            assert pod.holder is not None
            pod.forwards.append(PortForward(pod.holder.pid, pod.ip, number, target))

    def service_env(self, pod: Pod) -> dict[str, str]:
        """The ``<SVC>_SERVICE_HOST``-style variables of ``enableServiceLinks``."""
        env: dict[str, str] = {}
        if pod.spec.get("enableServiceLinks", True) is False:
            return env
        for svc in self.store.of_kind("Service"):
            spec = svc.get("spec", {})
            if spec.get("clusterIP") == "None":
                continue
            target = pod if selects(spec.get("selector") or {}, pod.labels) else self._service_pod(svc)
            if target is None:
                continue
            prefix = svc["metadata"]["name"].upper().replace("-", "_")
            ports = spec.get("ports") or []
            if not ports:
                continue
            ip = target.ip
            env[f"{prefix}_SERVICE_HOST"] = ip
            env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
            env[f"{prefix}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
            for p in ports:
                proto = p.get("protocol", "TCP")
                base = f"{prefix}_PORT_{p['port']}_{proto}"
                if p.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
                env |= {
                    base: f"{proto.lower()}://{ip}:{p['port']}",
                    f"{base}_PROTO": proto.lower(),
                    f"{base}_PORT": str(p["port"]),
                    f"{base}_ADDR": ip,
                }
        return env

    # -- volumes -----------------------------------------------------------------

    def volumes_for(self, pod: Pod) -> dict[str, tuple[Path, bool]]:
        """Materialise the pod's volumes: name -> (host path, read-only)."""
        out: dict[str, tuple[Path, bool]] = {}
        fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
        for vol in pod.spec.get("volumes") or []:
            name = vol["name"]
            path = pod.dir / "volumes" / name
            if "emptyDir" in vol:
                path.mkdir(parents=True)
                path.chmod(0o777)
                out[name] = (path, False)
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                path = self.pvc_dir(claim)
                path.mkdir(parents=True, exist_ok=True)
                out[name] = (path, bool(vol["persistentVolumeClaim"].get("readOnly")))
            elif {"configMap", "secret", "projected", "downwardAPI"} & set(vol):
                path.mkdir(parents=True)
                self._project(pod, vol, path)
                out[name] = (path, True)
            else:
                raise PodError(f"pod {pod.name}: volume {name}: unsupported type {sorted(vol)}")
            if fs_group is not None and not out[name][1]:
                for p in [path, *path.rglob("*")]:
                    os.chown(p, -1, int(fs_group))
                    os.chmod(p, os.stat(p).st_mode | 0o2070 if p.is_dir() else os.stat(p).st_mode | 0o060)
            elif fs_group is not None and path.is_relative_to(pod.dir):
                # Secret and configMap volumes: the kubelet gives them the fsGroup as owning
                # group, keeping the projected modes (so 0440 is readable by the pod's user).
                for p in [path, *path.rglob("*")]:
                    os.chown(p, -1, int(fs_group))
        return out

    def _project(self, pod: Pod, vol: Obj, path: Path) -> None:
        sources: list[tuple[str, Obj]] = []
        default_mode = 0o644
        if "projected" in vol:
            default_mode = int(vol["projected"].get("defaultMode", default_mode))
            sources = [(k, v) for s in vol["projected"].get("sources") or [] for k, v in s.items()]
        else:
            kind = next(k for k in ("configMap", "secret", "downwardAPI") if k in vol)
            sources = [(kind, vol[kind])]
            default_mode = int(vol[kind].get("defaultMode", default_mode))
        for kind, src in sources:
            files: dict[str, tuple[bytes, int | None]] = {}
            if kind == "downwardAPI":
                for item in src.get("items") or []:
                    value = (
                        self._field(pod, item["fieldRef"]["fieldPath"])
                        if "fieldRef" in item
                        else self._resource(pod, item["resourceFieldRef"])
                    )
                    files[item["path"]] = (value.encode(), item.get("mode"))
            elif kind in ("configMap", "secret"):
                obj_kind = "ConfigMap" if kind == "configMap" else "Secret"
                obj_name = src.get("name") or src.get("secretName")
                data = self.store.data(obj_kind, obj_name)
                if data is None:
                    if src.get("optional"):
                        continue
                    raise PodError(f"pod {pod.name}: volume {vol['name']}: {obj_kind} {obj_name!r} not found")
                items = src.get("items")
                if items is None:
                    files = {k: (v, None) for k, v in data.items()}
                for item in items or []:
                    if item["key"] not in data:
                        if src.get("optional"):
                            continue
                        raise PodError(
                            f"pod {pod.name}: volume {vol['name']}: {obj_kind} "
                            f"{obj_name!r} has no key {item['key']!r}"
                        )
                    files[item["path"]] = (data[item["key"]], item.get("mode"))
            else:
                raise PodError(f"pod {pod.name}: volume {vol['name']}: unsupported projection {kind}")
            for rel, (content, mode) in files.items():
                target = path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
                target.chmod(int(mode) if mode is not None else default_mode)

    # -- env ---------------------------------------------------------------------

    def _field(self, pod: Pod, path: str) -> str:
        simple = {
            "metadata.name": pod.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": pod.uid,
            "spec.nodeName": "podrunner",
            "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default"),
            "status.podIP": pod.ip,
            "status.podIPs": pod.ip,
            "status.hostIP": self.network.gateway,
        }
        if path in simple:
            return simple[path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return str((self.meta_of(pod, match.group(1))).get(match.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations"):
            values = self.meta_of(pod, path.split(".")[1])
            return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
        raise PodError(f"pod {pod.name}: unsupported fieldRef {path!r}")

    @staticmethod
    def meta_of(pod: Pod, key: str) -> dict[str, str]:
        return pod.meta.get(key) or {}

    def _resource(self, pod: Pod, ref: Obj, container: Obj | None = None) -> str:
        if container is None:
            name = ref.get("containerName")
            container = next((c.spec for c in pod.containers if c.name == name), {})
        kind, res = ref["resource"].split(".", 1)
        value = (container.get("resources") or {}).get(kind, {}).get(res)
        if value is None:
            value = (
                os.cpu_count() if res == "cpu" else os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            )
        divisor = _quantity(ref.get("divisor", 1))
        amount = _quantity(value) / divisor
        return str(int(-(-amount // 1)))

    def container_env(self, pod: Pod, c: Container) -> dict[str, str]:
        env: dict[str, str] = {}
        for src in c.spec.get("envFrom") or []:
            kind, ref = (
                ("ConfigMap", src["configMapRef"]) if "configMapRef" in src else ("Secret", src["secretRef"])
            )
            data = self.store.data(kind, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise PodError(f"envFrom: {kind} {ref['name']!r} not found")
            env |= {src.get("prefix", "") + k: v.decode() for k, v in data.items()}
        for item in c.spec.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = expand(str(item.get("value", "")), env)
                continue
            vf = item["valueFrom"]
            if "fieldRef" in vf:
                env[name] = self._field(pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                env[name] = self._resource(pod, vf["resourceFieldRef"], c.spec)
            else:
                kind, ref = (
                    ("ConfigMap", vf["configMapKeyRef"])
                    if "configMapKeyRef" in vf
                    else ("Secret", vf["secretKeyRef"])
                )
                data = self.store.data(kind, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    what = "not found" if data is None else f"has no key {ref['key']!r}"
                    raise PodError(f"env {name}: {kind} {ref['name']!r} {what}")
                env[name] = data[ref["key"]].decode()
        return env

    # -- the sandbox -------------------------------------------------------------

    def identity(self, pod: Pod, c: Container, image: image_table.Image) -> Identity:
        """Who the container's process is: the securityContext over the image's USER.

        As the kubelet: ``runAsUser``/``runAsGroup`` win over the image's ``USER``; the group
        of a user without one is the user's group in the image's /etc/passwd, else 0;
        ``runAsNonRoot`` refuses uid 0 and a non-numeric image user it cannot verify.
        """
        pod_ctx = pod.spec.get("securityContext") or {}
        ctx = pod_ctx | (c.spec.get("securityContext") or {})
        image_user, _, image_group = image.user.partition(":")
        image_uid: int | None = None
        image_gid: int | None = None
        if image_user.isdigit():
            image_uid = int(image_user)
        elif image_user:
            named = next((a for a in image.accounts if a.name == image_user), None)
            if named is None:
                raise PodError(
                    f"image {image.ref} runs as user {image_user!r}, which its /etc/passwd does not have"
                )
            image_uid, image_gid = named.uid, named.gid
        if image_group:
            image_gid = int(image_group) if image_group.isdigit() else image.groups.get(image_group)
        uid = ctx.get("runAsUser")
        if uid is None:
            if ctx.get("runAsNonRoot") and image_user and not image_user.isdigit():
                raise PodError(
                    f"container has runAsNonRoot and image has non-numeric user "
                    f"({image_user}), cannot verify user is non-root"
                )
            uid = image_uid or 0
        if ctx.get("runAsNonRoot") and int(uid) == 0:
            raise PodError("container has runAsNonRoot and image will run as root")
        gid = ctx.get("runAsGroup")
        if gid is None:
            if ctx.get("runAsUser") is None and image_gid is not None:
                gid = image_gid
            else:
                entry = image.account(int(uid))
                gid = entry.gid if entry else 0
        groups = [
            int(g)
            for g in [pod_ctx.get("fsGroup"), *(pod_ctx.get("supplementalGroups") or [])]
            if g is not None
        ]
        no_new_privs = ctx.get("allowPrivilegeEscalation") is False
        return Identity(int(uid), int(gid), groups, no_new_privs)

    def exec_argv(self, who: Identity, argv: list[str]) -> list[str]:
        """The container-side command: the exec helper, by its descriptor, then ``argv``."""
        return [
            f"/proc/self/fd/{self.shim.fd}",
            str(who.uid),
            str(who.gid),
            ",".join(map(str, who.groups)) or "-",
            "1" if who.no_new_privs else "0",
            "--",
            *argv,
        ]

    def container_command(
        self, pod: Pod, c: Container
    ) -> tuple[list[str], dict[str, str], list[str], Identity]:
        """The argv, the environment, the host command line and the user of a container.

        The container's root is its image's root filesystem under an overlay of its own
        (``readOnlyRootFilesystem`` remounts it read-only), volumes are mounted on top, and
        nothing of the host is visible but /proc, /dev and /sys.
        """
        image = self.images.resolve(self.mirror(str(c.spec.get("image", ""))))
        env = dict(image.env)
        env |= {"HOSTNAME": pod.spec.get("hostname", pod.name)}
        env |= self.service_env(pod)
        env |= self.container_env(pod, c)
        who = self.identity(pod, c, image)
        if "HOME" not in env:
            entry = image.account(who.uid)
            env["HOME"] = entry.home if entry else "/"
        env.setdefault("PATH", DEFAULT_PATH)
        if "command" in c.spec:
            argv = [*c.spec["command"], *c.spec.get("args", [])]
        else:
            argv = [*image.entrypoint, *c.spec.get("args", image.cmd)]
        argv = [expand(str(a), env) for a in argv]
        if not argv:
            raise PodError("no command: neither the spec nor the image names one")
        workdir = c.spec.get("workingDir") or image.workdir
        ctx = c.spec.get("securityContext") or {}
        read_only = bool(ctx.get("readOnlyRootFilesystem"))

        mounts: list[tuple[str, str, Path]] = []  # (kind, target, source)
        for m in c.spec.get("volumeMounts") or []:
            if m["name"] not in pod.volumes:
                raise PodError(f"volumeMount {m['mountPath']} names unknown volume {m['name']!r}")
            source, vol_ro = pod.volumes[m["name"]]
            sub = m.get("subPath") or expand(m.get("subPathExpr") or "", env)
            if sub:
                source = source / sub
                if not source.exists():
                    if vol_ro:
                        raise PodError(f"subPath {sub!r} does not exist in volume {m['name']}")
                    source.mkdir(parents=True)
            kind = "--ro-bind" if vol_ro or m.get("readOnly") else "--bind"
            mounts.append((kind, m["mountPath"], source))
        hostname = pod.dir / "hostname"
        hostname.write_text(pod.spec.get("hostname", pod.name) + "\n")
        mounts += [("--ro-bind", "/etc/hosts", pod.hosts), ("--ro-bind", "/etc/hostname", hostname)]
        if not pod.hosts.exists():
            pod.hosts.write_text("127.0.0.1\tlocalhost\n")
            self.pod_network_changed()

        layer = pod.dir / "rootfs" / f"{c.name}-{len(c.exit_codes)}"
        for part in ("upper", "work", "merged"):
            (layer / part).mkdir(parents=True, exist_ok=True)
        overlay = f"lowerdir={image.root},upperdir={layer / 'upper'},workdir={layer / 'work'}"
        args = [
            UNSHARE,
            "--mount",
            "--propagation",
            "private",
            "--",
            BASH,
            "-c",
            'mount -t overlay overlay -o "$1" "$2" && shift 2 && exec "$@"',
            "overlay",
            overlay,
            str(layer / "merged"),
            BWRAP,
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--hostname",
            pod.spec.get("hostname", pod.name),
            "--bind",
            str(layer / "merged"),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--ro-bind",
            "/sys",
            "/sys",
        ]
        # Mount points the image lacks: made 0755, as a container runtime makes them.
        missing = sorted(
            {
                str(d)
                for _, target, _ in mounts
                for d in [*Path(target).parents, Path(target)]
                if str(d) != "/" and not os.path.lexists(image.root / str(d)[1:])
            },
            key=lambda d: d.count("/"),
        )
        for directory in missing:
            if any(t == directory for _, t, s in mounts if s.is_file()):
                continue
            args += ["--perms", "0755", "--dir", directory]
        for kind, target, source in sorted(mounts, key=lambda m: m[1].count("/")):
            args += [kind, str(source), target]
        if read_only:
            args += ["--remount-ro", "/"]
        args += ["--chdir", workdir, "--", *self.exec_argv(who, argv)]
        return argv, env, args, who


@dataclass(frozen=True)
class Identity:
    """The user a container's process runs as."""

    uid: int
    gid: int
    groups: list[int]
    no_new_privs: bool


class ExecShim:
    """``exec.c`` beside this file, compiled once (statically) and held open.

    Containers start it through ``/proc/self/fd/N``: it is never in an image's filesystem.
    """

    SOURCE = Path(__file__).with_name("exec.c")

    def __init__(self) -> None:
        source = self.SOURCE.read_bytes()
        binary = RUN_DIR / f"exec-{hashlib.sha256(source).hexdigest()[:16]}"
        if not binary.exists():
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            tmp = binary.with_suffix(f".{os.getpid()}")
            done = subprocess.run(
                [CC, "-static", "-O2", "-o", str(tmp), str(self.SOURCE)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise PodError(
                    f"cannot compile {self.SOURCE} (gcc and libc6-dev, installed "
                    f"by scripts/install-system-deps.sh): {done.stderr.strip()}"
                )
            tmp.replace(binary)
        self.fd = os.open(binary, os.O_RDONLY)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
