"""The PSP double's refund ledger: every refund by id and by `Idempotency-Key`, the BNPL
plans they left, and the JSON-lines file (`PSP_LEDGER_FILE`) that keeps them across restarts.

It also decides a new refund, per payment method: a decline from the fault plan first (any
method); then EWALLET, STORE_CREDIT and BNPL succeed at once, CARD succeeds or is pending
(`pending_rate`), DIRECT_DEBIT and BANK_TRANSFER are always pending. A BNPL refund reduces
the order's instalment plan; more back than the order's total is declined.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from aiohttp import web

from services.eventing.log_setup import get_logger
from services.tools.partners import http_support
from services.tools.partners.json_lines_ledger import JsonLinesLedger
from services.tools.partners.psp_refunds import (
    BNPL,
    BNPL_OVER_REFUND_CODE,
    CARD,
    DECLINED,
    PENDING,
    SUCCEEDED,
    TRANSFERS,
    BnplOrder,
    Refund,
    RefundRequest,
)
from services.tools.partners.psp_settings import PspFaults, PspSettings
from services.tools.partners.psp_settlement_report import Anomaly

log = get_logger(__name__)


class RefundLedger:
    """The refunds of one PSP double; the `Idempotency-Key`s' records are kept in `keys`."""

    def __init__(self, settings: PspSettings, keys: http_support.IdempotencyKeys[Refund]) -> None:
        self.settings = settings
        self.refunds: dict[str, Refund] = {}
        self.bnpl_orders: dict[str, BnplOrder] = {}  # order_ref -> its plan
        self.anomalies: list[Anomaly] = []  # bent lines of the settlement reports
        self._keys = keys
        self._file = JsonLinesLedger(settings.ledger_file)

    def load(self) -> list[Refund]:
        """Replay the file, then keep it open: the latest state of every refund written since
        the last reset, oldest first (so the BNPL plans are rebuilt in order)."""
        latest: dict[str, Refund] = {}

        def apply(entry: dict[str, Any]) -> None:
            if entry["op"] == "reset":
                latest.clear()
                self.anomalies.clear()
            elif entry["op"] == "anomaly":
                self.anomalies.append(Anomaly(**entry["anomaly"]))
            else:
                refund = Refund(**entry["refund"])
                latest[refund.refund_id] = refund

        self._file.replay(apply)
        for refund in latest.values():
            self._remember(refund)
            self._replay_bnpl(refund)
        self._file.open()
        return list(latest.values())

    def close(self) -> None:
        self._file.close()

    def save(self, refund: Refund) -> None:
        """Remember the refund's new state, and write it to the ledger file if there is one."""
        self._remember(refund)
        self._file.append({"op": "refund", "refund": asdict(refund)})

    def add_anomalies(self, anomalies: list[Anomaly]) -> None:
        """Bend these report lines from now on (written to the ledger file)."""
        for anomaly in anomalies:
            self.anomalies.append(anomaly)
            self._file.append({"op": "anomaly", "anomaly": anomaly.to_json()})

    def reset(self) -> None:
        """Forget every refund, BNPL plan and report anomaly (the file notes the reset)."""
        self.anomalies.clear()
        self.refunds.clear()
        self.bnpl_orders.clear()
        self._keys.records.clear()
        self._file.append({"op": "reset"})

    def find(self, request: web.Request, refund_id: str) -> Refund:
        """The refund `refund_id` names (404 if none), its return id into the request log."""
        return http_support.found(request, self.refunds, refund_id, f"no refund {refund_id!r}")

    def holds(self, refund: Refund) -> bool:
        """`refund` is the ledger's current record of it (not one forgotten by a reset)."""
        return self.refunds.get(refund.refund_id) is refund

    def decide(
        self, wanted: RefundRequest, key: str, fingerprint: str, faults: PspFaults
    ) -> Refund:
        """A new refund (not yet saved): a decline from the plan first (any method), then what
        the method does."""
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

    def _remember(self, refund: Refund) -> None:
        self.refunds[refund.refund_id] = refund
        self._keys.records[refund.idempotency_key] = refund

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


def _masked(account: dict[str, str] | None) -> dict[str, str] | None:
    """The account as the ledger keeps it: the number reduced to its last 4 characters."""
    if account is None:
        return None
    number = account["number"]
    return {**account, "number": "*" * (len(number) - 4) + number[-4:]}
