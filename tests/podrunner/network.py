"""The pod network: a private bridge, one address and network namespace per pod.

``Network`` makes the bridge and each pod's veth; ``PortForward`` forwards a Service port
that differs from its target port on the pod's address. ``pod_network_changed`` rewrites
every pod's ``/etc/hosts`` (Service names, StatefulSet pods through their headless
Service) and loads each pod's NetworkPolicy rules (``tests/podrunner/netpol.py``) into its
network namespace with nftables. ``partition``/``heal`` cut a pod off the network (an
nftables table of their own in its network namespace) and join it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tests.podrunner import netpol
from tests.podrunner.common import IP, NFT, NSENTER, RUN_DIR, Obj, PodError, _pid_alive, _run
from tests.podrunner.objects import selects

if TYPE_CHECKING:
    from tests.podrunner.pod import Pod
    from tests.podrunner.runner import PodRunner

SUBNET_BASE = ipaddress.ip_network("10.213.0.0/16")
CLONE_NEWNET = 0x40000000


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
        # Whatever the host's ip_forward says, nothing from these pods is routed on (to another
        # test's pod network, or off the host).
        # (A host whose /proc/sys is read-only keeps its own setting.)
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/forwarding").write_text("0")
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
    """Listen on ``port`` inside a pod's network namespace, forward to ``target``.

    Without a ``holder_pid`` it listens on the host instead (``port`` 0: any free port).
    """

    def __init__(self, holder_pid: int | None, address: str, port: int, target: int) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        #: Why the last connection was closed unforwarded (no endpoint, or the connect's error).
        self.last_failure = ""
        self._sock: socket.socket | None = None
        self.address, self.port, self.target = address, port, target
        self._thread = threading.Thread(target=self._serve, args=(holder_pid,), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error

    def _destination(self) -> tuple[str, int] | None:
        return self.address, self.target

    def _serve(self, holder_pid: int | None) -> None:
        try:
            if holder_pid is not None:
                _in_netns(holder_pid)
                sock = socket.create_server(("0.0.0.0", self.port), reuse_port=False)
            else:
                sock = socket.create_server(("127.0.0.1", self.port))
                self.port = sock.getsockname()[1]
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
            destination = self._destination()
            try:
                if destination is None:
                    raise OSError("no endpoint")
                upstream = socket.create_connection(destination, timeout=5)
            except OSError as exc:
                self.last_failure = f"{destination}: {exc}"
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


class ServiceBalancer(PortForward):
    """A Service's address for clients on the host, as kube-proxy gives one: each new
    connection goes to the next ready pod the Service selects (round robin), so a pod that
    is not ready or gone gets no new connections while the others keep serving."""

    def __init__(self, runner: PodRunner, svc: Obj, port: int) -> None:
        self._runner, self._svc = runner, svc
        ports = [p for p in svc["spec"].get("ports") or [] if int(p["port"]) == port]
        if not ports:
            raise PodError(f"Service {svc['metadata']['name']} has no port {port}")
        self._service_port = ports[0]
        self._turn = 0
        super().__init__(None, "127.0.0.1", 0, port)

    def _destination(self) -> tuple[str, int] | None:
        selector = self._svc.get("spec", {}).get("selector") or {}
        with self._runner._lock:
            pods = sorted(
                (p for p in self._runner.pods.values() if p.is_ready() and selects(selector, p.labels)),
                key=lambda p: p.name,
            )
        if not pods:
            return None
        pod = pods[self._turn % len(pods)]
        self._turn += 1
        return pod.ip, _target_port(self._runner, pod, self._service_port)


def service_pod(runner: PodRunner, svc: Obj) -> Pod | None:
    selector = svc.get("spec", {}).get("selector") or {}
    with runner._lock:
        live = [p for p in runner.pods.values() if not p.finished and p.holder]
    for pod in sorted(live, key=lambda p: p.name):
        if selects(selector, pod.labels):
            return pod
    return None


def _target_port(runner: PodRunner, pod: Pod, port: Obj) -> int:
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


def pod_network_changed(runner: PodRunner) -> None:
    """Rewrite every pod's /etc/hosts and the Service port forwards."""
    with runner._lock:
        pods = [p for p in runner.pods.values() if p.holder and not p.finished]
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        # A pod is known by name to others only through its headless Service.
        headless = {
            s["metadata"]["name"]
            for s in runner.store.of_kind("Service")
            if s.get("spec", {}).get("clusterIP") == "None"
        }
        for pod in pods:
            sub = pod.spec.get("subdomain")
            if sub in headless:
                host = pod.spec.get("hostname", pod.name)
                names = [
                    f"{host}.{sub}",
                    f"{host}.{sub}.{runner.namespace}",
                    f"{host}.{sub}.{runner.namespace}.svc",
                    f"{host}.{sub}.{runner.namespace}.svc.cluster.local",
                ]
                lines.append(f"{pod.ip}\t{' '.join(names)}")
        if runner.kube is not None:
            names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc"]
            names.append("kubernetes.default.svc.cluster.local")
            lines.append(f"{runner.kube.endpoint.host}\t{' '.join(names)}")
        for svc in runner.store.of_kind("Service"):
            target = service_pod(runner, svc)
            if target is None:
                continue
            n, ns = svc["metadata"]["name"], runner.namespace
            lines.append(f"{target.ip}\t{n} {n}.{ns} {n}.{ns}.svc {n}.{ns}.svc.cluster.local")
            _forward_ports(runner, svc, target)
        for pod in pods:
            own = f"{pod.ip}\t{pod.spec.get('hostname', pod.name)}"
            if pod.hosts.parent.exists():
                with pod.hosts.open("w") as f:
                    f.write("\n".join([*lines, own]) + "\n")
        if runner.network_policy:
            _enforce_network_policy(runner, pods)


def _enforce_network_policy(runner: PodRunner, pods: list[Pod]) -> None:
    """Load each running pod's NetworkPolicy rules into its network namespace."""
    policies = []
    for policy in runner.store.of_kind("NetworkPolicy"):
        policy = json.loads(json.dumps(policy))
        policy["metadata"].setdefault("namespace", runner.namespace)
        policies.append(policy)
    endpoints = {}
    for pod in pods:
        aliases: dict[int, tuple[int, ...]] = {}
        for fwd in pod.forwards:
            aliases[fwd.target] = (*aliases.get(fwd.target, ()), fwd.port)
        endpoints[pod.name] = netpol.Endpoint.of(
            pod.name, pod.namespace, pod.labels, pod.ip, pod.spec, aliases
        )
    cluster = netpol.Cluster(endpoints.values(), runner.namespaces, policies)
    for pod in pods:
        rules = netpol.ruleset(cluster, endpoints[pod.name], runner.network.gateway)
        if rules != pod.nft_rules and pod.holder is not None:
            _run(NSENTER, f"--net=/proc/{pod.holder.pid}/ns/net", NFT, "-f", "-", stdin=rules)
            pod.nft_rules = rules


#: The table ``partition`` loads; NetworkPolicy's (``inet podrunner``) is another, so a policy
#: reload leaves the cut in place. Its chains come first (priority -10) and drop everything but
#: loopback: no reset, no ICMP, so peers and open connections time out as on a real cut.
PARTITION_TABLE = "podrunner-partition"
PARTITION_RULES = f"""table inet {PARTITION_TABLE} {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iif lo accept
    drop
  }}
  chain output {{
    type filter hook output priority -10; policy accept;
    oif lo accept
    drop
  }}
}}
"""


def partition(pod: Pod) -> None:
    """Drop every packet into and out of the pod's network namespace but loopback's."""
    if pod.holder is None or pod.holder.poll() is not None:
        raise PodError(f"pod {pod.name} has no network namespace to cut")
    ns = f"--net=/proc/{pod.holder.pid}/ns/net"
    script = f"table inet {PARTITION_TABLE}\ndelete table inet {PARTITION_TABLE}\n{PARTITION_RULES}"
    _run(NSENTER, ns, NFT, "-f", "-", stdin=script)


def heal(pod: Pod) -> None:
    """Undo ``partition``: the pod's packets flow again (open connections resume)."""
    if pod.holder is None or pod.holder.poll() is not None:
        return
    ns = f"--net=/proc/{pod.holder.pid}/ns/net"
    script = f"table inet {PARTITION_TABLE}\ndelete table inet {PARTITION_TABLE}\n"
    _run(NSENTER, ns, NFT, "-f", "-", stdin=script)


def _forward_ports(runner: PodRunner, svc: Obj, pod: Pod) -> None:
    for port in svc["spec"].get("ports") or []:
        number, target = int(port["port"]), _target_port(runner, pod, port)
        if number == target or any(f.port == number for f in pod.forwards):
            continue
        assert pod.holder is not None
        pod.forwards.append(PortForward(pod.holder.pid, pod.ip, number, target))
