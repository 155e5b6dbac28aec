"""Every overlay renders with kustomize and every object validates strictly against the
schemas of a current Kubernetes release (unknown kinds, apiVersions and fields fail)."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from common.scopes import default_scope_policy
from tests.k8s.k8s_render import K8S, REPO
from tests.k8s.k8s_objects import by_name, containers, env_map, pod_spec

# The newest release kubernetes-validate ships schemas for; strict mode rejects unknown fields.
K8S_VERSION = kubernetes_validate.latest_version()


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_object_validates_strictly(overlay):
    """Each rendered object of the overlay passes strict schema validation."""
    name, objects = overlay
    failures = []
    for obj in objects:
        try:
            validate(obj)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {type(exc).__name__} {exc}")
    assert not failures, f"{name}:\n" + "\n".join(failures)
    assert len(objects) > 20


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(livenessprobe={}),
                     id="unknown-field"),
        pytest.param(lambda d: d.update(apiVersion="apps/v1beta1"), id="removed-apiVersion"),
        pytest.param(lambda d: d.update(kind="ServiceMonitor"), id="unknown-kind"),
    ],
)
def test_validator_rejects_what_it_must(rendered, mutate):
    """The validator is strict: a misspelt field, an old apiVersion or an unknown kind fails."""
    deployment = copy.deepcopy(by_name(rendered["prod"], "Deployment")["gateway"])
    mutate(deployment)
    with pytest.raises((kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError)):
        validate(deployment)


@pytest.mark.parametrize("directory", ["base", "overlays/dev", "overlays/prod",
                                       "components/external-signin"])
def test_every_manifest_file_is_listed(directory):
    """No manifest file sits unused beside a kustomization (it would silently not deploy)."""
    root = K8S / directory
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    listed = {Path(item).name for item in kustomization.get("resources", [])}
    generated = {
        spec.split("=", 1)[-1]
        for generator in kustomization.get("configMapGenerator", [])
        for spec in generator.get("files", [])
    }
    files = {p.name for p in root.glob("*.yaml")} - {"kustomization.yaml"}
    assert files - listed - generated == set()


def test_routes_configmap_matches_packaged_routes(rendered):
    """The routes file mounted in Kubernetes is the packaged gateway/routes.yaml, and the
    gateway's own loader accepts it."""
    packaged = REPO / "gateway" / "routes.yaml"
    if not packaged.exists():
        pytest.skip("gateway/routes.yaml is not written yet")
    for name, objects in rendered.items():
        config = next(
            obj for obj in objects
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("gateway-config")
        )
        assert config["data"]["routes.yaml"] == packaged.read_text(), (
            f"{name}: deploy/k8s/base/gateway-routes.yaml differs from gateway/routes.yaml; "
            "run: cp gateway/routes.yaml deploy/k8s/base/gateway-routes.yaml"
        )
    routes = pytest.importorskip("gateway.routes")
    routes.load_routes(K8S / "base" / "gateway-routes.yaml", default_scope_policy().issuable)


def test_auth_and_the_gateway_read_one_scopes_file(rendered):
    """The scopes ConfigMap is the packaged common/scopes.yaml, and auth and the gateway
    both mount that one ConfigMap and point PASSGATE_SCOPES_FILE into it: what auth issues
    and what routes may require cannot drift apart."""
    packaged = (REPO / "common" / "scopes.yaml").read_text()
    for name, objects in rendered.items():
        config = next(
            obj for obj in objects
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].startswith("passgate-scopes")
        )
        assert config["data"]["scopes.yaml"] == packaged, (
            f"{name}: deploy/k8s/base/scopes.yaml differs from common/scopes.yaml; "
            "run: cp common/scopes.yaml deploy/k8s/base/scopes.yaml"
        )
        deployments = by_name(objects, "Deployment")
        for component in ("auth", "gateway"):
            pod = pod_spec(deployments[component])
            container = next(containers(deployments[component]))
            path = env_map(container)["PASSGATE_SCOPES_FILE"]["value"]
            mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert volume["configMap"]["name"] == config["metadata"]["name"], (name, component)
            assert path.rsplit("/", 1)[1] == "scopes.yaml"
