"""Where the gateway's time goes: py-spy samples of the live process, summarised.

py-spy writes collapsed stacks (`frame;frame;... count`, outermost first). The summary
groups samples by the innermost frame's area (token checks, HTTP server, upstream client,
metrics, logging ...), and lists the functions with the most inclusive and self time.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import shutil
import sys
from pathlib import Path
from typing import Any

# Area of a frame, by the file it is in; the first pattern that matches wins.
AREAS: tuple[tuple[str, str], ...] = (
    ("token verification (PyJWT, cryptography)", r"/(jwt|cryptography)/"),
    ("gateway: token checks", r"/gateway/(tokens|jwks)\.py"),
    ("gateway: rate limiting", r"/gateway/ratelimit"),
    ("gateway: CORS", r"/gateway/cors|/aiohttp_cors/"),
    ("gateway: proxy", r"/gateway/proxy"),
    ("gateway: routing, auth and app", r"/gateway/"),
    ("metrics (prometheus_client, common.metrics)", r"/prometheus_client/|/common/metrics"),
    ("logging (access log, JSON)", r"/logging/|/common/logging"),
    ("database (SQLAlchemy, aiosqlite, sqlite3, asyncpg)", r"/sqlalchemy/|/aiosqlite/|/asyncpg/|/sqlite3/"),
    ("validation (jsonschema)", r"/jsonschema/|/referencing/|/rpds/|/common/validation"),
    ("orders service", r"/services/orders/"),
    ("request context, errors, tracing (common)", r"/common/"),
    ("upstream HTTP client (aiohttp client)", r"/aiohttp/(client|connector|streams|http_writer|client_reqrep|client_proto|tcp_helpers|cookiejar)"),
    ("HTTP server (aiohttp web)", r"/aiohttp/|/multidict/|/yarl/"),
    ("event loop (asyncio)", r"/asyncio/|/uvloop/"),
)
# Innermost frames that mean "waiting", not working: a worker thread blocked on its queue
# (py-spy does not always see these threads as idle).
IDLE_LEAVES = frozenset({
    ("_connection_worker_thread", "aiosqlite/core.py"),
    ("_worker", "concurrent/futures/thread.py"),
})
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


def area_of(filename: str) -> str:
    for area, pattern in AREAS:
        if re.search(pattern, filename):
            return area
    return "other"


REPOSITORY = f"{Path(__file__).resolve().parent.parent}/"


def short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", REPOSITORY):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" and "/" in tail else tail
    return filename


@dataclasses.dataclass(frozen=True)
class Frame:
    func: str
    file: str

    @classmethod
    def parse(cls, text: str) -> Frame:
        match = _FRAME.match(text.strip())
        if match is None:
            return cls(text.strip(), "")
        return cls(match["func"], match["file"])

    def label(self) -> str:
        return f"{self.func} ({short(self.file)})"


def summarise_raw(raw: str, *, top: int = 15) -> dict[str, Any]:
    """Self time by area, and the top functions by inclusive and by self samples."""
    by_area: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    total = waiting = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [Frame.parse(part) for part in stack.split(";") if part.strip()]
        if not frames:
            continue
        if any(frames[-1].func == func and frames[-1].file.endswith(tail) for func, tail in IDLE_LEAVES):
            waiting += count
            continue
        total += count
        leaf = frames[-1]
        # The innermost frame that is not the standard library decides the area, so that
        # time in, say, `re` or `json` called from the gateway counts for the gateway.
        by_area[next((a for a in (area_of(f.file) for f in reversed(frames)) if a != "other"), "other")] += count
        self_time[leaf.label()] += count
        for label in {frame.label() for frame in frames}:
            inclusive[label] += count

    def share(counter: collections.Counter[str], n: int | None = None) -> list[dict[str, Any]]:
        return [{"name": name, "samples": count, "pct": 100 * count / total if total else 0.0}
                for name, count in counter.most_common(n)]

    return {
        "samples": total,
        "waiting_samples_left_out": waiting,
        "by_area": share(by_area),
        "top_inclusive": share(inclusive, top * 2),
        "top_self": share(self_time, top),
    }


class PySpy:
    def __init__(self, binary: str) -> None:
        self.binary = binary

    @classmethod
    def find(cls) -> PySpy | None:
        candidate = Path(sys.executable).with_name("py-spy")
        binary = str(candidate) if candidate.exists() else shutil.which("py-spy")
        return cls(binary) if binary else None

    async def record(self, pid: int, output: Path, *, seconds: float, cores: set[int] | None,
                     rate: int = 200) -> None:
        taskset = ["taskset", "-c", ",".join(map(str, sorted(cores)))] if cores and shutil.which("taskset") else []
        process = await asyncio.create_subprocess_exec(
            *taskset, self.binary, "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", str(rate), "--format", "raw", "--full-filenames", "--nolineno",
            "--output", str(output),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        if process.returncode != 0 or not output.exists():
            raise RuntimeError(f"py-spy failed ({process.returncode}): {out.decode(errors='replace')[-2000:]}")
