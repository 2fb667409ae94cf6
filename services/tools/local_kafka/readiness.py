"""Waiting for a cluster to answer: a metadata request that lists every broker."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from services.tools.local_kafka.cluster_settings import BrokerError


async def metadata_brokers(bootstrap: str) -> int:
    """How many brokers the cluster's metadata answer lists."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await client.bootstrap()  # sends a Metadata request and parses the answer
        return len(client.cluster.brokers())
    finally:
        await client.close()


def wait_until_ready(
    bootstrap: str,
    expected_brokers: int = 1,
    timeout: float = 90.0,
    on_timeout: Callable[[], str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Block until the cluster answers a metadata request listing every broker."""
    started = time.monotonic()
    last_error: Exception | None = None
    last_report = started
    client_log = logging.getLogger("aiokafka")
    previous_level = client_log.level
    client_log.setLevel(logging.CRITICAL)  # "connection refused" is expected while it starts
    try:
        while time.monotonic() - started < timeout:
            try:
                if asyncio.run(metadata_brokers(bootstrap)) >= expected_brokers:
                    if progress:
                        waited = time.monotonic() - started
                        progress(f"{bootstrap} answered a metadata request after {waited:.1f}s")
                    return
            except Exception as exc:
                last_error = exc
            if progress and time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                progress(f"waiting for {bootstrap} ... {last_report - started:.0f}s")
            time.sleep(0.5)
    finally:
        client_log.setLevel(previous_level)
    detail = on_timeout() if on_timeout else ""
    raise BrokerError(
        f"no metadata answer from {bootstrap} in {timeout:.0f}s ({last_error})\n{detail}"
    )
