"""The whole system from the one image: auth, users, orders and the gateway as containers on
one podman network, each started from the dev overlay's rendered Deployment (its command,
environment, security context and volumes), against the machine's PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from common.assertion_keys import ensure_keys
from tests.support.servers import (
    POSTGRES_URL, REDIS_URL, create_postgres_database, drop_postgres_database, require_server,
)
from tests.container.forwarder import Forwarder
from tests.container.manifests import Sources, config_maps_of, run_args
from tests.container.podman import REPO, Podman
from tests.k8s.k8s_objects import by_name, containers
from tests.k8s.k8s_render import K8S, render

IMAGE = "localhost/passgate:test"
# Start order: users before auth (auth provisions profiles), auth before the gateway (JWKS).
COMPONENTS = ("users", "orders", "auth", "gateway")
SERVICES = ("auth", "users", "orders")
# The image's user; the Secret volume is group-readable by the pod's fsGroup, as kubelet does.
POD_UID = 10001
READY_WAIT = 120  # seconds a component may take to pass its readiness probe
# Lines for the run's summary (tests/container/conftest.py prints them).
FIGURES = pytest.StashKey[list[str]]()


@dataclasses.dataclass
class ContainerStack:
    podman: Podman
    network: str
    objects: list[dict]
    keys_dir: Path
    build_seconds: float
    start_seconds: float

    @property
    def gateway_url(self) -> str:
        return f"http://{self.podman.address('gateway', self.network)}:8080"

    def deployment(self, name: str) -> dict:
        return by_name(self.objects, "Deployment")[name]

    def auth_command(self, *args: str, **env: str) -> dict:
        """An operator command of auth (`passgate-auth ...`) run from the image, as the README's
        PASSGATE_AUTH does, with write access to the signing-keys directory."""
        extra = [f"--env={k}={v}" for k, v in env.items()]
        result = self.podman.run(
            "run", "--rm", "--network=none", f"--user={POD_UID}:{POD_UID}", "--read-only",
            "--tmpfs=/tmp:rw,mode=1777", "--cap-drop=all", "--security-opt=no-new-privileges",
            f"--volume={self.keys_dir}:/keys:rw", "--env=PASSGATE_SIGNING_KEYS_DIR=/keys", *extra,
            IMAGE, "passgate-auth", *args,
        )
        return json.loads(result.stdout.strip().splitlines()[-1])

    def start(self, name: str, sources: Sources) -> None:
        """Run the Deployment's init containers to completion, then its server container."""
        workload = self.deployment(name)
        for init in workload["spec"]["template"]["spec"].get("initContainers", []):
            self.podman.run("run", "--rm", *run_args(
                workload, init, sources, name=f"{name}-{init['name']}", network=self.network,
                image=IMAGE), timeout=180)
        (server,) = containers(workload)
        self.podman.run("run", "--detach", *run_args(
            workload, server, sources, name=name, network=self.network, image=IMAGE,
            aliases=[f"{name}-pods"]))

    async def wait_ready(self, name: str) -> None:
        """Poll the container's readiness probe (path and port from the manifest) until it
        answers 200, as the kubelet would before the Service sends it traffic."""
        (server,) = containers(self.deployment(name))
        probe = server["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in server["ports"]}
        port = ports.get(probe["port"], probe["port"])
        deadline = time.monotonic() + READY_WAIT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while time.monotonic() < deadline:
                address = self.podman.address(name, self.network)
                try:
                    async with session.get(f"http://{address}:{port}{probe['path']}") as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.5)
        raise AssertionError(f"{name} never became ready:\n{self.podman.logs(name)}")


def _host_url(url: str, port: int) -> str:
    """The URL as a container reaches it: the forwarder on the host, same path and user."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return f"{parts.scheme}://{userinfo + '@' if userinfo else ''}host.containers.internal:{port}{parts.path}"


@contextmanager
def container_stack(home: Path) -> Iterator[ContainerStack]:
    require_server(POSTGRES_URL, 5432, "postgres")
    require_server(REDIS_URL, 6379, "redis")
    podman = Podman(home)
    with ExitStack() as cleanup:
        cleanup.callback(podman.remove_everything)
        began = time.monotonic()
        subprocess.run(
            [str(REPO / "deploy" / "build-image.sh")], cwd=REPO, check=True, timeout=1200,
            env={**podman.env, "IMAGE": IMAGE, "CONTAINER_CLI": "podman",
                 "PODMAN_ARGS": " ".join(podman.global_args)},
        )
        build_seconds = time.monotonic() - began

        network = f"passgate-{uuid.uuid4().hex[:8]}"
        podman.run("network", "create", network)
        cleanup.callback(podman.run, "network", "rm", "--force", network, check=False)
        subnet = json.loads(podman.run("network", "inspect", network).stdout)[0]["subnets"][0]["subnet"]

        postgres = cleanup.enter_context(Forwarder(_address(POSTGRES_URL, 5432), subnet))
        redis = cleanup.enter_context(Forwarder(_address(REDIS_URL, 6379), subnet))
        databases = {}
        for service in SERVICES:
            url = asyncio.run(create_postgres_database())
            cleanup.callback(lambda u=url: asyncio.run(drop_postgres_database(u)))
            databases[service] = _host_url(url, postgres.port)

        keys_dir = home / "signing-keys"
        keys_dir.mkdir(mode=0o750)
        os.chown(keys_dir, POD_UID, POD_UID)

        objects = render(K8S / "overlays" / "dev")
        stack = ContainerStack(podman, network, objects, keys_dir, build_seconds, 0.0)
        stack.auth_command("rotate-keys")  # the first key, as create-secrets.sh makes it
        sources = Sources(
            config_maps=config_maps_of(objects),
            secrets={
                **{f"{s}-database": {"url": databases[s]} for s in SERVICES},
                "passgate-redis": {"url": _host_url(REDIS_URL, redis.port)},
            },
            secret_dirs={"auth-signing-keys": keys_dir, **assertion_key_dirs(home)},
            config_dir=home / "config-maps",
        )
        began = time.monotonic()
        for name in COMPONENTS:
            stack.start(name, sources)
        for name in COMPONENTS:
            asyncio.run(stack.wait_ready(name))
        stack.start_seconds = time.monotonic() - began
        yield stack


def assertion_key_dirs(home: Path) -> dict[str, Path]:
    """The identity-assertion Secrets as create-secrets.sh makes them: the gateway's and
    auth's private keys and the public trust set, readable by the pod's user."""
    trust = home / "assertion-trust"
    dirs = {"passgate-assertion-trust": trust}
    for signer in ("gateway", "auth"):
        keys = home / f"assertion-keys-{signer}"
        ensure_keys(keys, trust, f"passgate-{signer}", time.time(), generate=True)
        dirs[f"{signer}-assertion-keys"] = keys
    for directory in dirs.values():
        for path in (directory, *directory.iterdir()):
            os.chown(path, POD_UID, POD_UID)
    return dirs


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port
