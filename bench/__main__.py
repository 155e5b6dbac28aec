"""`make bench` (python -m bench): measure the gateway against direct, nginx, HAProxy,
bare-aiohttp and session-lookup baselines; print a markdown table and write it with the raw figures to
bench/results/<timestamp>.md and .json."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import shutil
import sys
from pathlib import Path

from bench.report import write_results
from bench.run import SCENARIO_NAMES, Bench, Options
from bench.summary import render


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run (8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (2)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (64)")
    parser.add_argument("--tokens", default="1000,10000,100000",
                        help="distinct-token steps of the memory scenario (1000,10000,100000)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 s runs, 1,000 + 2,000 tokens, a short profile")
    parser.add_argument("--python-load", action="store_true", help="use the Python load generator even with wrk")
    parser.add_argument("--skip", default="", help=f"comma list of scenarios to skip: {', '.join(SCENARIO_NAMES)}")
    parser.add_argument("--redis-url", default=Options.redis_url)
    parser.add_argument("--results-dir", type=Path, default=Options.results_dir)
    parser.add_argument("--keep", action="store_true", help="keep the stack's data directory (logs)")
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help="seconds to wait for a quiet machine before starting (60)")
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        concurrency=args.concurrency,
        token_steps=tuple(int(n) for n in args.tokens.split(",") if n.strip()),
        python_load=args.python_load,
        redis_url=args.redis_url,
        results_dir=args.results_dir,
        skip=frozenset(s.strip() for s in args.skip.split(",") if s.strip()),
    )
    if args.quick:
        options = dataclasses.replace(options, duration=2.0, warmup=1.0, token_steps=(1000, 2000),
                                      profile_seconds=3.0)
    return dataclasses.replace(options, keep=args.keep, wait_quiet=args.wait_quiet)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    bench = Bench(options)
    try:
        data = asyncio.run(bench.run())
        raw = data["extra"].get("profile", {}).pop("raw_path", None)
        if raw and Path(raw).exists():
            options.results_dir.mkdir(parents=True, exist_ok=True)
            kept = options.results_dir / f"{stamp}-gateway-profile.collapsed.txt"
            shutil.copyfile(raw, kept)
            data["extra"]["profile"]["collapsed_stacks"] = str(kept)
    finally:
        if options.keep:
            print(f"data and logs kept in {bench.data_dir}")
        else:
            bench.cleanup_data()
    markdown = render(data)
    md_path, json_path = write_results(options.results_dir, stamp, markdown, data)
    print()
    print(markdown)
    print(f"written: {md_path} and {json_path}")
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
