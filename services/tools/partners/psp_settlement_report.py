"""The PSP double's daily settlement report: what a provider sends its merchant for a day
(one CSV per day, in the shape providers use), and the anomalies a test or the demo asks it
to put in.

One line per money movement booked that day: a refund that succeeded (at once, or when its
pending transfer settled) is a `Refunded` line; store credit moves no money at a provider
and is not reported. Columns: provider reference (our refund id), merchant reference (the
`Idempotency-Key` the merchant sent), type, gross, fee, net (gross + fee, what the merchant
is debited), currency, booking date, batch. The fee is `PSP_REFUND_FEE_BPS` of the gross,
rounded half to even.

Anomalies (`POST /admin/report-anomalies`), one refund each, chosen in refund-id order among
that day's lines, kept in the ledger file so a restarted double reports the same:
`timing` (the line comes a day late), `missing` (never reported), `unknown` (a refund the
merchant never asked for), `amount` (gross one minor unit more per 100), `currency` (another
currency), `duplicate` (the line twice), `fee` (a wrong fee), `status` (reported as
`RefundFailed` though it succeeded). Two later movements on a refund can be asked for the
same way: `chargeback` (a `Chargeback` line: the buyer's bank took the money back) and
`reversed` (a `RefundedReversed` line: the refund bounced back to us), each beside the
refund's own line.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

from services.decisions.settlement.fx import round_half_even
from services.decisions.settlement.reconciliation import REPORT_COLUMNS
from services.tools.partners.psp_refunds import STORE_CREDIT, SUCCEEDED, Refund

ANOMALIES = ("timing", "missing", "unknown", "amount", "currency", "duplicate", "fee", "status")
# not anomalies but later money movements on a reported refund, asked for the same way
EVENTS = {"chargeback": "Chargeback", "reversed": "RefundedReversed"}
COLUMNS = REPORT_COLUMNS
REFUNDED = "Refunded"
REFUND_FAILED = "RefundFailed"
OTHER_CURRENCY = {"EUR": "USD"}  # a wrong currency for `currency`; EUR for anything else


@dataclass(frozen=True)
class Anomaly:
    """One anomaly put into a report: its kind, the refund it bends (the refund id; for
    `unknown` the made-up one) and the day whose report it was asked for."""

    kind: str
    provider_reference: str
    merchant_reference: str
    day: str  # ISO date
    amount_minor: int = 0
    currency: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "provider_reference": self.provider_reference,
            "merchant_reference": self.merchant_reference,
            "day": self.day,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
        }


def booking_day(refund: Refund) -> date:
    """The day a refund's money moved: when it succeeded (settled, for a pending one)."""
    moved_at = refund.updated_at if refund.settles_at is not None else refund.created_at
    return datetime.fromtimestamp(moved_at / 1000, UTC).date()


def reported(refund: Refund) -> bool:
    return refund.status == SUCCEEDED and refund.method != STORE_CREDIT


def refund_fee(gross_minor: int, fee_bps: int) -> int:
    return round_half_even(Fraction(gross_minor * fee_bps, 10_000))


def choose_anomalies(
    refunds: Iterable[Refund], day: date, kinds: Iterable[str], taken: Iterable[str]
) -> list[Anomaly]:
    """One refund of `day` per kind (not one already bent: `taken`), in refund-id order;
    ValueError when the day has too few refunds."""
    wanted = list(dict.fromkeys(kinds))
    unknown_kinds = [kind for kind in wanted if kind not in ANOMALIES and kind not in EVENTS]
    if unknown_kinds:
        raise ValueError(f"unknown anomalies {unknown_kinds}; known: {list(ANOMALIES)}")
    busy = set(taken)
    free = sorted(
        (r for r in refunds if reported(r) and booking_day(r) == day and r.refund_id not in busy),
        key=lambda r: r.refund_id,
    )
    chosen: list[Anomaly] = []
    for kind in wanted:
        if kind == "unknown":
            made_up = uuid.uuid4().hex
            currency = free[0].currency if free else "EUR"
            made_up_ref, made_up_key = f"rf_{made_up}", f"unknown-{made_up[:12]}"
            chosen.append(Anomaly(kind, made_up_ref, made_up_key, day.isoformat(), 4_200, currency))
            continue
        if not free:
            raise ValueError(f"{day}: too few refunds to bend for {kind!r}")
        refund = free.pop(0)
        chosen.append(Anomaly(kind, refund.refund_id, refund.idempotency_key, day.isoformat()))
    return chosen


def report_rows(
    refunds: Iterable[Refund],
    anomalies: Iterable[Anomaly],
    day: date,
    provider: str,
    fee_bps: int,
) -> list[dict[str, Any]]:
    """The report's rows for `day`, the anomalies applied."""
    bent = {a.provider_reference: a for a in anomalies}
    batch = f"{provider}-{day.isoformat()}"
    rows: list[dict[str, Any]] = []
    for refund in sorted(refunds, key=lambda r: (r.updated_at, r.refund_id)):
        if not reported(refund):
            continue
        anomaly = bent.get(refund.refund_id)
        kind = anomaly.kind if anomaly else ""
        moved_on = booking_day(refund) + timedelta(days=1 if kind == "timing" else 0)
        if moved_on != day or kind == "missing":
            continue
        gross = refund.amount_minor + (
            max(1, refund.amount_minor // 100) if kind == "amount" else 0
        )
        fee = refund_fee(gross, fee_bps) + (7 if kind == "fee" else 0)
        currency = (
            OTHER_CURRENCY.get(refund.currency, "EUR") if kind == "currency" else refund.currency
        )
        row = {
            "provider_reference": refund.refund_id,
            "merchant_reference": refund.idempotency_key,
            "type": REFUND_FAILED if kind == "status" else REFUNDED,
            "gross_minor": gross,
            "fee_minor": fee,
            "net_minor": gross + fee,
            "currency": currency,
            "booking_date": moved_on.isoformat(),
            "batch": batch,
        }
        rows += [row, dict(row)] if kind == "duplicate" else [row]
        if kind in EVENTS:
            rows.append(
                row
                | {
                    "provider_reference": f"{kind[:2]}_{refund.refund_id}",
                    "type": EVENTS[kind],
                    "fee_minor": 0,
                    "net_minor": gross,
                }
            )
    for anomaly in bent.values():
        if anomaly.kind == "unknown" and anomaly.day == day.isoformat():
            fee = refund_fee(anomaly.amount_minor, fee_bps)
            rows.append(
                {
                    "provider_reference": anomaly.provider_reference,
                    "merchant_reference": anomaly.merchant_reference,
                    "type": REFUNDED,
                    "gross_minor": anomaly.amount_minor,
                    "fee_minor": fee,
                    "net_minor": anomaly.amount_minor + fee,
                    "currency": anomaly.currency,
                    "booking_date": day.isoformat(),
                    "batch": batch,
                }
            )
    return rows


def report_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
