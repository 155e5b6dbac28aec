"""The Python load generator, used when wrk is not installed, and for count-bounded runs
(each of N distinct tokens sent once). Keep-alive HTTP/1.1 over raw asyncio streams: an
HTTP client library would cost more CPU per request than some servers it measures.

    python -m bench.pyload --url URL --concurrency 64 --duration 8 [--header 'K: V' ...]
                           [--tokens-file FILE [--once]]

prints one JSON object with the same fields as the wrk summary (latencies in microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit


class HttpConnection:
    """One keep-alive connection; sends a prepared request, reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send `request`, read the response; returns (status, keep_alive)."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, chunked, keep_alive = 0, False, True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection" and "close" in value.lower():
                keep_alive = False
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status, keep_alive

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


def build_request(method: str, url: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise(latencies_s: list[float], duration: float, counts: dict[str, int]) -> dict:
    values = sorted(v * 1e6 for v in latencies_s)
    return {
        "requests": len(values),
        "duration_s": duration,
        **counts,
        "latency_us": {
            "mean": sum(values) / len(values) if values else 0.0,
            "max": values[-1] if values else 0.0,
            "p50": percentile(values, 0.50),
            "p90": percentile(values, 0.90),
            "p99": percentile(values, 0.99),
            "p999": percentile(values, 0.999),
        },
    }


async def run_load(
    url: str,
    *,
    concurrency: int,
    duration: float,
    requests: Sequence[bytes],
    once: bool = False,
) -> dict:
    """Keep `concurrency` requests in flight for `duration` seconds, cycling through
    `requests`; with `once`, send each request once (still stopping at `duration`)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    counts = {"connect_errors": 0, "read_errors": 0, "write_errors": 0, "http_errors": 0, "timeouts": 0}
    next_index = 0
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        nonlocal next_index
        connection: HttpConnection | None = None
        try:
            while time.perf_counter() < deadline:
                if once and next_index >= len(requests):
                    return
                request = requests[next_index % len(requests)]
                next_index += 1
                if connection is None:
                    try:
                        connection = await HttpConnection.open(host, port)
                    except OSError:
                        counts["connect_errors"] += 1
                        await asyncio.sleep(0.01)
                        continue
                sent = time.perf_counter()
                try:
                    status, keep_alive = await asyncio.wait_for(
                        connection.exchange(request), max(0.001, deadline + 5 - sent)
                    )
                except TimeoutError:
                    counts["timeouts"] += 1
                    await connection.close()
                    connection = None
                    continue
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    counts["read_errors"] += 1
                    await connection.close()
                    connection = None
                    continue
                latencies.append(time.perf_counter() - sent)
                if status >= 400:
                    counts["http_errors"] += 1
                if not keep_alive:
                    await connection.close()
                    connection = None
        finally:
            if connection is not None:
                await connection.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarise(latencies, time.perf_counter() - start, counts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyload", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("--tokens-file", help="one bearer token a line, rotated or sent --once")
    parser.add_argument("--once", action="store_true", help="send each token once")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {name.strip(): value.strip() for name, value in headers.items()}
    if args.tokens_file:
        with open(args.tokens_file) as file:
            tokens = [line.strip() for line in file if line.strip()]
        requests = [
            build_request(args.method, args.url, headers | {"Authorization": f"Bearer {token}"})
            for token in tokens
        ]
    else:
        requests = [build_request(args.method, args.url, headers)]
    result = asyncio.run(
        run_load(
            args.url,
            concurrency=args.concurrency,
            duration=args.duration,
            requests=requests,
            once=args.once,
        )
    )
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
