"""Payment service provider double: a real local HTTP server that refunds buyers.

The refund service asks for a refund (`POST /refunds`, with an `Idempotency-Key`) and may void
a pending one (`POST /refunds/{refund_id}/void`). Every outcome, declines included, is
remembered per idempotency key, so a retried request never moves money twice. The ledger can
be kept in a JSON-lines file (`PSP_LEDGER_FILE`) so a restarted PSP still knows its refunds.

Refunds behave per payment method: EWALLET and STORE_CREDIT succeed at once; CARD succeeds or
is pending (`pending_rate`) and settles after `PSP_SETTLE_DELAY_MS`; DIRECT_DEBIT and
BANK_TRANSFER (which needs the buyer's `bank_account`) are always pending and settle after
`PSP_TRANSFER_SETTLE_MS` ("days", compressed); BNPL succeeds at once and reduces the order's
instalment plan (`bnpl_schedule`), paying back to the buyer only what exceeds what is still due.
A pending refund ends as succeeded, or failed (`settlement_failure_rate`: the bank sent the
money back), and the PSP then POSTs a signed settlement webhook to `PSP_WEBHOOK_URL`
(`psp_signature` headers), retried until a 2xx and re-sent after a restart if undelivered.

Faults (errors, latency, ghost successes, declines, pending refunds, failed settlements,
duplicate webhooks) come from a `PspFaults` plan set at start (`PSP_FAULTS`) or at run time
(`POST /admin/faults`).

    python -m services.tools.partners.psp_server
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import structlog
from aiohttp import web

from services.eventing.log_setup import get_logger
from services.refund import psp_signature
from services.tools.partners import bnpl_schedule, http_support
from services.tools.partners.fault_injection import FaultPlan, codes_field, rate_field

SERVICE_NAME = "psp"
DEFAULT_DECLINE_CODES = ("account_closed", "card_expired", "do_not_honor")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
MAX_AMOUNT_MINOR = 10**12

# refund statuses; pending and succeeded refunds have moved (or committed) money
SUCCEEDED = "succeeded"
PENDING = "pending"
DECLINED = "declined"
VOIDED = "voided"
FAILED = "failed"  # was pending, then the bank sent the money back: nothing moved
MONEY_MOVING = frozenset({SUCCEEDED, PENDING})
ENDED_FROM_PENDING = frozenset({SUCCEEDED, FAILED})  # with a settles_at: a webhook is due
SETTLEMENT_FAILURE_CODE = "account_closed"
BNPL_OVER_REFUND_CODE = "refund_exceeds_capture"

# payment methods (accepted in any case, kept upper-case)
CARD = "CARD"
EWALLET = "EWALLET"
BNPL = "BNPL"
DIRECT_DEBIT = "DIRECT_DEBIT"
BANK_TRANSFER = "BANK_TRANSFER"
STORE_CREDIT = "STORE_CREDIT"
METHODS = (CARD, EWALLET, BNPL, DIRECT_DEBIT, BANK_TRANSFER, STORE_CREDIT)
TRANSFERS = frozenset({DIRECT_DEBIT, BANK_TRANSFER})  # always pending, settle in "days"
BANK_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9]{6,34}")

# settlement webhooks: retried with exponential backoff until a 2xx
WEBHOOK_SETTLED = "refund.settled"
WEBHOOK_FAILED = "refund.failed"
WEBHOOK_BACKOFF_START_S = 0.5
WEBHOOK_BACKOFF_CAP_S = 10.0
WEBHOOK_REQUEST_TIMEOUT_S = 10.0

log = get_logger(__name__)


@dataclass
class PspFaults(FaultPlan):
    """The shared faults plus the PSP's own: declined and pending card refunds, pending
    refunds that fail when they settle, settlement webhooks delivered twice."""

    decline_rate: float = rate_field()
    decline_codes: tuple[str, ...] = codes_field(DEFAULT_DECLINE_CODES)
    declined_methods: tuple[str, ...] = codes_field(("ALL",))  # or e.g. ["CARD"]
    pending_rate: float = rate_field()
    settlement_failure_rate: float = rate_field()
    webhook_duplicate_rate: float = rate_field()


@dataclass(frozen=True)
class PspSettings:
    host: str = "127.0.0.1"
    port: int = 8092
    ledger_file: Path | None = None
    settle_delay_ms: int = 1000  # a pending card refund
    transfer_settle_ms: int = 3000  # DIRECT_DEBIT and BANK_TRANSFER: "days", compressed
    name: str = SERVICE_NAME  # the "provider" in every refund and webhook
    webhook_url: str | None = None  # settlement webhooks are sent only if set
    webhook_secret: str = "dev-psp-webhook-secret"
    faults: PspFaults = field(default_factory=PspFaults)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PspSettings:
        """Settings from `PSP_*` variables; ValueError names the variable that is wrong."""
        defaults = cls()
        faults = http_support.faults_from_env(PspFaults, env, "PSP_FAULTS")
        ledger_file = env.get("PSP_LEDGER_FILE")
        return cls(
            host=env.get("PSP_HOST") or defaults.host,
            port=http_support.env_int(env, "PSP_PORT", defaults.port, minimum=0),
            ledger_file=Path(ledger_file) if ledger_file else None,
            settle_delay_ms=http_support.env_int(
                env, "PSP_SETTLE_DELAY_MS", defaults.settle_delay_ms, minimum=0
            ),
            transfer_settle_ms=http_support.env_int(
                env, "PSP_TRANSFER_SETTLE_MS", defaults.transfer_settle_ms, minimum=0
            ),
            name=env.get("PSP_NAME") or defaults.name,
            webhook_url=env.get("PSP_WEBHOOK_URL") or None,
            webhook_secret=env.get("PSP_WEBHOOK_SECRET") or defaults.webhook_secret,
            faults=faults,
        )

    def settle_delay_for(self, method: str) -> int:
        """How long a pending refund of `method` takes to settle, in ms."""
        return self.transfer_settle_ms if method in TRANSFERS else self.settle_delay_ms


@dataclass(frozen=True)
class RefundRequest:
    return_id: str
    amount_minor: int
    currency: str
    method: str  # one of METHODS
    reference: str | None
    bank_account: dict[str, str] | None = None  # {"holder", "number", "bank_code"}
    order_ref: str | None = None  # BNPL: the order whose plan the refund reduces
    order_paid_minor: int | None = None  # BNPL: the order's total, to plan its instalments


@dataclass
class Refund:
    refund_id: str
    idempotency_key: str
    request_fingerprint: str
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str | None
    status: str  # succeeded | pending | declined | voided | failed
    decline_code: str | None
    created_at: int
    updated_at: int
    # defaults: ledger lines written before these fields existed still load
    provider: str = SERVICE_NAME
    settles_at: int | None = None  # set when the refund was pending (kept once it ended)
    bank_account: dict[str, str] | None = None  # the number masked but for its last 4
    order_ref: str | None = None
    order_paid_minor: int | None = None
    schedule: list[dict[str, Any]] | None = None  # BNPL: the order's plan after this refund
    refunded_to_buyer_minor: int | None = None  # BNPL: the part paid back to the buyer
    webhook_delivered: bool = False  # its settlement webhook was acknowledged with a 2xx

    def to_json(self) -> dict[str, Any]:
        """What callers see: everything but the request fingerprint, unset BNPL/bank details,
        and `webhook_delivered` unless the refund was pending (only those send webhooks);
        `provider`, `method` and `settles_at` are always there."""
        public = asdict(self)
        del public["request_fingerprint"]
        for optional in OPTIONAL_FIELDS:
            if public[optional] is None:
                del public[optional]
        if self.settles_at is None:
            del public["webhook_delivered"]
        return public

    def webhook_json(self) -> dict[str, Any]:
        """The refund as a settlement webhook carries it (the same bytes on every re-send)."""
        public = self.to_json()
        public.pop("webhook_delivered", None)
        return public

    @property
    def webhook_due(self) -> bool:
        """It was pending and has ended (succeeded or failed): the receiver must hear."""
        return self.settles_at is not None and self.status in ENDED_FROM_PENDING

    @property
    def webhook_id(self) -> str:
        return f"wh_{self.refund_id}_{self.status}"

    def change_status(self, status: str) -> None:
        self.status = status
        self.updated_at = http_support.now_ms()


OPTIONAL_FIELDS = (
    "bank_account",
    "order_ref",
    "order_paid_minor",
    "schedule",
    "refunded_to_buyer_minor",
)


@dataclass
class BnplOrder:
    """The instalment plan of one BNPL order, as its refunds so far have left it."""

    order_paid_minor: int
    schedule: bnpl_schedule.Schedule
    refunded_minor: int = 0  # sum of the order's refunds so far

    @classmethod
    def first_refund_at(cls, order_paid_minor: int, at_ms: int) -> BnplOrder:
        """The plan as the order was paid: 4 instalments (fewer for a tiny total), monthly."""
        instalments = min(bnpl_schedule.DEFAULT_INSTALMENTS, order_paid_minor)
        return cls(
            order_paid_minor,
            bnpl_schedule.plan(order_paid_minor, instalments, first_due_at_ms=at_ms),
        )

    def can_refund(self, amount_minor: int) -> bool:
        """Never more back in total than the buyer paid for the order."""
        return self.refunded_minor + amount_minor <= self.order_paid_minor

    def refund(self, amount_minor: int) -> int:
        """Apply one refund; what of it goes back to the buyer."""
        self.schedule, to_buyer = bnpl_schedule.apply_refund(self.schedule, amount_minor)
        self.refunded_minor += amount_minor
        return to_buyer

    def schedule_json(self) -> list[dict[str, Any]]:
        return [instalment.to_json() for instalment in self.schedule]


class LedgerFile:
    """Append-only JSON lines: every refund's new state, and resets; replayed at start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def load(self) -> list[Refund]:
        """The latest state of every refund written since the last reset, oldest first."""
        refunds: dict[str, Refund] = {}
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            for line_no, line in enumerate(lines, start=1):
                try:
                    entry = json.loads(line)
                    if entry["op"] == "reset":
                        refunds.clear()
                    else:
                        refund = Refund(**entry["refund"])
                        refunds[refund.refund_id] = refund
                except (ValueError, KeyError, TypeError) as exc:
                    # a crash can leave a torn last line; everything before it still counts
                    log.warning("ledger line skipped", line_no=line_no, error=str(exc))
        return list(refunds.values())

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn_last_line = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                torn_last_line = existing.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if torn_last_line:  # start our lines on a fresh line
            self._file.write("\n")

    def append(self, entry: dict[str, Any]) -> None:
        assert self._file is not None, "the ledger file is not open"
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class PspDouble(http_support.PartnerDouble[PspFaults, Refund]):
    """State and handlers of one PSP double; everything runs on one event loop."""

    def __init__(self, settings: PspSettings) -> None:
        super().__init__(settings.faults, partner="payment provider")
        self.settings = settings
        self.refunds: dict[str, Refund] = {}
        self.bnpl_orders: dict[str, BnplOrder] = {}  # order_ref -> its plan
        self._settlements: dict[str, asyncio.Task[None]] = {}
        self._webhooks: dict[str, asyncio.Task[None]] = {}  # webhook_id -> its delivery loop
        self._ledger = LedgerFile(settings.ledger_file) if settings.ledger_file else None
        self._session: aiohttp.ClientSession | None = None
        self._backoff_jitter = random.Random()  # separate from the plan's seeded stream

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: reload the ledger, settle what was pending, re-send the
        webhooks never delivered, then tidy up."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=WEBHOOK_REQUEST_TIMEOUT_S)
        )
        undelivered = 0
        if self._ledger is not None:
            for refund in self._ledger.load():  # oldest first: BNPL plans replay in order
                self._remember(refund)
                self._replay_bnpl(refund)
                if refund.status == PENDING:
                    self._schedule_settlement(refund)
                elif refund.webhook_due and not refund.webhook_delivered:
                    undelivered += self._queue_webhook(refund)
            self._ledger.open()
        log.info(
            "psp double ready",
            port=self.settings.port,
            provider=self.settings.name,
            ledger_file=str(self.settings.ledger_file or ""),
            webhook_url=self.settings.webhook_url or "",
            refunds_loaded=len(self.refunds),
            bnpl_orders_loaded=len(self.bnpl_orders),
            webhooks_resent=undelivered,
            faults=self.faults.to_dict(),
        )
        try:
            yield
        finally:
            self._cancel_settlements()
            await self._cancel_webhooks()
            await self._session.close()
            if self._ledger is not None:
                self._ledger.close()

    # --- refunds -------------------------------------------------------------------------

    @http_support.route("POST", "/refunds")
    async def create_refund(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        refund, created = await self.keys.create_once(request, _refund_request, self._create)
        if not created:
            log.info(
                "refund replayed",
                refund_id=refund.refund_id,
                return_id=refund.return_id,
                status=refund.status,
            )
            return _refund_answer(refund, created=False)
        log.info(
            "refund decided",
            refund_id=refund.refund_id,
            return_id=refund.return_id,
            method=refund.method,
            status=refund.status,
            decline_code=refund.decline_code,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
            settles_at=refund.settles_at,
            refunded_to_buyer_minor=refund.refunded_to_buyer_minor,
        )
        self.ghost_if_planned("refund")
        return _refund_answer(refund, created=True)

    @http_support.route("POST", "/refunds/{refund_id}/void")
    async def void_refund(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        refund = self._refund(request.match_info["refund_id"])
        request["return_id"] = refund.return_id
        if refund.status == SUCCEEDED:
            raise http_support.ApiError(
                409, "already_settled", "the refund has settled; it cannot be voided"
            )
        if refund.status == DECLINED:
            raise http_support.ApiError(
                409, "refund_declined", "the refund was declined; nothing to void"
            )
        if refund.status == FAILED:
            raise http_support.ApiError(
                409, "refund_failed", "the refund failed when it settled; nothing to void"
            )
        if refund.status == PENDING:
            refund.change_status(VOIDED)  # a voided refund sends no webhook
            self._save(refund)
            settlement = self._settlements.pop(refund.refund_id, None)
            if settlement is not None:
                settlement.cancel()
            log.info("refund voided", refund_id=refund.refund_id, return_id=refund.return_id)
            self.ghost_if_planned("void")
        return web.json_response(refund.to_json())

    @http_support.route("GET", "/refunds/{refund_id}")
    async def get_refund(self, request: web.Request) -> web.Response:
        refund = self._refund(request.match_info["refund_id"])
        request["return_id"] = refund.return_id
        return web.json_response(refund.to_json())

    @http_support.route("GET", "/refunds")
    async def list_refunds(self, request: web.Request) -> web.Response:
        listed = http_support.filter_by_return_id(request, self.refunds.values())
        return web.json_response({"refunds": [refund.to_json() for refund in listed]})

    @http_support.route("GET", "/refunds/stats")
    async def stats(self, _request: web.Request) -> web.Response:
        statuses = Counter(refund.status for refund in self.refunds.values())
        moving = [refund for refund in self.refunds.values() if refund.status in MONEY_MOVING]
        total_minor_by_currency: defaultdict[str, int] = defaultdict(int)
        for refund in moving:
            total_minor_by_currency[refund.currency] += refund.amount_minor
        per_return = Counter(refund.return_id for refund in moving)
        return web.json_response(
            {
                "refunds": len(moving),
                "declined": statuses[DECLINED],
                "voided": statuses[VOIDED],
                "failed": statuses[FAILED],
                "total_minor_by_currency": dict(total_minor_by_currency),
                "duplicates": sum(1 for n in per_return.values() if n > 1),
                "by_method": dict(Counter(refund.method for refund in moving)),
            }
        )

    # --- admin ---------------------------------------------------------------------------

    @http_support.route("POST", "/admin/reset")
    async def reset(self, _request: web.Request) -> web.Response:
        """Forget every refund (tests start from an empty ledger); the fault plan stays."""
        self._cancel_settlements()
        await self._cancel_webhooks()
        self.refunds.clear()
        self.bnpl_orders.clear()
        self.keys.records.clear()
        if self._ledger is not None:
            self._ledger.append({"op": "reset", "at": http_support.now_ms()})
        log.info("ledger reset")
        return web.json_response({"status": "reset"})

    @http_support.route("POST", "/admin/webhooks/redeliver")
    async def redeliver_webhooks(self, request: web.Request) -> web.Response:
        """Send again the webhook of every refund that ended after being pending (delivered or
        not), or only those of `{"return_id": ...}`: a replay drill for the receivers."""
        if not self.settings.webhook_url:
            raise http_support.ApiError(
                409, "no_webhook_url", "PSP_WEBHOOK_URL is not set; there is nowhere to send"
            )
        return_id = _optional_return_id(await _optional_json_object(request))
        if return_id is not None:
            request["return_id"] = return_id
        ended = [
            refund
            for refund in self.refunds.values()
            if refund.webhook_due and return_id in (None, refund.return_id)
        ]
        queued = sum(self._queue_webhook(refund) for refund in ended)
        log.info("webhooks redelivery queued", queued=queued, in_flight=len(ended) - queued)
        return web.json_response({"queued": queued, "in_flight": len(ended) - queued})

    # --- ledger --------------------------------------------------------------------------

    def _create(self, wanted: RefundRequest, key: str, fingerprint: str) -> Refund:
        """A new refund: decided, saved, and left to settle if it is pending."""
        refund = self._decide(wanted, key, fingerprint)
        self._save(refund)
        if refund.status == PENDING:
            self._schedule_settlement(refund)
        return refund

    def _decide(self, wanted: RefundRequest, key: str, fingerprint: str) -> Refund:
        """A decline from the plan first (any method), then what the method does."""
        faults = self.faults
        applies = "ALL" in faults.declined_methods or wanted.method in faults.declined_methods
        declined = applies and faults.roll(faults.decline_rate)
        decline_code = faults.rng.choice(faults.decline_codes) if declined else None
        if decline_code is not None:
            status = DECLINED
        elif wanted.method in TRANSFERS or (
            wanted.method == CARD and faults.roll(faults.pending_rate)
        ):
            status = PENDING
        else:
            status = SUCCEEDED  # CARD, EWALLET, STORE_CREDIT, BNPL: at once
        now = http_support.now_ms()
        refund = Refund(
            refund_id=f"rf_{uuid.uuid4().hex}",
            idempotency_key=key,
            request_fingerprint=fingerprint,
            return_id=wanted.return_id,
            amount_minor=wanted.amount_minor,
            currency=wanted.currency,
            method=wanted.method,
            reference=wanted.reference,
            status=status,
            decline_code=decline_code,
            created_at=now,
            updated_at=now,
            provider=self.settings.name,
            bank_account=_masked(wanted.bank_account),
            order_ref=wanted.order_ref,
            order_paid_minor=wanted.order_paid_minor,
        )
        if status == PENDING:
            refund.settles_at = now + self.settings.settle_delay_for(wanted.method)
        if status == SUCCEEDED and wanted.method == BNPL:
            self._refund_bnpl(refund)
        return refund

    def _refund_bnpl(self, refund: Refund) -> None:
        """Reduce the order's plan (made at its first refund); more than paid is declined."""
        assert refund.order_ref is not None and refund.order_paid_minor is not None
        order = self.bnpl_orders.get(refund.order_ref) or BnplOrder.first_refund_at(
            refund.order_paid_minor, refund.created_at
        )
        if order.order_paid_minor != refund.order_paid_minor:
            log.warning(
                "bnpl order_paid_minor differs from the plan's; the plan is kept",
                refund_id=refund.refund_id,
                return_id=refund.return_id,
                order_ref=refund.order_ref,
                plan_paid_minor=order.order_paid_minor,
                asked_paid_minor=refund.order_paid_minor,
            )
        if not order.can_refund(refund.amount_minor):
            refund.status = DECLINED
            refund.decline_code = BNPL_OVER_REFUND_CODE
            return
        self.bnpl_orders[refund.order_ref] = order
        refund.refunded_to_buyer_minor = order.refund(refund.amount_minor)
        refund.schedule = order.schedule_json()

    def _replay_bnpl(self, refund: Refund) -> None:
        """Rebuild the BNPL plans at start: the orders' refunds re-applied in order."""
        if refund.method != BNPL or refund.status != SUCCEEDED:
            return
        if refund.order_ref is None or refund.order_paid_minor is None:
            return
        order = self.bnpl_orders.get(refund.order_ref) or BnplOrder.first_refund_at(
            refund.order_paid_minor, refund.created_at
        )
        self.bnpl_orders[refund.order_ref] = order
        order.refund(refund.amount_minor)
        if refund.schedule is not None and refund.schedule != order.schedule_json():
            log.warning(
                "bnpl plan replayed differently from the ledger",
                refund_id=refund.refund_id,
                return_id=refund.return_id,
                order_ref=refund.order_ref,
            )

    def _remember(self, refund: Refund) -> None:
        self.refunds[refund.refund_id] = refund
        self.keys.records[refund.idempotency_key] = refund

    def _save(self, refund: Refund) -> None:
        """Remember the refund's new state, and write it to the ledger file if there is one."""
        self._remember(refund)
        if self._ledger is not None:
            self._ledger.append(
                {"op": "refund", "at": http_support.now_ms(), "refund": asdict(refund)}
            )

    def _refund(self, refund_id: str) -> Refund:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise http_support.ApiError(404, "not_found", f"no refund {refund_id!r}")
        return refund

    # --- settlement ----------------------------------------------------------------------

    def _schedule_settlement(self, refund: Refund) -> None:
        if refund.settles_at is None:  # pending in a ledger from before settles_at existed
            delay_ms = self.settings.settle_delay_for(refund.method)
            refund.settles_at = http_support.now_ms() + delay_ms
        self._settlements[refund.refund_id] = asyncio.create_task(self._settle(refund))

    async def _settle(self, refund: Refund) -> None:
        """A pending refund ends at `settles_at` (succeeded, or failed as the plan says)
        unless it was voided meanwhile; then its webhook goes out."""
        assert refund.settles_at is not None
        await asyncio.sleep(max(0, refund.settles_at - http_support.now_ms()) / 1000)
        self._settlements.pop(refund.refund_id, None)
        if refund.status != PENDING or self.refunds.get(refund.refund_id) is not refund:
            return
        if self.faults.roll(self.faults.settlement_failure_rate):
            refund.decline_code = SETTLEMENT_FAILURE_CODE
            refund.change_status(FAILED)
        else:
            refund.change_status(SUCCEEDED)
        self._save(refund)
        log.info(
            "refund settled" if refund.status == SUCCEEDED else "refund failed at settlement",
            refund_id=refund.refund_id,
            return_id=refund.return_id,
            method=refund.method,
            status=refund.status,
            decline_code=refund.decline_code,
        )
        self._queue_webhook(refund)

    def _cancel_settlements(self) -> None:
        for settlement in self._settlements.values():
            settlement.cancel()
        self._settlements.clear()

    # --- settlement webhooks -------------------------------------------------------------

    def _queue_webhook(self, refund: Refund) -> bool:
        """Start delivering the refund's webhook unless it is on its way already (one loop per
        webhook_id) or there is no PSP_WEBHOOK_URL; True if a delivery was started."""
        if not self.settings.webhook_url:
            return False
        webhook_id = refund.webhook_id
        running = self._webhooks.get(webhook_id)
        if running is not None and not running.done():
            return False
        task = asyncio.create_task(self._deliver_webhook(refund, webhook_id))
        self._webhooks[webhook_id] = task
        task.add_done_callback(lambda done: self._forget_webhook(webhook_id, done))
        return True

    def _forget_webhook(self, webhook_id: str, task: asyncio.Task[None]) -> None:
        if self._webhooks.get(webhook_id) is task:
            del self._webhooks[webhook_id]

    async def _cancel_webhooks(self) -> None:
        tasks = list(self._webhooks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._webhooks.clear()

    async def _deliver_webhook(self, refund: Refund, webhook_id: str) -> None:
        """POST the signed webhook until a 2xx, note the delivery (ledger), and maybe (fault
        plan) send it once more: receivers must take a webhook twice without harm."""
        settled = refund.status == SUCCEEDED
        webhook = {
            "webhook_id": webhook_id,
            "type": WEBHOOK_SETTLED if settled else WEBHOOK_FAILED,
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
            await self._post_until_acknowledged(body, copy_no=1)
            if not refund.webhook_delivered and self.refunds.get(refund.refund_id) is refund:
                refund.webhook_delivered = True
                self._save(refund)
            if self.faults.roll(self.faults.webhook_duplicate_rate):
                log.warning("injected fault: webhook sent a second time")
                await self._post_until_acknowledged(body, copy_no=2)

    async def _post_until_acknowledged(self, body: bytes, *, copy_no: int) -> None:
        """POST `body` (exactly as signed) until a 2xx: backoff from 0.5 s, doubling, 10 s cap."""
        assert self._session is not None and self.settings.webhook_url is not None
        secret = self.settings.webhook_secret.encode()
        backoff_s = WEBHOOK_BACKOFF_START_S
        for try_no in itertools.count(1):
            outcome = await http_support.post_signed_once(
                self._session,
                self.settings.webhook_url,
                body,
                lambda now_s: psp_signature.signature_headers(secret, now_s, body),
            )
            if isinstance(outcome, int) and 200 <= outcome < 300:
                log.info("webhook delivered", try_no=try_no, copy_no=copy_no, status=outcome)
                return
            log.warning(
                "webhook not delivered, retrying",
                try_no=try_no,
                copy_no=copy_no,
                outcome=outcome,
                retry_in_ms=round(backoff_s * 1000),
            )
            await asyncio.sleep(backoff_s * self._backoff_jitter.uniform(0.8, 1.0))
            backoff_s = min(backoff_s * 2, WEBHOOK_BACKOFF_CAP_S)


# --- app -----------------------------------------------------------------------------------


def main() -> int:
    return http_support.run_double(SERVICE_NAME, PspSettings.from_env, PspDouble)


# --- HTTP helpers --------------------------------------------------------------------------


def _refund_answer(refund: Refund, *, created: bool) -> web.Response:
    """201 for a new refund, 200 + replay header for a repeat; a decline is a 402 either way."""
    headers = None if created else http_support.REPLAYED_HEADERS
    if refund.status == DECLINED:
        body = {
            "error": "refund_declined",
            "detail": f"the refund was declined ({refund.decline_code})",
            **refund.to_json(),
        }
        return web.json_response(body, status=402, headers=headers)
    return web.json_response(refund.to_json(), status=201 if created else 200, headers=headers)


def _refund_request(payload: Mapping[str, Any]) -> RefundRequest:
    reference = payload.get("reference")
    return_id = http_support.text_field(payload, "return_id")
    amount_minor = _amount_minor(payload, "amount_minor")
    currency = _currency(payload, "currency")
    method = _method(payload, "method")
    bank_account = _bank_account(payload, "bank_account", required=method == BANK_TRANSFER)
    order_ref = payload.get("order_ref")
    if method == BNPL or order_ref is not None:
        order_ref = http_support.text_field(payload, "order_ref")
    order_paid_minor = None
    if method == BNPL or payload.get("order_paid_minor") is not None:
        order_paid_minor = _amount_minor(payload, "order_paid_minor")
        if order_paid_minor < amount_minor:
            raise http_support.invalid_field(
                "order_paid_minor",
                f"must be at least amount_minor ({amount_minor}), got {order_paid_minor}",
            )
    return RefundRequest(
        return_id=return_id,
        amount_minor=amount_minor,
        currency=currency,
        method=method,
        reference=None if reference is None else http_support.text_field(payload, "reference"),
        bank_account=bank_account,
        order_ref=order_ref,
        order_paid_minor=order_paid_minor,
    )


def _method(payload: Mapping[str, Any], name: str) -> str:
    """One of METHODS, in any case (kept upper-case)."""
    value = http_support.text_field(payload, name).strip().upper()
    if value not in METHODS:
        raise http_support.invalid_field(
            name, f"must be one of {', '.join(METHODS)}, got {payload[name]!r}"
        )
    return value


def _bank_account(
    payload: Mapping[str, Any], name: str, *, required: bool
) -> dict[str, str] | None:
    """{"holder", "number" (6-34 letters or digits; spaces dropped), "bank_code"}."""
    if payload.get(name) is None and not required:
        return None
    value = http_support.required_field(payload, name)
    if not isinstance(value, dict):
        raise http_support.invalid_field(
            name, "must be an object with holder, number and bank_code"
        )
    account: dict[str, str] = {}
    for part in ("holder", "number", "bank_code"):
        text = value.get(part)
        if not isinstance(text, str) or not text.strip():
            raise http_support.invalid_field(name, f"{part} must be a non-empty string")
        if len(text) > http_support.MAX_TEXT_LENGTH:
            raise http_support.invalid_field(
                name, f"{part} must be at most {http_support.MAX_TEXT_LENGTH} characters"
            )
        account[part] = text.strip()
    account["number"] = account["number"].replace(" ", "")
    if not BANK_ACCOUNT_NUMBER.fullmatch(account["number"]):
        raise http_support.invalid_field(name, "number must be 6 to 34 letters or digits")
    return account


def _masked(account: dict[str, str] | None) -> dict[str, str] | None:
    """The account as the ledger keeps it: the number reduced to its last 4 characters."""
    if account is None:
        return None
    number = account["number"]
    return {**account, "number": "*" * (len(number) - 4) + number[-4:]}


async def _optional_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"the body is not valid JSON: {exc}"
        raise http_support.ApiError(400, "invalid_json", detail) from exc
    if not isinstance(payload, dict):
        raise http_support.ApiError(400, "invalid_json", "the body must be a JSON object")
    return payload


def _optional_return_id(payload: Mapping[str, Any]) -> str | None:
    if payload.get("return_id") is None:
        return None
    return http_support.text_field(payload, "return_id")


def _amount_minor(payload: Mapping[str, Any], name: str) -> int:
    """Money is a whole number of minor units (cents): no floats, no bools, more than zero."""
    value = http_support.required_field(payload, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise http_support.invalid_field(
            name, f"must be an integer number of minor units, got {value!r}"
        )
    if not 0 < value <= MAX_AMOUNT_MINOR:
        raise http_support.invalid_field(name, f"must be from 1 to {MAX_AMOUNT_MINOR}, got {value}")
    return value


def _currency(payload: Mapping[str, Any], name: str) -> str:
    value = http_support.required_field(payload, name)
    if not isinstance(value, str) or not CURRENCY_PATTERN.fullmatch(value):
        raise http_support.invalid_field(
            name, f"must be three upper-case letters (ISO 4217), got {value!r}"
        )
    return value


if __name__ == "__main__":
    sys.exit(main())
