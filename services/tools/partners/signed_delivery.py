"""Signed POSTs from a partner double to the service it calls back (the carrier's callbacks,
the PSP's settlement webhooks), retried with jittered exponential backoff until a 2xx."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.eventing.log_setup import get_logger

log = get_logger(__name__)

SignedHeaders = Callable[[int], dict[str, str]]  # unix seconds -> the signature headers


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from `start_s`, doubling up to `cap_s`, each wait shortened by up to 20 %.

    `give_up_after_s`: stop retrying after that long (None: retry until a 2xx). `retried_4xx`:
    the only 4xx answers that are retried, any other is a refusal (None: retry every 4xx).
    """

    start_s: float
    cap_s: float
    give_up_after_s: float | None = None
    retried_4xx: frozenset[int] | None = None

    def refuses(self, outcome: int | str) -> bool:
        """True for a 4xx answer that is final."""
        if not isinstance(outcome, int) or not 400 <= outcome < 500:
            return False
        return self.retried_4xx is not None and outcome not in self.retried_4xx


async def post_signed_once(
    session: aiohttp.ClientSession, url: str, body: bytes, signed_headers: SignedHeaders
) -> int | str:
    """POST `body` (exactly as signed) once, signed with a fresh timestamp (a long outage
    doesn't make the signature stale): the HTTP status, or what went wrong."""
    headers = {"Content-Type": "application/json", **signed_headers(int(time.time()))}
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            return answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


async def post_until_acknowledged(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    signed_headers: SignedHeaders,
    *,
    policy: RetryPolicy,
    jitter: random.Random,
    what: str,
    **log_fields: Any,
) -> bool:
    """POST `body` until a 2xx (True), a refusal or giving up (False), as `policy` says.

    Every log line is "{what} delivered", "{what} not delivered, retrying", "{what} refused,
    not retried" or "{what} given up", with `log_fields`.
    """
    loop = asyncio.get_running_loop()
    give_up_at = None if policy.give_up_after_s is None else loop.time() + policy.give_up_after_s
    backoff_s = policy.start_s
    for try_no in itertools.count(1):
        outcome = await post_signed_once(session, url, body, signed_headers)
        if isinstance(outcome, int) and 200 <= outcome < 300:
            log.info(f"{what} delivered", try_no=try_no, status=outcome, **log_fields)
            return True
        if policy.refuses(outcome):
            log.error(f"{what} refused, not retried", status=outcome, **log_fields)
            return False
        if give_up_at is not None and loop.time() + backoff_s > give_up_at:
            log.error(f"{what} given up", try_no=try_no, last_outcome=outcome, **log_fields)
            return False
        log.warning(
            f"{what} not delivered, retrying",
            try_no=try_no,
            outcome=outcome,
            retry_in_ms=round(backoff_s * 1000),
            **log_fields,
        )
        await asyncio.sleep(backoff_s * jitter.uniform(0.8, 1.0))
        backoff_s = min(backoff_s * 2, policy.cap_s)
    raise AssertionError("unreachable")  # itertools.count never ends
