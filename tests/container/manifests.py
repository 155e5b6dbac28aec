"""Turn a rendered Deployment's pod template into `podman run` arguments, as a kubelet would
run it: the same command, environment (ConfigMap and Secret references resolved), security
context and volumes.

Written by hand because `podman kube play` in Debian bookworm's podman (4.3) cannot run these
Deployments: it names each pod `<name>-pod-0`, so the Service names the manifests use
(`http://users:8082`) do not resolve; it reads Secrets only from its own store in its own
JSON format; and it restarts a finished init container under the pod's restartPolicy, then
fails removing it. Anything this translation does not understand raises, so a manifest
change that the container test would silently ignore fails it instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi)?$")
_UNITS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


@dataclasses.dataclass(frozen=True)
class Sources:
    """What the cluster would provide: ConfigMap data by (generated) name, Secret values by
    name and key, and a host directory holding each Secret mounted as a volume."""

    config_maps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    secret_dirs: dict[str, Path]
    config_dir: Path  # where ConfigMap volumes are written out


def config_maps_of(objects: list[Obj]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}


def _effective(pod: Obj, container: Obj, key: str) -> Any:
    return container.get("securityContext", {}).get(key, pod.get("securityContext", {}).get(key))


def security_args(pod: Obj, container: Obj) -> list[str]:
    """The pod and container security context as podman options."""
    context = container.get("securityContext", {})
    user, group = _effective(pod, container, "runAsUser"), _effective(pod, container, "runAsGroup")
    if _effective(pod, container, "runAsNonRoot") and not (isinstance(user, int) and user > 0):
        raise ValueError(f"{container['name']}: runAsNonRoot without a numeric non-root runAsUser")
    if context.get("privileged"):
        raise ValueError(f"{container['name']}: privileged containers are not run")
    args = []
    if user is not None:
        args.append(f"--user={user}:{group if group is not None else user}")
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    if fs_group is not None:
        args.append(f"--group-add={fs_group}")
    if context.get("readOnlyRootFilesystem"):
        # podman would otherwise mount its own tmpfs on /tmp, /run and /var/tmp; Kubernetes
        # mounts nothing, so only the pod's emptyDir volumes are writable.
        args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = context.get("capabilities", {})
    args += [f"--cap-drop={c.lower()}" for c in capabilities.get("drop", [])]
    args += [f"--cap-add={c.lower()}" for c in capabilities.get("add", [])]
    if context.get("allowPrivilegeEscalation") is False:
        args.append("--security-opt=no-new-privileges")
    seccomp = _effective(pod, container, "seccompProfile") or {"type": "RuntimeDefault"}
    if seccomp.get("type") != "RuntimeDefault":  # podman's default profile is the runtime's
        raise ValueError(f"{container['name']}: seccomp profile {seccomp} is not supported here")
    return args


def environment(container: Obj, sources: Sources) -> dict[str, str]:
    """The container's environment with every ConfigMap and Secret reference resolved; an
    optional reference to something not provided is left out, as the kubelet does."""
    if container.get("envFrom"):
        raise ValueError(f"{container['name']}: envFrom is not supported here")
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        (kind, ref), = item["valueFrom"].items()
        store = {"configMapKeyRef": sources.config_maps, "secretKeyRef": sources.secrets}.get(kind)
        if store is None:
            raise ValueError(f"{item['name']}: {kind} is not supported here")
        value = store.get(ref["name"], {}).get(ref["key"])
        if value is None:
            if ref.get("optional"):
                continue
            raise KeyError(f"{item['name']}: {kind} {ref['name']}/{ref['key']} is not provided")
        env[item["name"]] = value
    return env


def env_args(container: Obj, sources: Sources) -> list[str]:
    return [f"--env={name}={value}" for name, value in environment(container, sources).items()]


def _bytes(quantity: str) -> int:
    found = _QUANTITY.match(quantity)
    if not found:
        raise ValueError(f"unsupported quantity {quantity}")
    return int(found[1]) * _UNITS[found[2]]


def volume_args(pod: Obj, container: Obj, sources: Sources) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    args = []
    for mount in container.get("volumeMounts", []):
        if "subPath" in mount:
            raise ValueError(f"{mount['name']}: subPath mounts are not supported here")
        volume = volumes[mount["name"]]
        path, read_only = mount["mountPath"], mount.get("readOnly", False)
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            options = ["rw", "mode=1777"] + ([f"size={_bytes(size)}"] if size else [])
            args.append(f"--tmpfs={path}:{','.join(options)}")
        elif "secret" in volume:
            source = sources.secret_dirs[volume["secret"]["secretName"]]
            args.append(f"--volume={source}:{path}:{'ro' if read_only else 'rw'}")
        elif "configMap" in volume:
            source = write_config_map(volume, sources)
            args.append(f"--volume={source}:{path}:{'ro' if read_only else 'rw'}")
        else:
            raise ValueError(f"{mount['name']}: volume type {sorted(volume)} is not supported here")
    return args


def write_config_map(volume: Obj, sources: Sources) -> Path:
    spec = volume["configMap"]
    data = sources.config_maps[spec["name"]]
    items = spec.get("items") or [{"key": key, "path": key} for key in data]
    directory = sources.config_dir / volume["name"]
    directory.mkdir(parents=True, exist_ok=True)
    for item in items:
        target = directory / item["path"]
        target.write_text(data[item["key"]])
        target.chmod(0o644)
    directory.chmod(0o755)
    return directory


def run_args(workload: Obj, container: Obj, sources: Sources, *, name: str, network: str,
             image: str, aliases: Sequence[str] = ()) -> list[str]:
    """`podman run` arguments (without `podman run` itself or --detach/--rm) for one container
    of the workload, reachable on `network` as `name` and each of `aliases` (the names of
    the Services that select it: a Service's name resolves to its pods)."""
    pod = workload["spec"]["template"]["spec"]
    if container.get("args"):
        raise ValueError(f"{container['name']}: args are not supported here")
    return [
        f"--name={name}", f"--network={network}", f"--hostname={name}",
        *(f"--network-alias={alias}" for alias in aliases),
        *security_args(pod, container),
        *env_args(container, sources),
        *volume_args(pod, container, sources),
        image, *container["command"],
    ]
