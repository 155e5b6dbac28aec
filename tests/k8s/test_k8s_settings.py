"""Each component's own settings loader accepts the environment and files each overlay gives
its pod: a manifest setting the code refuses (a value out of range, an http URL where https
is required, a providers file auth cannot read) fails here, offline, instead of as a pod
that never becomes ready."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from common.telemetry import build_tracing
from gateway.settings import GatewaySettings
from services.auth.settings import AuthSettings
from services.orders.settings import settings_from_env as orders_settings
from services.users.settings import settings_from_env as users_settings
from tests.container.manifests import Sources, config_maps_of, environment, write_config_map
from tests.k8s.k8s_objects import by_name, containers, pod_spec
from tests.k8s.k8s_render import COMPONENTS

LOADERS = {
    "gateway": GatewaySettings.from_env,
    "auth": AuthSettings.from_env,
    "users": users_settings,
    "orders": orders_settings,
}
# Values of the shape create-secrets.sh stores; nothing connects to them here.
PLACEHOLDER_SECRETS = {
    **{f"{s}-database": {"url": f"postgresql://{s}:x@{s}-db.invalid:5432/{s}"}
       for s in ("auth", "users", "orders")},
    "passgate-redis": {"url": "redis://:x@redis.invalid:6379/0"},
}


def mounted(workload: dict, server: dict, sources: Sources, root: Path) -> dict[str, Path]:
    """Write each volume the server mounts under `root`; {mountPath: host directory}."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    places = {}
    for mount in server.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            places[mount["mountPath"]] = write_config_map(volume, sources)
        elif "secret" in volume or "emptyDir" in volume:
            place = root / mount["name"]
            place.mkdir(parents=True, exist_ok=True)
            places[mount["mountPath"]] = place
    return places


def relocate(text: str, places: dict[str, Path]) -> str:
    for mount_path, place in places.items():
        text = text.replace(mount_path.rstrip("/") + "/", f"{place}/")
    return text


@pytest.mark.parametrize("component", list(COMPONENTS))
def test_settings_accept_the_overlay_environment(overlay, component, tmp_path):
    name, objects = overlay
    sources = Sources(config_maps_of(objects), PLACEHOLDER_SECRETS, {}, tmp_path / "config-maps")
    workload = by_name(objects, "Deployment")[component]
    server = next(containers(workload))
    places = mounted(workload, server, sources, tmp_path / "volumes")
    # Files that name other files (the providers file names its client secrets) follow the mounts.
    for place in places.values():
        for path in place.iterdir():
            path.write_text(relocate(path.read_text(), places))
    env = {key: relocate(value, places) for key, value in environment(server, sources).items()}
    if "PASSGATE_OIDC_PROVIDERS" in env:
        # The Secret auth-oidc-clients holds one file per client secret the providers file names.
        document = yaml.safe_load(Path(env["PASSGATE_OIDC_PROVIDERS"]).read_text())
        for provider in document["providers"]:
            secret = Path(provider["client_secret_file"])
            assert secret.parent in places.values(), (provider["id"], "secret outside a mount")
            secret.write_text("placeholder-client-secret\n")
    settings = LOADERS[component](env)
    # Traces: on with the tracing component only, and its variables accepted.
    tracing = build_tracing(component, env, exporter=InMemorySpanExporter)
    assert (tracing is not None) is (name == "tracing"), sorted(k for k in env if k.startswith("OTEL"))
    if component == "auth" and name == "external-signin":
        assert [p.id for p in settings.oidc.providers] == ["google"]
        assert settings.oidc.return_origins  # sign-ins return only to the CORS origins


def test_external_signin_is_auths_alone(rendered):
    """Only auth mounts the client secrets and the providers file, and only auth may leave the
    cluster for the providers (the network graph test checks the addresses and port)."""
    objects = rendered["external-signin"]
    for workload in (w for w in objects if w["kind"] == "Deployment"):
        volumes = pod_spec(workload).get("volumes", [])
        secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v}
        maps = {v["configMap"]["name"].rsplit("-", 1)[0] for v in volumes if "configMap" in v}
        is_auth = workload["metadata"]["name"] == "auth"
        assert ("auth-oidc-clients" in secrets) is is_auth
        assert ("auth-oidc" in maps) is is_auth
    for name in ("dev", "prod"):
        assert not any(o["metadata"]["name"].startswith("auth-oidc") for o in rendered[name])
