"""deploy/k8s/create-secrets.sh makes exactly the Secrets the manifests reference (dry run:
it prints the manifests instead of applying them, so no cluster is needed)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.k8s.k8s_render import K8S, NAMESPACE, kubectl_binary
from services.auth.keyring.signing_keys import read_key_set
from tests.k8s.k8s_objects import containers, secret_volumes, workloads

SCRIPT = K8S / "create-secrets.sh"


def run_script(overlay: str, tmp_path, **extra: str) -> subprocess.CompletedProcess[str]:
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "keys.json").write_text('{"keys": []}')
    (keys / "k1.pem").write_text("not a real key")
    env = {
        "PATH": os.environ["PATH"], "DRY_RUN": "1", "KUBECTL": kubectl_binary(),
        "KEYS_DIR": str(keys), "KUBECONFIG": str(tmp_path / "no-kubeconfig"), **extra,
    }
    return subprocess.run(["bash", str(SCRIPT), overlay], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def referenced(objects) -> set[str]:
    names = set()
    for workload in workloads(objects):
        names |= secret_volumes(workload)
        for container in containers(workload, init=True):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
    return names


def secrets(output: str) -> dict[str, dict[str, str]]:
    found = {}
    for doc in yaml.safe_load_all(output):
        if doc:
            assert doc["kind"] == "Secret" and doc["metadata"]["namespace"] == NAMESPACE
            found[doc["metadata"]["name"]] = {
                k: base64.b64decode(v).decode() for k, v in doc["data"].items()
            }
    return found


def test_dev_secrets_cover_every_reference(rendered, tmp_path):
    """dev: signing keys from the directory, random database passwords, URLs that use them."""
    result = run_script("dev", tmp_path)
    assert result.returncode == 0, result.stderr
    made = secrets(result.stdout)
    assert set(made) == referenced(rendered["dev"])
    assert set(made["auth-signing-keys"]) == {"keys.json", "k1.pem"}
    for svc in ("auth", "users", "orders"):
        password = made[f"{svc}-db-credentials"]["password"]
        assert len(password) == 32
        assert made[f"{svc}-database"]["url"] == f"postgresql://{svc}:{password}@{svc}-db:5432/{svc}"
    assert made["passgate-redis"]["url"] == "redis://redis:6379/0"
    again = secrets(run_script("dev", tmp_path).stdout)
    assert again["auth-db-credentials"] != made["auth-db-credentials"], "passwords are random"


def test_prod_secrets_from_the_environment(rendered, tmp_path):
    """prod: database URLs (and optionally Redis) come from the operator's environment."""
    urls = {f"{s.upper()}_DATABASE_URL": f"postgresql://{s}:pw@db.internal:5432/{s}"
            for s in ("auth", "users", "orders")}
    result = run_script("prod", tmp_path, **urls, REDIS_URL="rediss://cache.internal:6380/0")
    assert result.returncode == 0, result.stderr
    made = secrets(result.stdout)
    assert set(made) == referenced(rendered["prod"])
    assert made["users-database"]["url"] == urls["USERS_DATABASE_URL"]


@pytest.mark.parametrize("overlay", ["prod", "staging"])
def test_refuses_incomplete_input(tmp_path, overlay):
    """prod without database URLs, or an unknown overlay, fails without printing a Secret."""
    result = run_script(overlay, tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""


def test_external_signin_client_secrets(rendered, tmp_path):
    """With OIDC_CLIENT_SECRETS_DIR the script adds auth-oidc-clients, one key per file, so the
    prod overlay with the external-signin component finds every Secret it references; an
    empty directory is refused."""
    clients = tmp_path / "oidc"
    clients.mkdir()
    urls = {f"{s.upper()}_DATABASE_URL": f"postgresql://{s}:pw@db.internal:5432/{s}"
            for s in ("auth", "users", "orders")}
    result = run_script("prod", tmp_path, **urls, OIDC_CLIENT_SECRETS_DIR=str(clients))
    assert result.returncode != 0 and "no client secrets" in result.stderr
    (clients / "google").write_text("s3cret")
    result = run_script("prod", tmp_path, **urls, REDIS_URL="rediss://cache.internal:6380/0",
                        OIDC_CLIENT_SECRETS_DIR=str(clients))
    assert result.returncode == 0, result.stderr
    made = secrets(result.stdout)
    assert set(made) == referenced(rendered["external-signin"])
    assert made["auth-oidc-clients"] == {"google": "s3cret"}


def test_generates_the_first_signing_key(rendered, tmp_path):
    """Without KEYS_DIR the script makes the key set with the real `passgate-auth rotate-keys`
    (an empty directory gets a first key that signs at once), and auth's own loader reads the
    Secret's files back."""
    env = {
        "PATH": os.environ["PATH"], "DRY_RUN": "1", "KUBECTL": kubectl_binary(),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        "PASSGATE_AUTH": str(Path(sys.executable).parent / "passgate-auth"),
    }
    result = subprocess.run(["bash", str(SCRIPT), "dev"], capture_output=True, text=True,
                            timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    files = secrets(result.stdout)["auth-signing-keys"]
    keys_dir = tmp_path / "from-secret"
    keys_dir.mkdir()
    for name, content in files.items():
        (keys_dir / name).write_text(content)
    (key,) = read_key_set(keys_dir)
    assert key.not_before <= dt.datetime.now(dt.UTC)  # it signs from the start
