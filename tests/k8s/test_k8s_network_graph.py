"""The NetworkPolicies admit exactly the intended traffic: compute the connection graph the
rendered policies allow, over the rendered pods plus the pods and addresses around them, and
compare it edge by edge with the graph we mean (deploy/k8s/base/network-policies.yaml)."""

from __future__ import annotations

import itertools

import pytest
from tests.k8s.k8s_render import NAMESPACE
from tests.k8s.k8s_netpol import Endpoint, Port, allowed_edges, external, pod
from tests.k8s.k8s_objects import containers, of_kind, pod_labels, workloads

APP = "app.kubernetes.io/name"
# A port nothing declares: no policy may open it (catches rules without a port list).
STRAY = Port(9999, "TCP", "stray")

# Pods outside the namespace, and look-alikes that must get nothing.
NEIGHBOURS = [
    pod("ingress-nginx", "ingress-nginx", {APP: "ingress-nginx"}, "10.244.9.1", [Port(80), Port(443)]),
    pod("prometheus", "monitoring", {APP: "prometheus"}, "10.244.9.2", [Port(9090)]),
    pod("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, "10.244.9.3",
        [Port(53, "UDP"), Port(53, "TCP")]),
    # Right namespace, wrong labels: the monitoring namespace as such is not trusted.
    pod("grafana", "monitoring", {APP: "grafana"}, "10.244.9.8", [Port(3000)]),
    # Right labels, wrong namespace: a namespace selector must be what lets these in.
    pod("fake-prometheus", "default", {APP: "prometheus"}, "10.244.9.4", [Port(9090)]),
    pod("fake-gateway", "default", {APP: "gateway"}, "10.244.9.5", [Port(8080)]),
    pod("fake-ingress", "default", {APP: "ingress-nginx"}, "10.244.9.6", [Port(80)]),
    # An OpenTelemetry collector (components/tracing), and one in the wrong namespace.
    pod("otel-collector", "observability", {APP: "opentelemetry-collector"}, "10.244.9.9",
        [Port(4318), Port(4317)]),
    pod("fake-collector", "default", {APP: "opentelemetry-collector"}, "10.244.9.10", [Port(4318)]),
    # Any other pod in our namespace (a debug shell, a compromised sidecar-less job).
    pod("stranger", NAMESPACE, {APP: "debug"}, "10.244.9.7", [Port(8000)]),
]
EXTERNAL = [  # prod's managed stores (see overlays/prod/network-policies.yaml) and the internet
    external("ext:auth-db", "192.0.2.10", [Port(5432)]),
    external("ext:users-db", "192.0.2.11", [Port(5432)]),
    external("ext:orders-db", "192.0.2.12", [Port(5432)]),
    external("ext:redis", "192.0.2.20", [Port(6379)]),
    # An external sign-in provider's HTTPS endpoint (components/external-signin/network-policy.yaml).
    external("ext:oidc-provider", "198.51.100.7", [Port(443)]),
    external("internet", "203.0.113.7", [Port(443), Port(5432)]),
]

APPS = ("gateway", "auth", "users", "orders")
COMMON_EDGES = {
    ("ingress-nginx", "gateway", 8080, "TCP"),
    # Prometheus reaches each component's admin port (health and metrics) and no API port:
    # backends trust X-User-* headers from whoever reaches their API.
    ("prometheus", "gateway", 9080, "TCP"),
    ("prometheus", "auth", 9090, "TCP"),
    ("prometheus", "users", 9090, "TCP"),
    ("prometheus", "orders", 9090, "TCP"),
    ("gateway", "auth", 8081, "TCP"),
    ("gateway", "users", 8082, "TCP"),
    ("gateway", "orders", 8083, "TCP"),
    ("auth", "users", 8082, "TCP"),
} | {(app, "kube-dns", 53, proto) for app in APPS for proto in ("UDP", "TCP")}

INTENDED = {
    "dev": COMMON_EDGES | {
        ("auth", "auth-db", 5432, "TCP"),
        ("users", "users-db", 5432, "TCP"),
        ("orders", "orders-db", 5432, "TCP"),
        ("gateway", "redis", 6379, "TCP"),
        ("auth", "redis", 6379, "TCP"),
    },
    "prod": COMMON_EDGES | {
        ("auth", "ext:auth-db", 5432, "TCP"),
        ("users", "ext:users-db", 5432, "TCP"),
        ("orders", "ext:orders-db", 5432, "TCP"),
        ("gateway", "ext:redis", 6379, "TCP"),
        ("auth", "ext:redis", 6379, "TCP"),
    },
}
# prod with external sign-in: auth, and nothing else, reaches the providers, on 443 only.
INTENDED["external-signin"] = INTENDED["prod"] | {("auth", "ext:oidc-provider", 443, "TCP")}
# prod with trace export: each component reaches the collector's OTLP/HTTP port, nothing more
# (not its gRPC port, not a look-alike elsewhere); without the component, none reaches it.
INTENDED["tracing"] = INTENDED["prod"] | {(app, "otel-collector", 4318, "TCP") for app in APPS}


def our_pods(objects: list[dict]) -> list[Endpoint]:
    """One pod per rendered workload (replicas share labels, so one stands for all)."""
    pods = []
    for index, workload in enumerate(workloads(objects)):
        ports = [
            Port(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
            for c in containers(workload) for p in c.get("ports", [])
        ]
        pods.append(pod(workload["metadata"]["name"], NAMESPACE, pod_labels(workload),
                        f"10.244.1.{index + 1}", ports + [STRAY]))
    return pods


def graph(objects: list[dict]) -> set[tuple[str, str, int, str]]:
    stray = [
        Endpoint(e.name, e.ip, e.ports + (STRAY,), e.namespace, e.labels)
        for e in NEIGHBOURS + EXTERNAL
    ]
    return allowed_edges(of_kind(objects, "NetworkPolicy"), our_pods(objects) + stray, among=NAMESPACE)


def test_policies_admit_exactly_the_intended_graph(overlay):
    """Allowed edges == intended edges, reported edge by edge."""
    name, objects = overlay
    allowed = graph(objects)
    intended = INTENDED[name]
    assert sorted(allowed - intended) == [], "allowed but not intended"
    assert sorted(intended - allowed) == [], "intended but blocked"


def test_every_pod_is_covered_by_default_deny(overlay):
    """Each of our pods is isolated in both directions even with the allow-policies removed."""
    _, objects = overlay
    deny_all = [
        p for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    assert len(deny_all) == 1
    pods = our_pods(objects) + NEIGHBOURS
    edges = allowed_edges(deny_all, pods, among=NAMESPACE)
    ours = {p.name for p in pods if p.namespace == NAMESPACE}
    assert not [e for e in edges if e[0] in ours or e[1] in ours]


def test_each_database_reachable_only_from_its_own_service(rendered):
    """In dev, a database pod admits its own service and nothing else (a stricter restatement
    of part of the graph, so a failure names the leak)."""
    allowed = graph(rendered["dev"])
    for service in ("auth", "users", "orders"):
        callers = {s for s, d, _, _ in allowed if d == f"{service}-db"}
        assert callers == {service}


# --- the evaluator itself, on small cases whose answer is known ---

def _np(name, spec, namespace=NAMESPACE):
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


A = pod("a", NAMESPACE, {APP: "a"}, "10.0.0.1", [Port(80, name="http")])
B = pod("b", NAMESPACE, {APP: "b"}, "10.0.0.2", [Port(80, name="http"), Port(81)])
C = pod("c", "other", {APP: "a"}, "10.0.0.3", [Port(80)])


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        pytest.param([], {(s.name, d.name, p.number, p.protocol)
                          for s, d in itertools.product([A, B, C], repeat=2)
                          for p in d.ports if NAMESPACE in (s.namespace, d.namespace)},
                     id="no-policy-allows-all"),
        pytest.param([_np("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})],
                     {("a", "c", 80, "TCP"), ("b", "c", 80, "TCP")}, id="ingress-deny"),
        pytest.param([_np("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                      _np("b-in", {"podSelector": {"matchLabels": {APP: "b"}},
                                   "ingress": [{"from": [{"namespaceSelector": {},
                                                          "podSelector": {"matchLabels": {APP: "a"}}}],
                                                "ports": [{"port": "http"}]}]})],
                     # c's namespace has no policy, so only c's connection gets through.
                     {("c", "b", 80, "TCP")}, id="ingress-allowed-but-egress-denied"),
        pytest.param([_np("b-in", {"podSelector": {"matchLabels": {APP: "b"}},
                                   "ingress": [{"from": [{"namespaceSelector": {},
                                                          "podSelector": {"matchLabels": {APP: "a"}}}],
                                                "ports": [{"port": "http"}]}]})],
                     {("a", "a", 80, "TCP"), ("a", "c", 80, "TCP"), ("b", "a", 80, "TCP"),
                      ("b", "c", 80, "TCP"), ("c", "a", 80, "TCP"), ("a", "b", 80, "TCP"),
                      ("c", "b", 80, "TCP")}, id="and-of-selectors-named-port"),
        pytest.param([_np("b-in", {"podSelector": {"matchLabels": {APP: "b"}},
                                   "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/24",
                                                                      "except": ["10.0.0.3/32"]}}],
                                                "ports": [{"port": 80, "endPort": 81}]}]}),
                      _np("deny-rest", {"podSelector": {"matchLabels": {APP: "a"}},
                                        "policyTypes": ["Ingress"]})],
                     {("a", "b", 80, "TCP"), ("a", "b", 81, "TCP"), ("b", "b", 80, "TCP"),
                      ("b", "b", 81, "TCP"), ("a", "c", 80, "TCP"), ("b", "c", 80, "TCP")},
                     id="ip-block-except-port-range"),
    ],
)
def test_evaluator_semantics(policies, expected):
    """The evaluator follows the NetworkPolicy rules (isolation per direction, peers, ports)."""
    assert allowed_edges(policies, [A, B, C], among=NAMESPACE) == expected
