"""The PSP double's settlement webhooks: when a pending refund ends (succeeded or failed),
a signed POST to `PSP_WEBHOOK_URL` (`PSP_SIGNATURE` headers), retried until a 2xx, and maybe
(fault plan) sent a second time: receivers must take a webhook twice without harm."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable

import aiohttp
import structlog

from services.eventing.log_setup import get_logger
from services.eventing.webhook_signature import PSP_SIGNATURE
from services.tools.partners.psp_refunds import SUCCEEDED, Refund
from services.tools.partners.psp_settings import PspFaults, PspSettings
from services.tools.partners.signed_delivery import RetryPolicy, post_until_acknowledged

WEBHOOK_SETTLED = "refund.settled"
WEBHOOK_FAILED = "refund.failed"
WEBHOOK_REQUEST_TIMEOUT_S = 10.0
WEBHOOK_RETRIES = RetryPolicy(start_s=0.5, cap_s=10.0)  # until a 2xx, however long it takes

log = get_logger(__name__)


class SettlementWebhooks:
    """One delivery loop per webhook_id at a time; `acknowledged(refund)` after the first 2xx.

    `current_faults` gives the plan in force (it can change while a webhook is on its way).
    """

    def __init__(
        self,
        settings: PspSettings,
        current_faults: Callable[[], PspFaults],
        acknowledged: Callable[[Refund], None],
    ) -> None:
        self._url = settings.webhook_url
        self._secret = settings.webhook_secret.encode()
        self._current_faults = current_faults
        self._acknowledged = acknowledged
        self._deliveries: dict[str, asyncio.Task[None]] = {}  # webhook_id -> its loop
        self._session: aiohttp.ClientSession | None = None
        self._backoff_jitter = random.Random()  # separate from the plan's seeded stream

    @property
    def enabled(self) -> bool:
        """A PSP_WEBHOOK_URL is set: there is somewhere to send webhooks."""
        return bool(self._url)

    def open(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_REQUEST_TIMEOUT_S)
        )

    async def close(self) -> None:
        await self.cancel_all()
        if self._session is not None:
            await self._session.close()

    def queue(self, refund: Refund) -> bool:
        """Start delivering the refund's webhook unless it is on its way already (one loop per
        webhook_id) or there is no PSP_WEBHOOK_URL; True if a delivery was started."""
        if not self._url:
            return False
        webhook_id = refund.webhook_id
        running = self._deliveries.get(webhook_id)
        if running is not None and not running.done():
            return False
        task = asyncio.create_task(self._deliver(refund, webhook_id))
        self._deliveries[webhook_id] = task
        task.add_done_callback(lambda done: self._forget(webhook_id, done))
        return True

    async def cancel_all(self) -> None:
        tasks = list(self._deliveries.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._deliveries.clear()

    def _forget(self, webhook_id: str, task: asyncio.Task[None]) -> None:
        if self._deliveries.get(webhook_id) is task:
            del self._deliveries[webhook_id]

    async def _deliver(self, refund: Refund, webhook_id: str) -> None:
        """POST the signed webhook until a 2xx, say it was acknowledged, and maybe (fault
        plan) send it once more."""
        webhook = {
            "webhook_id": webhook_id,
            "type": WEBHOOK_SETTLED if refund.status == SUCCEEDED else WEBHOOK_FAILED,
            "provider": refund.provider,
            "occurred_at": refund.updated_at,  # when it ended: the same on every re-send
            "refund": refund.webhook_json(),
        }
        body = json.dumps(webhook, sort_keys=True).encode()
        with structlog.contextvars.bound_contextvars(
            return_id=refund.return_id,
            refund_id=refund.refund_id,
            webhook_id=webhook_id,
            webhook_type=webhook["type"],
        ):
            await self._post(body, copy_no=1)
            self._acknowledged(refund)
            faults = self._current_faults()
            if faults.roll(faults.webhook_duplicate_rate):
                log.warning("injected fault: webhook sent a second time")
                await self._post(body, copy_no=2)

    async def _post(self, body: bytes, *, copy_no: int) -> None:
        """POST `body` (exactly as signed) until a 2xx: backoff from 0.5 s, doubling, 10 s cap."""
        assert self._session is not None and self._url is not None
        secret = self._secret
        await post_until_acknowledged(
            self._session,
            self._url,
            body,
            lambda now_s: PSP_SIGNATURE.signature_headers(secret, now_s, body),
            policy=WEBHOOK_RETRIES,
            jitter=self._backoff_jitter,
            what="webhook",
            copy_no=copy_no,
        )
