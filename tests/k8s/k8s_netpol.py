"""Evaluate Kubernetes NetworkPolicies (networking.k8s.io/v1 semantics) over a model of pods
and external addresses, and list every connection they allow."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from typing import Any

from tests.k8s.k8s_objects import matches

Obj = dict[str, Any]
NS_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclasses.dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None)."""

    name: str
    ip: str
    ports: tuple[Port, ...]
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def pod(name: str, namespace: str, labels: dict[str, str], ip: str, ports: Iterable[Port]) -> Endpoint:
    return Endpoint(name, ip, tuple(ports), namespace, tuple(sorted(labels.items())))


def external(name: str, ip: str, ports: Iterable[Port]) -> Endpoint:
    return Endpoint(name, ip, tuple(ports))


def policy_types(policy: Obj) -> set[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


def _peer_matches(peer: Obj, policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if not other.is_pod:
        return False  # pod and namespace selectors select pods only
    if "namespaceSelector" in peer:
        ns_labels = {NS_NAME_LABEL: other.namespace}
        if not matches(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    if "podSelector" in peer:
        return matches(peer["podSelector"], other.label_map)
    return True


def _port_matches(rule_ports: list[Obj] | None, dst: Endpoint, port: Port) -> bool:
    if not rule_ports:
        return True
    for item in rule_ports:
        if item.get("protocol", "TCP") != port.protocol:
            continue
        wanted = item.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):  # a named port resolves on the destination pod
            if dst.is_pod and port.name == wanted:
                return True
            continue
        if wanted <= port.number <= item.get("endPort", wanted):
            return True
    return False


def _selects(policy: Obj, endpoint: Endpoint) -> bool:
    return (
        endpoint.is_pod
        and policy["metadata"]["namespace"] == endpoint.namespace
        and matches(policy["spec"]["podSelector"], endpoint.label_map)
    )


def _allowed(policies: list[Obj], subject: Endpoint, other: Endpoint, dst: Endpoint, port: Port,
             direction: str) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [p for p in policies if direction in policy_types(p) and _selects(p, subject)]
    if not selecting:
        return True  # not isolated in this direction
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(
                _peer_matches(peer, policy["metadata"]["namespace"], other) for peer in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), dst, port):
                return True
    return False


def allowed_edges(policies: list[Obj], endpoints: list[Endpoint], *, among: str) -> set[tuple[str, str, int, str]]:
    """Every (source, destination, port, protocol) the policies admit, over the declared ports
    of each destination, for connections with at least one end in namespace `among`.
    Connections start at pods only (outside addresses are destinations)."""
    edges = set()
    for src in endpoints:
        if not src.is_pod:
            continue
        for dst in endpoints:
            if among not in (src.namespace, dst.namespace):
                continue
            for port in dst.ports:
                if (
                    _allowed(policies, src, dst, dst, port, "Egress")
                    and (not dst.is_pod or _allowed(policies, dst, src, dst, port, "Ingress"))
                ):
                    edges.add((src.name, dst.name, port.number, port.protocol))
    return edges
