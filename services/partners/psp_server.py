"""Payment service provider double: a real local HTTP server that refunds buyers.

The refund service asks for a refund (`POST /refunds`, with an `Idempotency-Key`) and may void
a pending one (`POST /refunds/{refund_id}/void`). Every outcome, declines included, is
remembered per idempotency key, so a retried request never moves money twice. The ledger can
be kept in a JSON-lines file (`PSP_LEDGER_FILE`) so a restarted PSP still knows its refunds.
Faults (errors, latency, ghost successes, declines, pending refunds) come from a `PspFaults`
plan set at start (`PSP_FAULTS`) or at run time (`POST /admin/faults`).

    python -m services.partners.psp_server
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from services.eventing.log_setup import get_logger
from services.partners import http_support
from services.partners.fault_injection import FaultPlan, codes_field, rate_field

SERVICE_NAME = "psp"
DEFAULT_DECLINE_CODES = ("account_closed", "card_expired", "do_not_honor")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
MAX_AMOUNT_MINOR = 10**12

# refund statuses; pending and succeeded refunds have moved (or committed) money
SUCCEEDED = "succeeded"
PENDING = "pending"
DECLINED = "declined"
VOIDED = "voided"
MONEY_MOVING = frozenset({SUCCEEDED, PENDING})

log = get_logger(__name__)


@dataclass
class PspFaults(FaultPlan):
    """The shared faults plus the PSP's own: declined and pending refunds."""

    decline_rate: float = rate_field()
    decline_codes: tuple[str, ...] = codes_field(DEFAULT_DECLINE_CODES)
    pending_rate: float = rate_field()


@dataclass(frozen=True)
class PspSettings:
    host: str = "127.0.0.1"
    port: int = 8092
    ledger_file: Path | None = None
    settle_delay_ms: int = 1000
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
            faults=faults,
        )


@dataclass(frozen=True)
class RefundRequest:
    return_id: str
    amount_minor: int
    currency: str
    method: str
    reference: str | None


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
    status: str  # succeeded | pending | declined | voided
    decline_code: str | None
    created_at: int
    updated_at: int

    def to_json(self) -> dict[str, Any]:
        """What callers see (everything but the request fingerprint)."""
        public = asdict(self)
        del public["request_fingerprint"]
        return public

    def change_status(self, status: str) -> None:
        self.status = status
        self.updated_at = http_support.now_ms()


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
        self._settlements: dict[str, asyncio.Task[None]] = {}
        self._ledger = LedgerFile(settings.ledger_file) if settings.ledger_file else None

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: reload the ledger, settle what was pending, then tidy up."""
        if self._ledger is not None:
            for refund in self._ledger.load():
                self._remember(refund)
                if refund.status == PENDING:
                    self._schedule_settlement(refund)
            self._ledger.open()
        log.info(
            "psp double ready",
            port=self.settings.port,
            ledger_file=str(self.settings.ledger_file or ""),
            refunds_loaded=len(self.refunds),
            faults=self.faults.to_dict(),
        )
        try:
            yield
        finally:
            self._cancel_settlements()
            if self._ledger is not None:
                self._ledger.close()

    # --- refunds -------------------------------------------------------------------------

    @http_support.route("POST", "/refunds")
    async def create_refund(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        refund, created = await self.keys.create_once(request, _refund_request, self._create)
        if not created:
            log.info("refund replayed", refund_id=refund.refund_id, status=refund.status)
            return _refund_answer(refund, created=False)
        log.info(
            "refund decided",
            refund_id=refund.refund_id,
            status=refund.status,
            decline_code=refund.decline_code,
            amount_minor=refund.amount_minor,
            currency=refund.currency,
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
        if refund.status == PENDING:
            refund.change_status(VOIDED)
            self._save(refund)
            settlement = self._settlements.pop(refund.refund_id, None)
            if settlement is not None:
                settlement.cancel()
            log.info("refund voided", refund_id=refund.refund_id)
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
                "total_minor_by_currency": dict(total_minor_by_currency),
                "duplicates": sum(1 for n in per_return.values() if n > 1),
            }
        )

    # --- admin ---------------------------------------------------------------------------

    @http_support.route("POST", "/admin/reset")
    async def reset(self, _request: web.Request) -> web.Response:
        """Forget every refund (tests start from an empty ledger); the fault plan stays."""
        self._cancel_settlements()
        self.refunds.clear()
        self.keys.records.clear()
        if self._ledger is not None:
            self._ledger.append({"op": "reset", "at": http_support.now_ms()})
        log.info("ledger reset")
        return web.json_response({"status": "reset"})

    # --- ledger --------------------------------------------------------------------------

    def _create(self, wanted: RefundRequest, key: str, fingerprint: str) -> Refund:
        """A new refund: decided, saved, and left to settle if it is pending."""
        refund = self._decide(wanted, key, fingerprint)
        self._save(refund)
        if refund.status == PENDING:
            self._schedule_settlement(refund)
        return refund

    def _decide(self, wanted: RefundRequest, key: str, fingerprint: str) -> Refund:
        faults = self.faults
        declined = faults.roll(faults.decline_rate)
        decline_code = faults.rng.choice(faults.decline_codes) if declined else None
        if decline_code is not None:
            status = DECLINED
        elif faults.roll(faults.pending_rate):
            status = PENDING
        else:
            status = SUCCEEDED
        now = http_support.now_ms()
        return Refund(
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

    def _schedule_settlement(self, refund: Refund) -> None:
        self._settlements[refund.refund_id] = asyncio.create_task(self._settle(refund))

    async def _settle(self, refund: Refund) -> None:
        """A pending refund settles after the delay unless it was voided meanwhile."""
        await asyncio.sleep(self.settings.settle_delay_ms / 1000)
        self._settlements.pop(refund.refund_id, None)
        if refund.status == PENDING and self.refunds.get(refund.refund_id) is refund:
            refund.change_status(SUCCEEDED)
            self._save(refund)
            log.info("refund settled", refund_id=refund.refund_id, return_id=refund.return_id)

    def _cancel_settlements(self) -> None:
        for settlement in self._settlements.values():
            settlement.cancel()
        self._settlements.clear()


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
    return RefundRequest(
        return_id=http_support.text_field(payload, "return_id"),
        amount_minor=_amount_minor(payload, "amount_minor"),
        currency=_currency(payload, "currency"),
        method=http_support.text_field(payload, "method"),
        reference=None if reference is None else http_support.text_field(payload, "reference"),
    )


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
