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
(`PSP_SIGNATURE` headers), retried until a 2xx and re-sent after a restart if undelivered.

Faults (errors, latency, ghost successes, declines, pending refunds, failed settlements,
duplicate webhooks) come from a `PspFaults` plan set at start (`PSP_FAULTS`) or at run time
(`POST /admin/faults`).

This module holds the HTTP routes, the settlement timers and the entry point; the rest is in
`psp_settings` (settings, fault plan), `psp_refunds` (the refund record, statuses, methods,
BNPL plans), `psp_refund_requests` (checking a request), `psp_refund_ledger` (the refunds
kept, and each method's decision) and `psp_webhooks` (the settlement webhooks).

    python -m services.tools.partners.psp_server
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import date

from aiohttp import web

from services.eventing.log_setup import get_logger
from services.tools.partners import http_support, partner_double
from services.tools.partners.psp_charges import (
    CAPTURED,
    Charge,
    ChargeRequest,
    charge_request,
    new_charge,
)
from services.tools.partners.psp_refund_ledger import RefundLedger
from services.tools.partners.psp_refund_requests import optional_return_id, refund_request
from services.tools.partners.psp_refunds import (
    DECLINED,
    FAILED,
    MONEY_MOVING,
    PENDING,
    SERVICE_NAME,
    SETTLEMENT_FAILURE_CODE,
    SUCCEEDED,
    VOIDED,
    Refund,
    RefundRequest,
)
from services.tools.partners.psp_settings import PspFaults, PspSettings
from services.tools.partners.psp_settlement_report import (
    choose_anomalies,
    report_csv,
    report_rows,
)
from services.tools.partners.psp_webhooks import SettlementWebhooks

log = get_logger(__name__)


class PspDouble(partner_double.PartnerDouble[PspFaults, Refund]):
    """State and handlers of one PSP double; everything runs on one event loop."""

    def __init__(self, settings: PspSettings) -> None:
        super().__init__(settings.faults, partner="payment provider")
        self.settings = settings
        self.ledger = RefundLedger(settings, self.keys)
        self.webhooks = SettlementWebhooks(
            settings, lambda: self.faults, self._note_webhook_acknowledged
        )
        self._settlements: dict[str, asyncio.Task[None]] = {}
        self.charge_keys: http_support.IdempotencyKeys[Charge] = http_support.IdempotencyKeys()

    async def lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: reload the ledger, settle what was pending, re-send the
        webhooks never delivered, then tidy up."""
        self.webhooks.open()
        undelivered = 0
        for refund in self.ledger.load():
            if refund.status == PENDING:
                self._schedule_settlement(refund)
            elif refund.webhook_due and not refund.webhook_delivered:
                undelivered += self.webhooks.queue(refund)
        log.info(
            "psp double ready",
            port=self.settings.port,
            provider=self.settings.name,
            ledger_file=str(self.settings.ledger_file or ""),
            webhook_url=self.settings.webhook_url or "",
            refunds_loaded=len(self.ledger.refunds),
            bnpl_orders_loaded=len(self.ledger.bnpl_orders),
            webhooks_resent=undelivered,
            faults=self.faults.to_dict(),
        )
        try:
            yield
        finally:
            self._cancel_settlements()
            await self.webhooks.close()
            self.ledger.close()

    # --- refunds -------------------------------------------------------------------------

    @partner_double.route("POST", "/refunds")
    async def create_refund(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        refund, created = await self.keys.create_once(request, refund_request, self._create)
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

    # --- charges (a buyer pays the difference of an exchange to a dearer variant) ---------

    @partner_double.route("POST", "/charges")
    async def create_charge(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        charge, created = await self.charge_keys.create_once(
            request, charge_request, self._new_charge
        )
        log.info("charge answered", charge_id=charge.charge_id, status=charge.status)
        refused = None
        if charge.status != CAPTURED:
            refused = http_support.ApiError(402, "declined", f"charge {charge.charge_id}")
        return http_support.creation_answer(charge.to_json(), created=created, refused=refused)

    @partner_double.route("GET", "/charges")
    async def list_charges(self, request: web.Request) -> web.Response:
        listed = http_support.filter_by_return_id(request, self.charge_keys.records.values())
        return web.json_response({"charges": [charge.to_json() for charge in listed]})

    def _new_charge(self, wanted: ChargeRequest, key: str, fingerprint: str) -> Charge:
        declined = self.faults.roll(self.faults.charge_decline_rate)
        code = "insufficient_funds" if declined else None
        return new_charge(wanted, key, fingerprint, self.settings.name, code)

    @partner_double.route("POST", "/refunds/{refund_id}/void")
    async def void_refund(self, request: web.Request) -> web.Response:
        await self.inject_faults()
        refund = self.ledger.find(request, request.match_info["refund_id"])
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
            self.ledger.save(refund)
            settlement = self._settlements.pop(refund.refund_id, None)
            if settlement is not None:
                settlement.cancel()
            log.info("refund voided", refund_id=refund.refund_id, return_id=refund.return_id)
            self.ghost_if_planned("void")
        return web.json_response(refund.to_json())

    @partner_double.route("GET", "/refunds/{refund_id}")
    async def get_refund(self, request: web.Request) -> web.Response:
        refund = self.ledger.find(request, request.match_info["refund_id"])
        return web.json_response(refund.to_json())

    @partner_double.route("GET", "/refunds")
    async def list_refunds(self, request: web.Request) -> web.Response:
        listed = http_support.filter_by_return_id(request, self.ledger.refunds.values())
        return web.json_response({"refunds": [refund.to_json() for refund in listed]})

    @partner_double.route("GET", "/refunds/stats")
    async def stats(self, _request: web.Request) -> web.Response:
        refunds = self.ledger.refunds.values()
        statuses = Counter(refund.status for refund in refunds)
        moving = [refund for refund in refunds if refund.status in MONEY_MOVING]
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

    # --- the daily settlement report ----------------------------------------------------

    @partner_double.route("GET", "/reports/settlement")
    async def settlement_report(self, request: web.Request) -> web.Response:
        """The settlement report of `?date=YYYY-MM-DD` (CSV; `&format=json` for JSON)."""
        day = _report_day(request.query.get("date"))
        rows = report_rows(
            self.ledger.refunds.values(),
            self.ledger.anomalies,
            day,
            self.settings.name,
            self.settings.refund_fee_bps,
        )
        if request.query.get("format") == "json":
            return web.json_response({"provider": self.settings.name, "lines": rows})
        return web.Response(
            text=report_csv(rows),
            content_type="text/csv",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="{self.settings.name}-settlement-{day}.csv"'
                )
            },
        )

    @partner_double.route("POST", "/admin/report-anomalies")
    async def add_report_anomalies(self, request: web.Request) -> web.Response:
        """Bend the report of `{"date": ..., "kinds": [...]}`: one refund of that day per
        kind (psp_settlement_report.ANOMALIES); the answer says which refund got which."""
        body = await http_support.json_object(request)
        day = _report_day(body.get("date"))
        kinds = body.get("kinds")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise http_support.invalid_field("kinds", "must be a list of anomaly names")
        taken = [a.provider_reference for a in self.ledger.anomalies]
        try:
            chosen = choose_anomalies(self.ledger.refunds.values(), day, kinds, taken)
        except ValueError as exc:
            raise http_support.ApiError(422, "cannot_bend_report", str(exc)) from exc
        self.ledger.add_anomalies(chosen)
        log.info("report anomalies added", day=str(day), kinds=kinds)
        return web.json_response({"anomalies": [a.to_json() for a in chosen]})

    @partner_double.route("GET", "/admin/report-anomalies")
    async def report_anomalies(self, _request: web.Request) -> web.Response:
        return web.json_response({"anomalies": [a.to_json() for a in self.ledger.anomalies]})

    # --- admin ---------------------------------------------------------------------------

    @partner_double.route("POST", "/admin/reset")
    async def reset(self, _request: web.Request) -> web.Response:
        """Forget every refund (tests start from an empty ledger); the fault plan stays."""
        self._cancel_settlements()
        await self.webhooks.cancel_all()
        self.ledger.reset()
        log.info("ledger reset")
        return web.json_response({"status": "reset"})

    @partner_double.route("POST", "/admin/webhooks/redeliver")
    async def redeliver_webhooks(self, request: web.Request) -> web.Response:
        """Send again the webhook of every refund that ended after being pending (delivered or
        not), or only those of `{"return_id": ...}`: a replay drill for the receivers."""
        if not self.webhooks.enabled:
            raise http_support.ApiError(
                409, "no_webhook_url", "PSP_WEBHOOK_URL is not set; there is nowhere to send"
            )
        body = await http_support.json_object(request, empty_is_object=True)
        return_id = optional_return_id(body)
        if return_id is not None:
            request["return_id"] = return_id
        ended = [
            refund
            for refund in self.ledger.refunds.values()
            if refund.webhook_due and return_id in (None, refund.return_id)
        ]
        queued = sum(self.webhooks.queue(refund) for refund in ended)
        log.info("webhooks redelivery queued", queued=queued, in_flight=len(ended) - queued)
        return web.json_response({"queued": queued, "in_flight": len(ended) - queued})

    # --- refunds' lives ------------------------------------------------------------------

    def _create(self, wanted: RefundRequest, key: str, fingerprint: str) -> Refund:
        """A new refund: decided, saved, and left to settle if it is pending."""
        refund = self.ledger.decide(wanted, key, fingerprint, self.faults)
        self.ledger.save(refund)
        if refund.status == PENDING:
            self._schedule_settlement(refund)
        return refund

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
        if refund.status != PENDING or not self.ledger.holds(refund):
            return
        if self.faults.roll(self.faults.settlement_failure_rate):
            refund.decline_code = SETTLEMENT_FAILURE_CODE
            refund.change_status(FAILED)
        else:
            refund.change_status(SUCCEEDED)
        self.ledger.save(refund)
        log.info(
            "refund settled" if refund.status == SUCCEEDED else "refund failed at settlement",
            refund_id=refund.refund_id,
            return_id=refund.return_id,
            method=refund.method,
            status=refund.status,
            decline_code=refund.decline_code,
        )
        self.webhooks.queue(refund)

    def _cancel_settlements(self) -> None:
        for settlement in self._settlements.values():
            settlement.cancel()
        self._settlements.clear()

    def _note_webhook_acknowledged(self, refund: Refund) -> None:
        """The ledger notes the first acknowledged delivery (a re-send after a restart is
        for the webhooks never acknowledged)."""
        if not refund.webhook_delivered and self.ledger.holds(refund):
            refund.webhook_delivered = True
            self.ledger.save(refund)


def _report_day(raw: object) -> date:
    """A report's day from an ISO date (a 422 naming `date` otherwise)."""
    if not isinstance(raw, str):
        raise http_support.invalid_field("date", "must be a date, YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise http_support.invalid_field("date", "must be a date, YYYY-MM-DD") from exc


def _refund_answer(refund: Refund, *, created: bool) -> web.Response:
    """201 for a new refund, 200 + replay header for a repeat; a decline is a 402 either way."""
    refused = None
    if refund.status == DECLINED:
        detail = f"the refund was declined ({refund.decline_code})"
        refused = http_support.ApiError(402, "refund_declined", detail)
    return http_support.creation_answer(refund.to_json(), created=created, refused=refused)


def main() -> int:
    return partner_double.run_double(SERVICE_NAME, PspSettings.from_env, PspDouble)


if __name__ == "__main__":
    sys.exit(main())
