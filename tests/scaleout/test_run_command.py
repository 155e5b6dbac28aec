"""`make run REPLICAS=3 DB=postgres`: two gateways, three replicas of each service on PostgreSQL,
the gateways' pools listing every replica. Checked on the plan the command prints with
--dry-run (test_scale_out.py starts the same shape for real)."""

from __future__ import annotations

import json
import subprocess
import sys

from devstack.stack import ROOT


def test_make_run_passes_replicas_and_db_to_the_stack() -> None:
    result = subprocess.run(
        # --no-print-directory: under `make test` this is a sub-make, which would otherwise
        # end its output with a "Leaving directory" line.
        ["make", "--no-print-directory", "-n", "run", "REPLICAS=3", "DB=postgres"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    assert "-m devstack --replicas 3 --db postgres" in result.stdout.splitlines()[-1]


def test_the_scale_out_plan() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "devstack", "--replicas", "3", "--db", "postgres", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
    )
    plan = {process["name"]: process for process in json.loads(result.stdout)}
    services = ("users", "orders", "auth")
    assert [n for n in plan if n.startswith("gateway")] == ["gateway-1", "gateway-2"]
    replica_urls = {}
    for service in services:
        names = [f"{service}-{i}" for i in (1, 2, 3)]
        assert [n for n in plan if n.startswith(service)] == names
        urls = [f"http://{plan[n]['env']['PASSGATE_HOST']}:{plan[n]['env']['PASSGATE_PORT']}" for n in names]
        assert len(set(urls)) == 3
        replica_urls[service] = urls
        databases = {plan[n]["env"]["PASSGATE_DATABASE_URL"] for n in names}
        assert len(databases) == 1, "the replicas of a service share its database"
        assert databases.pop().startswith("postgresql://")
    all_databases = {plan[f"{s}-1"]["env"]["PASSGATE_DATABASE_URL"] for s in services}
    assert len(all_databases) == 3, "each service owns its database"
    for gateway in ("gateway-1", "gateway-2"):
        env = plan[gateway]["env"]
        for service in services:
            assert env[f"PASSGATE_UPSTREAM_{service.upper()}"].split(",") == replica_urls[service]
    # Each gateway reads the public keys from an auth replica, not all from the same one.
    jwks = [plan[g]["env"]["PASSGATE_JWKS_URL"] for g in ("gateway-1", "gateway-2")]
    assert [url.removesuffix("/.well-known/jwks.json") for url in jwks] == replica_urls["auth"][:2]
    # One issuer for the whole system: a token from any auth replica is valid at any gateway.
    issuers = {p["env"]["PASSGATE_ISSUER"] for n, p in plan.items() if n.startswith(("auth", "gateway"))}
    assert len(issuers) == 1
    keys = {p["env"]["PASSGATE_SIGNING_KEYS_DIR"] for n, p in plan.items() if n.startswith("auth")}
    assert len(keys) == 1, "every auth replica signs with the same key set"
    # Start order: the services, then the gateways (whose readiness needs auth's key set).
    order = [name.rsplit("-", 1)[0] for name in plan]
    last_service = max(i for i, component in enumerate(order) if component in services)
    assert order.index("gateway") > last_service
