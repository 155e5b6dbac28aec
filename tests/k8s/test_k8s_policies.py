"""Policy checks over the rendered objects of every overlay: the conventions an operator and a
security review expect (probes, resources, security context, selectors, ports, secrets)."""

from __future__ import annotations

import re

import pytest
from tests.k8s.k8s_render import ADMIN_PORTS, COMPONENTS, NAMESPACE
from tests.k8s.k8s_objects import (
    by_name, containers, env_map, matches, of_kind, pod_labels, pod_spec, secret_volumes, workloads,
)

APP = "app.kubernetes.io/name"
NS_NAME_LABEL = "kubernetes.io/metadata.name"
MONITORING = "monitoring"
API_PORTS = frozenset(COMPONENTS.values())


def test_all_objects_in_the_namespace(overlay):
    """Every namespaced object lands in the passgate namespace."""
    _, objects = overlay
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]


def test_one_deployment_service_account_per_component(overlay):
    """Each component has its Deployment, Service and ServiceAccount, none mounting a token."""
    _, objects = overlay
    for kind in ("Deployment", "Service", "ServiceAccount"):
        assert set(COMPONENTS) <= set(by_name(objects, kind)), kind
    for account in of_kind(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    for workload in workloads(objects):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == name, name


def test_every_container_has_probes(overlay):
    """Every container has liveness and readiness probes; ours use /healthz and /readyz on the
    admin port (kubelet probes are not subject to NetworkPolicy, and the admin listener keeps
    probe requests out of the API's request metrics)."""
    _, objects = overlay
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        for container in containers(workload):
            assert "livenessProbe" in container and "readinessProbe" in container, name
            if name in COMPONENTS:
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
                ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    probe_port = ports[container[probe]["httpGet"]["port"]]
                    assert probe_port == ADMIN_PORTS[name], (name, probe)


def test_every_container_has_requests_and_limits(overlay):
    """CPU and memory requests and limits on every container, init containers included
    (the HPA computes utilisation against the CPU request)."""
    _, objects = overlay
    for workload in workloads(objects):
        for container in containers(workload, init=True):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), (
                    workload["metadata"]["name"], container["name"], bound)


def _effective(pod: dict, container: dict, key: str):
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


def test_security_context(overlay):
    """Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp, no
    privilege escalation, for every container."""
    _, objects = overlay
    for workload in workloads(objects):
        pod = pod_spec(workload)
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
        for container in containers(workload, init=True):
            where = (workload["metadata"]["name"], container["name"])
            context = container.get("securityContext", {})
            assert _effective(pod, container, "runAsNonRoot") is True, where
            user = _effective(pod, container, "runAsUser")
            assert isinstance(user, int) and user > 0, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged", False) is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            assert _effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, where


def test_writable_paths_are_volumes(overlay):
    """Our containers write only to an emptyDir at /tmp (the root filesystem is read-only)."""
    _, objects = overlay
    for name in COMPONENTS:
        workload = by_name(objects, "Deployment")[name]
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        for container in containers(workload, init=True):
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
            for path, mount in mounts.items():
                if path != "/tmp":
                    assert mount.get("readOnly") is True, (name, path)


def test_selectors_match_labels(overlay):
    """Workload selectors match their pod labels; every Service and PDB selects pods of exactly
    one workload; Deployments select on the app label alone."""
    _, objects = overlay
    all_workloads = workloads(objects)
    for workload in all_workloads:
        assert matches(workload["spec"]["selector"], pod_labels(workload))
        assert workload["metadata"]["labels"][APP] == workload["metadata"]["name"]
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in of_kind(objects, kind):
            selector = obj["spec"]["selector"]
            selector = selector if kind == "PodDisruptionBudget" else {"matchLabels": selector}
            selected = [w["metadata"]["name"] for w in all_workloads if matches(selector, pod_labels(w))]
            # Each selects exactly the component it is labelled for (a component may have a
            # ClusterIP Service and a headless one, `<name>-pods`, for the gateway's pools).
            component = obj["metadata"]["labels"][APP]
            assert selected == [component], (kind, obj["metadata"]["name"], selected)
            assert obj["metadata"]["name"] in (component, f"{component}-pods"), obj["metadata"]["name"]


def test_hpa_and_pdb_targets_exist(overlay):
    """Every HPA scales an existing Deployment (with CPU requests); every PDB covers one."""
    _, objects = overlay
    deployments = by_name(objects, "Deployment")
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] in deployments
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert {p["metadata"]["name"] for p in of_kind(objects, "PodDisruptionBudget")} >= set(COMPONENTS)


def test_replicas_per_overlay(rendered):
    """dev runs one replica of each component without autoscaling; prod at least two, with an
    HPA for each of the four and no fixed replica count fighting it."""
    dev = by_name(rendered["dev"], "Deployment")
    assert all(dev[name]["spec"]["replicas"] == 1 for name in COMPONENTS)
    assert not of_kind(rendered["dev"], "HorizontalPodAutoscaler")
    prod = by_name(rendered["prod"], "Deployment")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(rendered["prod"], "HorizontalPodAutoscaler")}
    assert set(hpas) == set(COMPONENTS)
    for name in COMPONENTS:
        assert "replicas" not in prod[name]["spec"], name
        assert hpas[name]["spec"]["minReplicas"] >= 2, name


def test_service_ports_match_containers_and_settings(overlay):
    """Each Service port targets a named container port; PASSGATE_PORT and PASSGATE_ADMIN_PORT
    equal the `http` and `admin` container ports; the contract's port numbers hold."""
    _, objects = overlay
    deployments = by_name(objects, "Deployment") | by_name(objects, "StatefulSet")
    for service in of_kind(objects, "Service"):
        workload = deployments[service["metadata"]["labels"][APP]]
        ports = {p["name"]: p for c in containers(workload) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = ports[port["targetPort"]]
            assert port["port"] == target["containerPort"]
            assert port.get("protocol", "TCP") == target.get("protocol", "TCP")
    for name, number in COMPONENTS.items():
        server = next(containers(deployments[name]))
        env = env_map(server)
        ports = {p["name"]: p["containerPort"] for p in server["ports"]}
        assert ports["http"] == number == int(env["PASSGATE_PORT"]["value"])
        assert env["PASSGATE_HOST"]["value"] == "0.0.0.0"
        assert ports["admin"] == int(env["PASSGATE_ADMIN_PORT"]["value"]) == ADMIN_PORTS[name]
        assert ports["admin"] not in API_PORTS
        # The admin listener must take the pod address too (probes and Prometheus use it).
        assert env.get("PASSGATE_ADMIN_HOST", {"value": "0.0.0.0"})["value"] == "0.0.0.0", name


def test_scrape_annotations_point_at_metrics_ports(overlay):
    """Prometheus scrapes every component on its admin port, the only one serving /metrics;
    never an API port."""
    _, objects = overlay
    for name, number in COMPONENTS.items():
        template = by_name(objects, "Deployment")[name]["spec"]["template"]
        notes = template["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true"
        assert notes["prometheus.io/path"] == "/metrics"
        assert int(notes["prometheus.io/port"]) == ADMIN_PORTS[name] != number
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert ports["admin"] == ADMIN_PORTS[name]


def _may_admit_namespace(peer: dict, namespace: str) -> bool:
    """Whether an ingress peer may admit pods of another namespace `namespace`, over-approximated:
    an ipBlock may cover pod addresses (implementation-defined), and only the namespace's name
    label is known, so selector terms on other namespace labels are assumed to match."""
    if "ipBlock" in peer:
        return True
    if "namespaceSelector" not in peer:
        return False  # a bare podSelector selects pods of the policy's own namespace
    selector = peer["namespaceSelector"] or {}
    on_name = {
        "matchLabels": {k: v for k, v in (selector.get("matchLabels") or {}).items() if k == NS_NAME_LABEL},
        "matchExpressions": [e for e in selector.get("matchExpressions") or [] if e["key"] == NS_NAME_LABEL],
    }
    return matches(on_name, {NS_NAME_LABEL: namespace})


def _rule_port_numbers(rule_ports: list[dict] | None, selected: list[dict]) -> set[int] | None:
    """The TCP port numbers a rule opens on the selected workloads' pods; None means all."""
    if not rule_ports:
        return None
    named = {
        p["name"]: p["containerPort"]
        for w in selected for c in containers(w) for p in c.get("ports", [])
        if "name" in p and p.get("protocol", "TCP") == "TCP"
    }
    numbers: set[int] = set()
    for item in rule_ports:
        if item.get("protocol", "TCP") != "TCP":
            continue
        port = item.get("port")
        if port is None:
            return None
        if isinstance(port, str):
            if port in named:
                numbers.add(named[port])
            continue
        numbers.update(range(port, item.get("endPort", port) + 1))
    return numbers


def monitoring_api_admissions(policies: list[dict], all_workloads: list[dict]) -> list[tuple[str, int]]:
    """(policy, rule index) of every ingress rule that admits the monitoring namespace (any pod
    in it, whatever its labels) to an API port (8080-8083)."""
    found = []
    for policy in policies:
        selected = [w for w in all_workloads if matches(policy["spec"]["podSelector"], pod_labels(w))]
        for index, rule in enumerate(policy["spec"].get("ingress") or []):
            peers = rule.get("from")
            if peers and not any(_may_admit_namespace(peer, MONITORING) for peer in peers):
                continue
            numbers = _rule_port_numbers(rule.get("ports"), selected)
            if numbers is None or numbers & API_PORTS:
                found.append((policy["metadata"]["name"], index))
    return found


def test_monitoring_namespace_never_admitted_to_an_api_port(overlay):
    """No NetworkPolicy rule lets the monitoring namespace reach 8080-8083: backends trust
    X-User-* identity headers from whoever reaches their API, so a scraper gets admin ports only."""
    _, objects = overlay
    assert monitoring_api_admissions(of_kind(objects, "NetworkPolicy"), workloads(objects)) == []


def _ingress_policy(*rules: dict) -> dict:
    return {"kind": "NetworkPolicy", "metadata": {"name": "probe", "namespace": NAMESPACE},
            "spec": {"podSelector": {"matchLabels": {APP: "auth"}}, "policyTypes": ["Ingress"],
                     "ingress": list(rules)}}


_PROMETHEUS = {"namespaceSelector": {"matchLabels": {NS_NAME_LABEL: MONITORING}},
               "podSelector": {"matchLabels": {APP: "prometheus"}}}
_GATEWAY = {"podSelector": {"matchLabels": {APP: "gateway"}}}


@pytest.mark.parametrize(
    ("rule", "admits"),
    [
        pytest.param({"from": [_GATEWAY, _PROMETHEUS], "ports": [{"port": 8081}]}, True,
                     id="shared-api-rule"),
        pytest.param({"from": [_PROMETHEUS], "ports": [{"port": 9090}]}, False, id="admin-port"),
        pytest.param({"from": [_PROMETHEUS], "ports": [{"port": "admin"}]}, False, id="named-admin"),
        pytest.param({"from": [_PROMETHEUS], "ports": [{"port": "http"}]}, True, id="named-http"),
        pytest.param({"from": [_PROMETHEUS]}, True, id="no-port-list"),
        pytest.param({"from": [_PROMETHEUS], "ports": [{"protocol": "TCP"}]}, True, id="no-port"),
        pytest.param({"from": [_PROMETHEUS], "ports": [{"port": 8000, "endPort": 8999}]}, True,
                     id="port-range"),
        pytest.param({"ports": [{"port": 8081}]}, True, id="any-source"),
        pytest.param({"from": [{"namespaceSelector": {}}], "ports": [{"port": 8081}]}, True,
                     id="every-namespace"),
        pytest.param({"from": [{"namespaceSelector": {"matchLabels": {"team": "observability"}}}],
                      "ports": [{"port": 8081}]}, True, id="other-namespace-label"),
        pytest.param({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 8081}]}, True,
                     id="ip-block"),
        pytest.param({"from": [_GATEWAY], "ports": [{"port": 8081}]}, False, id="own-namespace-only"),
        pytest.param({"from": [{"namespaceSelector": {"matchLabels": {NS_NAME_LABEL: "ingress-nginx"}}}],
                      "ports": [{"port": 8081}]}, False, id="another-namespace"),
    ],
)
def test_monitoring_check_catches_what_it_must(rendered, rule, admits):
    """The check above flags every rule shape that would let the monitoring namespace in."""
    found = monitoring_api_admissions([_ingress_policy(rule)], workloads(rendered["prod"]))
    assert bool(found) is admits


def test_graceful_shutdown_fits_grace_period(overlay):
    """terminationGracePeriodSeconds covers preStop + drain + shutdown timeout with margin."""
    _, objects = overlay
    for name in COMPONENTS:
        workload = by_name(objects, "Deployment")[name]
        server = next(containers(workload))
        env = env_map(server)
        drain = float(env["PASSGATE_DRAIN_SECONDS"]["value"])
        shutdown = float(env["PASSGATE_SHUTDOWN_TIMEOUT"]["value"])
        pre_stop = server["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert drain > 0 and pre_stop > 0
        assert pod_spec(workload)["terminationGracePeriodSeconds"] >= pre_stop + drain + shutdown + 2


def test_topology_spread(overlay):
    """Replicas spread over nodes and zones, counted per app."""
    _, objects = overlay
    for name in COMPONENTS:
        spec = pod_spec(by_name(objects, "Deployment")[name])
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in spec["topologySpreadConstraints"]:
            assert constraint["labelSelector"]["matchLabels"] == {APP: name}


def _projected_secrets(workload: dict) -> set[str]:
    found = set()
    for volume in pod_spec(workload).get("volumes", []):
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                found.add(source["secret"]["name"])
    return found


def test_only_auth_mounts_signing_keys(overlay):
    """The signing keys Secret is mounted by auth and nothing else, and nobody reads it via env."""
    _, objects = overlay
    mounting = [
        w["metadata"]["name"] for w in workloads(objects)
        if "auth-signing-keys" in secret_volumes(w) | _projected_secrets(w)
    ]
    assert mounting == ["auth"]
    for workload in workloads(objects):
        for container in containers(workload, init=True):
            for source in container.get("envFrom", []):
                assert source.get("secretRef", {}).get("name") != "auth-signing-keys"
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef", {})
                assert ref.get("name") != "auth-signing-keys"
    auth = next(containers(by_name(objects, "Deployment")["auth"]))
    env = env_map(auth)
    assert env["PASSGATE_GENERATE_KEYS"]["value"] == "false"
    mount = {m["name"]: m for m in auth["volumeMounts"]}["signing-keys"]
    assert mount["mountPath"] == env["PASSGATE_SIGNING_KEYS_DIR"]["value"]
    assert "subPath" not in mount  # a subPath mount never sees a rotated Secret


def test_database_urls_come_from_secrets(overlay):
    """Each service reads PASSGATE_DATABASE_URL from its own Secret; nobody else's."""
    _, objects = overlay
    deployments = by_name(objects, "Deployment")
    for name in ("auth", "users", "orders"):
        for container in containers(deployments[name], init=True):
            ref = env_map(container)["PASSGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": f"{name}-database", "key": "url"}
    assert "PASSGATE_DATABASE_URL" not in env_map(next(containers(deployments["gateway"])))


_URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]+@")
_SECRETISH = re.compile(r"(password|secret|token|private|BEGIN [A-Z ]*KEY)", re.IGNORECASE)


def test_no_secret_carries_a_value(overlay):
    """No Secret object is rendered with data, and no literal env value looks like a credential."""
    _, objects = overlay
    for secret in of_kind(objects, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]["name"]
    for workload in workloads(objects):
        for container in containers(workload, init=True):
            for item in container.get("env", []):
                if "value" in item:
                    assert not _SECRETISH.search(item["value"]), (item["name"], "literal value")
                    assert not _URL_WITH_PASSWORD.search(item["value"]), item["name"]
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert "PRIVATE KEY" not in value and not _URL_WITH_PASSWORD.search(value), key


def test_referenced_secrets_are_the_documented_ones(overlay):
    """The Secrets the pods reference are exactly those create-secrets.sh makes."""
    name, objects = overlay
    referenced = set()
    for workload in workloads(objects):
        referenced |= secret_volumes(workload)
        for container in containers(workload, init=True):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
    expected = {"auth-signing-keys", "auth-database", "users-database", "orders-database", "passgate-redis",
                "gateway-assertion-keys", "auth-assertion-keys", "passgate-assertion-trust"}
    if name == "dev":
        expected |= {"auth-db-credentials", "users-db-credentials", "orders-db-credentials"}
    if name == "external-signin":
        expected |= {"auth-oidc-clients"}
    assert referenced == expected


def test_ingress_routes_to_gateway_public_port(overlay):
    """The Ingress sends all traffic to the gateway's public port, never the admin port."""
    name, objects = overlay
    (ingress,) = of_kind(objects, "Ingress")
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
    if name != "dev":
        assert ingress["spec"]["tls"][0]["secretName"] == "passgate-tls"


def test_issuer_and_audience_shared_by_gateway_and_auth(overlay):
    """Gateway and auth take issuer and audience from the same ConfigMap keys."""
    _, objects = overlay
    deployments = by_name(objects, "Deployment")
    refs = []
    for name in ("gateway", "auth"):
        env = env_map(next(containers(deployments[name])))
        refs.append({k: env[k]["valueFrom"]["configMapKeyRef"] for k in ("PASSGATE_ISSUER", "PASSGATE_AUDIENCE")})
    assert refs[0] == refs[1]


def test_the_gateway_balances_over_headless_services_of_pods(overlay):
    """Each upstream of the gateway is a headless Service (no cluster IP) selecting exactly
    its component's pods, and the gateway resolves it to every pod (PASSGATE_DISCOVERY=dns):
    one ClusterIP address would make per-replica balancing, ejection and retries act on the
    whole upstream at once."""
    _, objects = overlay
    services = by_name(objects, "Service")
    gateway = next(containers(by_name(objects, "Deployment")["gateway"]))
    env = env_map(gateway)
    assert env["PASSGATE_DISCOVERY"]["value"] == "dns"
    for component in ("auth", "users", "orders"):
        url = env[f"PASSGATE_UPSTREAM_{component.upper()}"]["value"]
        host, port = url.removeprefix("http://").split(":")
        headless = services[host]
        assert host == f"{component}-pods"
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == {APP: component}
        assert int(port) in {p["port"] for p in headless["spec"]["ports"]}
