"""`make run`: start the whole system locally, print where to go, stop it all on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from devstack.stack import ROOT, PortPlan, Stack, StackConfig
from devstack.walkthrough import walkthrough

WATCH_INTERVAL = 0.5  # seconds between checks that every process still runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each service")
    parser.add_argument("--gateways", type=int, help="gateway processes (default 1, or 2 with replicas)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--database-pool-size",
        type=int,
        help="connection pool size of each replica (default: 3 on PostgreSQL, which every "
        "replica of every service shares, within its max_connections)",
    )
    parser.add_argument("--redis-url", help="share rate limits and login throttles through Redis")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data")
    parser.add_argument(
        "--base-port",
        type=int,
        help="listen on other ports: gateway N, auth N+1, users N+2, orders N+3, gateway admin "
        "N+9, browser demo N+10..N+12 (default: 8080, 8081, 8082, 8083, 9080, 3000..3002)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the processes and their environment as JSON; start nothing"
    )
    args = parser.parse_args(argv)
    if args.replicas < 1 or (args.gateways is not None and args.gateways < 1):
        parser.error("--replicas and --gateways must be at least 1")
    # Replica i listens at + 100 * i: the highest planned port must still be a port.
    if args.base_port is not None and not 1024 <= args.base_port <= 65535 - 12 - 100 * (
        max(args.replicas, args.gateways or 1) - 1
    ):
        parser.error("--base-port must leave room for every port it plans (1024 and up)")
    return args


def build_config(args: argparse.Namespace) -> StackConfig:
    """The stack `make run` starts: with replicas, two gateways whose pools list every replica."""
    gateways = args.gateways or (2 if args.replicas > 1 else 1)
    pool_size = args.database_pool_size or (3 if args.db == "postgres" else None)
    return StackConfig(
        data_dir=args.data_dir if args.db == "sqlite" else args.data_dir / "postgres",
        ports=PortPlan() if args.base_port is None else PortPlan.from_base(args.base_port),
        replicas=args.replicas,
        gateways=gateways,
        db=args.db,
        postgres_url=args.postgres_url,
        redis_url=args.redis_url,
        serve_frontend=True,
        database_pool_size=pool_size,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = build_config(args)
    if args.dry_run:
        print(json.dumps(Stack(config).plan(), indent=2))
        return 0
    stack = Stack(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("starting Passgate ...", flush=True)
    try:
        stack.start()
    except RuntimeError as error:
        print(f"could not start: {error}", file=sys.stderr)
        return 1
    print(summary(stack), flush=True)
    # Watch the processes: one that dies (a crash, a port lost, a database gone) stops the
    # whole system with its name and the end of its log, rather than leaving a system
    # that looks up and is not.
    while not stop.wait(WATCH_INTERVAL):
        exited = stack.exited()
        if exited:
            reports = "\n".join(process.exit_report() for process in exited)
            print(f"\n{reports}\nstopping everything ...", file=sys.stderr, flush=True)
            stack.stop()
            return 1
    print("\nstopping ...", flush=True)
    codes = stack.stop()
    failed = {name: code for name, code in codes.items() if code not in (0, None)}
    print("stopped" + (f" (non-zero exits: {failed})" if failed else ""), flush=True)
    return 0


def summary(stack: Stack) -> str:
    config = stack.config
    lines = ["", "Passgate is up.", ""]
    lines.append(f"  gateway (the public API)   {', '.join(stack.gateway_urls())}")
    admin = [stack.url("gateway_admin", i) for i in range(config.gateways)]
    lines.append(f"  gateway metrics            {', '.join(u + '/metrics' for u in admin)}")
    for service in ("auth", "users", "orders"):
        lines.append(f"  {service:<26} {', '.join(stack.replica_urls(service))}")
    if config.serve_frontend:
        a, b, refused = stack.frontend_origins
        lines += [
            "",
            f"  browser demo               {a}  and  {b}",
            f"  refused origin (not on the gateway's CORS list): {refused}",
        ]
    lines += ["", f"  data and logs              {config.data_dir}", "", "Try the token flow:", ""]
    lines.append(walkthrough(stack.gateway_url))
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
