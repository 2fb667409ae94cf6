"""How long a fetch waits at the broker, by whether records are coming.

aiokafka fixes its fetch settings per consumer; its fetcher reads them again for every
request it builds, so they are set between polls. Busy (the last poll brought records): a
fetch waits up to `fetch_wait_ms` for 64 KB, so one request carries many records under load.
Idle (the last poll brought none): a fetch returns as soon as one record is there, or after
IDLE_WAIT_MS: an idle consumer asks the broker twice a second instead of every
`fetch_wait_ms` (an idle service and the broker spent 0.07 and 0.45 of a core at 20 ms,
docs/performance.md), and the first record after a pause is not held back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.eventing.log_setup import get_logger

BUSY_MIN_BYTES = 64 * 1024
IDLE_WAIT_MS = 500
log = get_logger(__name__)


@dataclass(frozen=True)
class FetchTerms:
    min_bytes: int
    max_wait_ms: int


IDLE = FetchTerms(1, IDLE_WAIT_MS)


def terms_after_poll(brought_records: bool, busy_wait_ms: int) -> FetchTerms:
    return FetchTerms(BUSY_MIN_BYTES, busy_wait_ms) if brought_records else IDLE


class FetchPace:
    """Applies the terms to a started consumer's fetcher after each poll (a fetcher without
    the two settings, another aiokafka, keeps the consumer's own: busy terms throughout)."""

    def __init__(self, consumer: Any, busy_wait_ms: int) -> None:
        self.busy_wait_ms = busy_wait_ms
        fetcher = getattr(consumer, "_fetcher", None)
        settable = all(
            isinstance(getattr(fetcher, name, None), int)
            for name in ("_fetch_min_bytes", "_fetch_max_wait_ms")
        )
        if not settable:
            log.warning("the fetcher's wait cannot be paced: the consumer's settings stay")
        self._fetcher = fetcher if settable else None
        self.terms = FetchTerms(BUSY_MIN_BYTES, busy_wait_ms)

    def after_poll(self, brought_records: bool) -> FetchTerms:
        terms = terms_after_poll(brought_records, self.busy_wait_ms)
        if terms != self.terms and self._fetcher is not None:
            self._fetcher._fetch_min_bytes = terms.min_bytes
            self._fetcher._fetch_max_wait_ms = terms.max_wait_ms
            self.terms = terms
        return self.terms
