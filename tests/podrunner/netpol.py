"""NetworkPolicy for the pod runner, enforced as a policy-enforcing network plugin does.

Each pod gets an nftables table in its own network namespace: an `input` chain for ingress
and an `output` chain for egress. Kubernetes semantics (networking.k8s.io/v1):

- a pod selected by any policy whose `policyTypes` include a direction is isolated in that
  direction; otherwise everything passes that way;
- an isolated pod accepts what at least one rule of one selecting policy allows (policies are
  additive): peers by `podSelector` (the policy's namespace), `namespaceSelector` (namespaces
  by their labels, `kubernetes.io/metadata.name` included), both together (pods matching the
  first in namespaces matching the second), `ipBlock` with `except`; a rule without peers
  allows every source or destination; ports by number or name (a named port is looked up in
  the containers of the pod that owns it), `protocol` (TCP when unset) and `endPort`; a rule
  without ports allows every port;
- replies of allowed connections pass (conntrack `established,related`).

What it does not model (docs/pod-runner.md): traffic from the node is always accepted (the
kubelet's probes, as most plugins allow), a pod always reaches itself, policies are read when
pods start or stop (a policy applied later takes effect at the next pod change), and SCTP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A running pod as policies see it."""

    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    #: container port name -> (number, protocol)
    named_ports: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: target port -> Service ports forwarded to it inside the pod (the runner's stand-in for
    #: a Service's port mapping: a packet to the Service port counts as one to the target)
    aliases: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        name: str,
        namespace: str,
        labels: dict[str, str],
        ip: str,
        spec: Obj,
        aliases: dict[int, tuple[int, ...]] | None = None,
    ) -> Endpoint:
        ports = {
            p["name"]: (int(p["containerPort"]), p.get("protocol", "TCP"))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            for p in c.get("ports") or []
            if p.get("name")
        }
        return cls(name, namespace, dict(labels), ip, ports, aliases or {})


def selects(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions); an empty one selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"label selector operator {op!r} is not one Kubernetes has")
    return True


def policy_types(policy: Obj) -> list[str]:
    """`policyTypes`, or what Kubernetes defaults it to: Ingress, plus Egress with egress rules."""
    spec = policy.get("spec") or {}
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


@dataclass(frozen=True)
class Allow:
    """One allowed (peer, port) combination: addresses, and a protocol with a port range
    (None for every port of every protocol)."""

    nets: tuple[str, ...]
    protocol: str | None = None
    ports: tuple[int, int] | None = None


class Cluster:
    """Pods, namespaces (name -> labels) and policies; answers what each pod lets through."""

    def __init__(
        self, endpoints: Iterable[Endpoint], namespaces: dict[str, dict[str, str]], policies: Iterable[Obj]
    ) -> None:
        self.endpoints = list(endpoints)
        self.namespaces = {
            ns: {**labels, "kubernetes.io/metadata.name": ns} for ns, labels in namespaces.items()
        }
        for ep in self.endpoints:
            self.namespaces.setdefault(ep.namespace, {"kubernetes.io/metadata.name": ep.namespace})
        self.policies = list(policies)

    def selecting(self, pod: Endpoint, direction: str) -> list[Obj]:
        return [
            p
            for p in self.policies
            if p["metadata"].get("namespace", pod.namespace) == pod.namespace
            and direction in policy_types(p)
            and selects((p.get("spec") or {}).get("podSelector"), pod.labels)
        ]

    def _peers(self, peer: Obj, policy_ns: str) -> list[Endpoint] | tuple[str, ...]:
        """The pods a peer entry names, or (for ipBlock) the networks it allows."""
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            nets = [ipaddress.ip_network(block["cidr"], strict=False)]
            for cut in block.get("except") or []:
                hole = ipaddress.ip_network(cut, strict=False)
                nets = [
                    piece
                    for net in nets
                    for piece in (net.address_exclude(hole) if hole.subnet_of(net) else [net])
                ]  # type: ignore[arg-type]
            return tuple(str(n) for n in nets)
        if "namespaceSelector" in peer:
            spaces = {
                ns for ns, labels in self.namespaces.items() if selects(peer["namespaceSelector"], labels)
            }
        else:
            spaces = {policy_ns}
        return [
            ep
            for ep in self.endpoints
            if ep.namespace in spaces and selects(peer.get("podSelector"), ep.labels)
        ]

    def allowed(self, pod: Endpoint, direction: str) -> list[Allow] | None:
        """What ``pod`` accepts (Ingress) or may send (Egress); None when it is not isolated."""
        policies = self.selecting(pod, direction)
        if not policies:
            return None
        key = "ingress" if direction == "Ingress" else "egress"
        side = "from" if direction == "Ingress" else "to"
        out: list[Allow] = []
        for policy in policies:
            ns = policy["metadata"].get("namespace", pod.namespace)
            for rule in (policy.get("spec") or {}).get(key) or []:
                peers: list[tuple[tuple[str, ...], Endpoint | None]] = []
                if not rule.get(side):
                    peers.append((("0.0.0.0/0",), None))
                for peer in rule.get(side) or []:
                    found = self._peers(peer, ns)
                    if isinstance(found, tuple):
                        peers.append((found, None))
                    else:
                        peers.extend(((f"{ep.ip}/32",), ep) for ep in found)
                # a named port belongs to the destination: this pod (ingress) or the peer (egress)
                for nets, peer_pod in peers:
                    owner = pod if direction == "Ingress" else peer_pod
                    out.extend(Allow(nets, proto, rng) for proto, rng in _ports(rule, owner))
        return out


def _ports(rule: Obj, owner: Endpoint | None) -> Iterator[tuple[str | None, tuple[int, int] | None]]:
    if not rule.get("ports"):
        yield None, None
        return
    for port in rule["ports"]:
        proto = port.get("protocol", "TCP")
        value = port.get("port")
        if value is None:
            yield proto, None
        elif isinstance(value, int) or str(value).isdigit():
            first = int(value)
            last = int(port.get("endPort", first))
            yield proto, (first, last)
            if owner is not None:
                for alias in owner.aliases.get(first, ()):
                    yield proto, (alias, alias)
        elif owner is not None and value in owner.named_ports:
            number, named_proto = owner.named_ports[value]
            if named_proto == proto:
                yield proto, (number, number)
                for alias in owner.aliases.get(number, ()):
                    yield proto, (alias, alias)
        # a named port the owner does not have (or an ipBlock peer's) allows nothing


def ruleset(cluster: Cluster, pod: Endpoint, node: str) -> str:
    """The nftables script for ``pod``'s network namespace (replaces the table it made before)."""
    lines = ["table inet podrunner", "delete table inet podrunner", "table inet podrunner {"]
    for direction, hook, addr, iface in (
        ("Ingress", "input", "saddr", "iif"),
        ("Egress", "output", "daddr", "oif"),
    ):
        allows = cluster.allowed(pod, direction)
        lines.append(f"  chain {hook} {{")
        lines.append(f"    type filter hook {hook} priority 0; policy accept;")
        if allows is not None:
            lines.append(f"    {iface} lo accept")
            lines.append("    ct state established,related accept")
            if direction == "Ingress":
                lines.append(f"    ip saddr {node} accept")
            for allow in allows:
                nets = ", ".join(allow.nets)
                match = f"ip {addr} {{ {nets} }}"
                if allow.protocol is None:
                    lines.append(f"    {match} accept")
                elif allow.ports is None:
                    lines.append(f"    {match} meta l4proto {allow.protocol.lower()} accept")
                else:
                    first, last = allow.ports
                    span = str(first) if first == last else f"{first}-{last}"
                    lines.append(f"    {match} {allow.protocol.lower()} dport {span} accept")
            lines.append("    drop")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
