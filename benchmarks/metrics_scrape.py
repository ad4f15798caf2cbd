"""Figures read from a component's Prometheus /metrics while a benchmark runs."""

from __future__ import annotations

from collections.abc import Collection

import aiohttp


def metric_values(exposition: str, names: Collection[str]) -> dict[str, float]:
    """The value of each of ``names`` in a Prometheus text exposition, summed over its
    labels (0 when absent)."""
    values = dict.fromkeys(names, 0.0)
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in values:
            values[name] += float(line.rsplit(" ", 1)[1])
    return values


async def scrape(
    http: aiohttp.ClientSession, url: str, names: Collection[str]
) -> dict[str, float] | None:
    """The figures of ``names`` at ``url`` (a /metrics), None if it did not answer."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return metric_values(await response.text(), names)
    except (aiohttp.ClientError, TimeoutError):
        return None
