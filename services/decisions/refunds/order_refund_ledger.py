"""The order refund ledger: every live return of one order, and the share each one holds (pure).

Returns of one order are worked out one after another, each after the others: the ledger is
keyed by order_ref, so one entry has one owner (the refund service's order-ledger agent).
A reservation takes the lowest unit positions of each line that no live return holds (and,
when the shipping fee is refunded, the lowest free positions of the order's units), and
`calculate_refund` values exactly those positions. Positions held by disjoint returns add up
to exactly what was paid once every unit is back; a released return's positions are free
again and are taken at the same value by the next return, so nothing is lost either way.

A return that came without the order's snapshot brings only its returned lines (units bought,
unit price): the ledger learns such an order line by line, so two returns of it still never
take the same units; a snapshot known from another live return values its lines instead.

Idempotent by return: a reservation asked again answers what was reserved the first time; a
released return stays released (a replayed reservation does not take its units again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.decisions.refunds.order_model import (
    Liable,
    Order,
    OrderRefundHistory,
    Ranges,
    RefundArithmeticError,
    UnitRanges,
    order_from_record,
)
from services.decisions.refunds.refund_arithmetic import FeeTerms, calculate_refund

RESERVED = "RESERVED"
RELEASED = "RELEASED"
LINES_ONLY_NOTE = (
    "the return came without the order's snapshot: its lines are valued at their unit price, "
    "without a share of the order's discounts or shipping"
)


@dataclass(frozen=True)
class LedgerAnswer:
    name: str  # RefundReserved | RefundReservationRefused | RefundReservationReleased
    body: dict[str, Any]


def order_fingerprint(order_record: Mapping[str, Any]) -> str:
    canonical = json.dumps(order_record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def empty_entry(order_ref: str) -> dict[str, Any]:
    return {"order_ref": order_ref, "order_fingerprint": "", "returns": {}, "sequence": 0}


def _live(entry: Mapping[str, Any], but: str = "") -> list[tuple[str, dict[str, Any]]]:
    held = [
        (return_id, held)
        for return_id, held in entry["returns"].items()
        if held["status"] == RESERVED and return_id != but
    ]
    return sorted(held, key=lambda item: item[1]["sequence"])


def _lowest_free(taken: list[tuple[int, int]], units: int, of: int) -> Ranges:
    """The lowest `units` positions of 0..of-1 outside `taken`, as ranges."""
    occupied = set()
    for start, end in taken:
        occupied.update(range(start, end))
    free = [position for position in range(of) if position not in occupied][:units]
    ranges: list[tuple[int, int]] = []
    for position in free:
        if ranges and ranges[-1][1] == position:
            ranges[-1] = (ranges[-1][0], position + 1)
        else:
            ranges.append((position, position + 1))
    return tuple(ranges)


def _refused(order_ref: str, reason: str, held_by: list[str]) -> LedgerAnswer:
    return LedgerAnswer(
        "RefundReservationRefused", {"order_ref": order_ref, "reason": reason, "held_by": held_by}
    )


def _reserved_answer(entry: Mapping[str, Any], return_id: str) -> LedgerAnswer:
    held = entry["returns"][return_id]
    return LedgerAnswer("RefundReserved", dict(held["answer"]))


def reserve(
    entry: dict[str, Any] | None, return_id: str, command: Mapping[str, Any]
) -> tuple[dict[str, Any], LedgerAnswer]:
    """A RefundReservationRequested → the entry after it and the answer."""
    order_ref = command["order_ref"]
    entry = entry or empty_entry(order_ref)
    known = entry["returns"].get(return_id)
    if known is not None:
        if known["status"] == RESERVED:
            return entry, _reserved_answer(entry, return_id)
        return entry, _refused(order_ref, f"return {return_id} was released", [])
    live = _live(entry)
    order_record, complete, problem = _order_known(entry, command, bool(live))
    fingerprint = order_fingerprint(order_record)
    lines_only = not command.get("order_complete", True)  # checked line by line above
    if not problem and not lines_only and live and entry["order_fingerprint"] != fingerprint:
        problem = (
            "the order as paid differs from the one earlier returns of it were worked out on"
            if entry.get("order_complete", True)
            else "the order's snapshot came after returns of it were worked out on their lines"
        )
    if problem:
        return entry, _refused(order_ref, problem, [rid for rid, _ in live])
    try:
        order = order_from_record(order_ref, order_record)
        returning = {item["line_id"]: item["units"] for item in command["returning"]}
        liable = Liable(command["liable"])
        fees = FeeTerms(**dict(command.get("fees") or {}))
        history, taken = _history_and_positions(order, live, returning, liable)
        calculation = calculate_refund(order, returning, liable, fees, history, taken)
    except (RefundArithmeticError, KeyError, ValueError, TypeError) as exc:
        return entry, _refused(order_ref, str(exc), [rid for rid, _ in live])
    positions = {
        "lines": {line: [list(r) for r in ranges] for line, ranges in taken.lines.items()},
        "shipping": [list(r) for r in taken.shipping],
    }
    answer = {
        "order_ref": order_ref,
        "amount": {"amount_minor": calculation.total_minor, "currency": order.currency},
        "breakdown": [
            {**line.to_record(), "currency": order.currency} for line in calculation.lines
        ],
        "notes": list(calculation.notes) + ([] if complete else [LINES_ONLY_NOTE]),
        "order_paid_minor": order.paid_minor,
        "order_reserved_minor": calculation.history_after.refunded_minor,
        "other_returns": [rid for rid, _ in live],
        "unit_positions_json": json.dumps(positions, sort_keys=True),
    }
    sequence = entry["sequence"] + 1
    returns = dict(entry["returns"])
    returns[return_id] = {
        "status": RESERVED,
        "sequence": sequence,
        "units": returning,
        "positions": positions,
        "total_minor": calculation.total_minor,
        "answer": answer,
    }
    entry = {
        **entry,
        "order_fingerprint": fingerprint,
        "order": order_record,
        "order_complete": complete,
        "returns": returns,
        "sequence": sequence,
    }
    return entry, LedgerAnswer("RefundReserved", answer)


def _order_known(
    entry: Mapping[str, Any], command: Mapping[str, Any], any_live: bool
) -> tuple[dict[str, Any], bool, str]:
    """The order this reservation is worked out on, whether it is the whole order as paid,
    and a problem (empty if none). A command without the order's snapshot brings only its
    returned lines: while other returns of the order are live, they are added to the lines
    known already (or, if a snapshot is known, found in it), and must say the same of a
    line as earlier returns did."""
    record = dict(command["order"])
    if command.get("order_complete", True):
        return record, True, ""
    if not any_live:
        return record, False, ""
    known = entry.get("order")
    if not known:  # an entry kept before orders were kept: only a fingerprint to go on
        return (
            record,
            False,
            (
                "earlier returns of the order were worked out on a snapshot this ledger did "
                "not keep; the returned lines alone cannot be checked against it"
            ),
        )
    known_complete = entry.get("order_complete", True)
    if known["currency"] != record["currency"]:
        return (
            record,
            False,
            (
                f"the returned lines are in {record['currency']}, "
                f"earlier returns of the order in {known['currency']}"
            ),
        )
    known_lines = {line["line_id"]: line for line in known["lines"]}
    added = []
    for line in record["lines"]:
        earlier = known_lines.get(line["line_id"])
        if earlier is None:
            if known_complete:
                return record, False, f"line {line['line_id']} is not in the order's snapshot"
            added.append(line)
        elif any(earlier[key] != line[key] for key in ("sku", "unit_price_minor", "quantity")):
            return (
                record,
                False,
                f"line {line['line_id']} ({_described(line)}) differs from what earlier "
                f"returns of the order said ({_described(earlier)})",
            )
    return {**known, "lines": [*known["lines"], *added]}, known_complete, ""


def _described(line: Mapping[str, Any]) -> str:
    return f"{line['sku']}, {line['quantity']} bought at {line['unit_price_minor']}"


def _history_and_positions(
    order: Order,
    live: list[tuple[str, dict[str, Any]]],
    returning: Mapping[str, int],
    liable: Liable,
) -> tuple[OrderRefundHistory, UnitRanges]:
    returned_units: dict[str, int] = {}
    line_taken: dict[str, list[tuple[int, int]]] = {}
    shipping_taken: list[tuple[int, int]] = []
    for _, held in live:
        for line_id, units in held["units"].items():
            returned_units[line_id] = returned_units.get(line_id, 0) + units
        for line_id, ranges in held["positions"]["lines"].items():
            line_taken.setdefault(line_id, []).extend(tuple(r) for r in ranges)
        shipping_taken.extend(tuple(r) for r in held["positions"]["shipping"])
    history = OrderRefundHistory(
        returned_units,
        sum(end - start for start, end in shipping_taken),
        sum(held["total_minor"] for _, held in live),
    )
    # units that do not fit (more than are left, not positive) are refused by
    # calculate_refund with the reason, before it looks at the positions
    lines = {
        line_id: _lowest_free(line_taken.get(line_id, []), units, order.line(line_id).quantity)
        for line_id, units in returning.items()
    }
    shipping: Ranges = ()
    if liable != Liable.BUYER and order.shipping_fee_minor:
        shipping = _lowest_free(shipping_taken, sum(returning.values()), order.units)
    return history, UnitRanges(lines, shipping)


def release(
    entry: dict[str, Any] | None, return_id: str, command: Mapping[str, Any]
) -> tuple[dict[str, Any], LedgerAnswer]:
    """A RefundReservationReleaseRequested → the entry after it and the answer (the same
    answer when asked again). A return the ledger never held is recorded as released."""
    order_ref = command["order_ref"]
    entry = entry or empty_entry(order_ref)
    held = entry["returns"].get(return_id)
    returns = dict(entry["returns"])
    if held is None:  # kept, so a replayed reservation of this return cannot take units later
        returns[return_id] = {"status": RELEASED, "total_minor": 0, "units": {}}
    elif held["status"] == RESERVED:
        returns[return_id] = {**held, "status": RELEASED, "release_reason": command["reason"]}
    entry = {**entry, "returns": returns}
    released = returns[return_id]["total_minor"]
    answer = {"order_ref": order_ref, "released_minor": released, "reason": command["reason"]}
    return entry, LedgerAnswer("RefundReservationReleased", answer)


def summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What `GET /orders/{order_ref}/refunds` shows."""
    live = _live(entry)
    return {
        "order_ref": entry["order_ref"],
        "live_returns": [
            {"return_id": rid, "units": held["units"], "total_minor": held["total_minor"]}
            for rid, held in live
        ],
        "released_returns": sorted(
            rid for rid, held in entry["returns"].items() if held["status"] == RELEASED
        ),
        "reserved_minor": sum(held["total_minor"] for _, held in live),
        "order_paid_minor": live[-1][1]["answer"]["order_paid_minor"] if live else None,
    }
