"""podman with a private store: each test run keeps its images, containers and networks
under its own directory, so runs never see each other's (or an operator's) containers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"


def unavailable_reason() -> str | None:
    """Why the container test cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman debootstrap; .ci/run does)"
    if os.geteuid() != 0:
        return "the container test runs podman as root (rootless podman is not set up here)"
    return None


class Podman:
    def __init__(self, home: Path) -> None:
        self.home = home
        storage, run, networks = home / "storage", home / "run", home / "networks"
        for directory in (storage, run, networks):
            directory.mkdir(parents=True, exist_ok=True)
        # The shared settings plus this run's own network definitions (podman keeps them
        # outside the store otherwise, in /etc/containers/networks).
        conf = home / "containers.conf"
        conf.write_text(
            CONTAINERS_CONF.read_text().replace(
                "[network]\n", f'[network]\nnetwork_config_dir = "{networks}"\n'
            )
        )
        self.global_args = ["--root", str(storage), "--runroot", str(run)]
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *self.global_args, *args], env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False, input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def inspect(self, name: str) -> dict:
        return json.loads(self.run("container", "inspect", name).stdout)[0]

    def address(self, name: str, network: str) -> str:
        return str(self.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"])

    def logs(self, name: str) -> str:
        result = self.run("logs", "--tail", "40", name, check=False)
        return result.stdout + result.stderr

    def remove_everything(self) -> None:
        """Containers, images and the store itself (the overlay mounts go with the containers)."""
        self.run("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
        self.run("rmi", "--all", "--force", check=False, timeout=120)
        shutil.rmtree(self.home, ignore_errors=True)
