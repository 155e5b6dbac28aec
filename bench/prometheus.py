"""Read figures off a service's Prometheus text (its admin /metrics), with prometheus_client's
own parser rather than by matching lines."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


def sample_values(text: str, sample: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample named `sample` (for example `http_server_requests_total`), by its labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample:
                found[tuple(sorted(s.labels.items()))] = s.value
    return found


def sample_total(text: str, sample: str, labels: Mapping[str, str] | None = None) -> float:
    """The sum of the samples named `sample` whose labels include `labels`."""
    wanted = set((labels or {}).items())
    return sum(v for key, v in sample_values(text, sample).items() if wanted <= set(key))


async def scrape(session: aiohttp.ClientSession, admin_port: int) -> str:
    async with session.get(f"http://127.0.0.1:{admin_port}/metrics") as response:
        response.raise_for_status()
        return await response.text()
