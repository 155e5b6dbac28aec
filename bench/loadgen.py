"""Run a load generator (wrk, or bench.pyload without it) pinned to the load core."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.peer import apt_install

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")
ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class LoadResult:
    tool: str
    concurrency: int
    requests: int
    duration_s: float
    errors: int  # connection errors, timeouts and responses with status >= 400
    latency_us: Mapping[str, float]

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def p50_ms(self) -> float:
        return self.latency_us["p50"] / 1000

    @property
    def p99_ms(self) -> float:
        return self.latency_us["p99"] / 1000

    @classmethod
    def from_summary(cls, tool: str, concurrency: int, summary: Mapping) -> LoadResult:
        errors = sum(
            int(summary.get(k, 0))
            for k in ("connect_errors", "read_errors", "write_errors", "http_errors", "timeouts")
        )
        return cls(
            tool=tool,
            concurrency=concurrency,
            requests=int(summary["requests"]),
            duration_s=float(summary["duration_s"]),
            errors=errors,
            latency_us=dict(summary["latency_us"]),
        )


def find_wrk() -> str | None:
    return shutil.which("wrk")


def install_wrk() -> str | None:
    """wrk from Debian when we are root and it is missing; None if that fails."""
    return apt_install(("wrk",), find_wrk, timeout=180)


class LoadGenerator:
    """Starts one load run at a time as a subprocess on `cores` (None: unpinned)."""

    def __init__(self, wrk: str | None, cores: set[int] | None) -> None:
        self.wrk = wrk
        self.cores = cores

    @property
    def tool(self) -> str:
        return "wrk" if self.wrk else "bench.pyload"

    def _taskset(self, cores: set[int] | None) -> list[str]:
        cores = self.cores if cores is None else cores
        if not cores or not shutil.which("taskset"):
            return []
        return ["taskset", "-c", ",".join(str(c) for c in sorted(cores))]

    async def run(
        self,
        url: str,
        *,
        concurrency: int,
        duration: float,
        headers: Mapping[str, str] | None = None,
        tokens_file: Path | None = None,
        once: bool = False,
        cores: set[int] | None = None,
        python: bool = False,
    ) -> LoadResult:
        """One run. `once` (each token sent once) always uses the Python generator: wrk
        has no request count limit."""
        headers = dict(headers or {})
        env = dict(os.environ)
        if self.wrk and not once and not python:
            command = [self.wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
                       "--timeout", "10s", "-s", str(WRK_SCRIPT)]
            for name, value in headers.items():
                command += ["-H", f"{name}: {value}"]
            command.append(url)
            env["BENCH_TOKENS_FILE"] = str(tokens_file) if tokens_file else ""
            tool = "wrk"
        else:
            command = [sys.executable, "-m", "bench.pyload", "--url", url,
                       f"--concurrency={concurrency}", f"--duration={duration}"]
            for name, value in headers.items():
                command += ["--header", f"{name}: {value}"]
            if tokens_file:
                command += ["--tokens-file", str(tokens_file)]
            if once:
                command.append("--once")
            tool = "bench.pyload"
        process = await asyncio.create_subprocess_exec(
            *self._taskset(cores), *command, cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"{tool} failed ({process.returncode}): {err.decode(errors='replace')[-2000:]}")
        return LoadResult.from_summary(tool, concurrency, parse_summary(text))


def parse_summary(text: str) -> dict:
    """The JSON summary line from wrk (prefixed BENCH_JSON) or bench.pyload (bare)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("BENCH_JSON "):
            return json.loads(line.removeprefix("BENCH_JSON "))
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no summary in load generator output: {text[-2000:]}")
