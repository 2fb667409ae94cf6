"""Every service's /metrics read over HTTP and parsed (prometheus-client's own parser) into
samples for the KPIs (decisions/after_sales/kpi_readings.py). A source is a service
instance's /metrics, or Prometheus's /federate (where the samples name their job)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from services.decisions.after_sales.kpi_readings import MetricSample

SCRAPE_TIMEOUT_S = 3.0


@dataclass
class Scrape:
    samples: list[MetricSample] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # name → "ok" or why not


def parsed_samples(text: str, source: str) -> list[MetricSample]:
    """The samples of one exposition; each labelled with the `service` it came from (its
    job when Prometheus federates, else the source's name up to its instance mark '#')."""
    service = source.split("#", 1)[0]
    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            labels.setdefault("service", labels.get("job", service))
            labels.setdefault("instance", source)
            samples.append(MetricSample(sample.name, labels, float(sample.value)))
    return samples


async def scrape(session: aiohttp.ClientSession, sources: Mapping[str, str]) -> Scrape:
    """Every source at once; one that does not answer is reported, not fatal."""

    async def one(name: str, url: str) -> tuple[str, list[MetricSample] | str]:
        try:
            timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
            async with session.get(url, timeout=timeout) as response:
                if response.status != 200:
                    return name, f"HTTP {response.status}"
                return name, parsed_samples(await response.text(), name)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return name, f"{type(exc).__name__}: {exc}"[:200]
        except ValueError as exc:  # not an exposition the parser reads
            return name, f"unreadable metrics: {exc}"[:200]

    found = Scrape()
    for name, result in await asyncio.gather(*(one(n, u) for n, u in sources.items())):
        if isinstance(result, str):
            found.sources[name] = result
        else:
            found.sources[name] = "ok"
            found.samples += result
    return found
