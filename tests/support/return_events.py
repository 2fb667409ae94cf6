"""Builders of valid domain events for tests (records as the codec decodes them)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from services.eventing.envelope import new_envelope

_clock = itertools.count(1_790_000_000_000, 1000)


def envelope(name: str, return_id: str, producer: str = "test", **kw: Any) -> dict[str, Any]:
    return new_envelope(name, return_id, producer, occurred_at=next(_clock), **kw)


def return_lines(currency: str = "EUR") -> list[dict[str, Any]]:
    return [
        {
            "order_line_id": "L1",
            "sku": "SKU-RED-M",
            "quantity_returned": 2,
            "quantity_bought": 3,
            "unit_price": {"amount_minor": 1999, "currency": currency},
        },
        {
            "order_line_id": "L2",
            "sku": "SKU-CAP",
            "quantity_returned": 1,
            "quantity_bought": 1,
            "unit_price": {"amount_minor": 500, "currency": currency},
        },
    ]


# The default return: what the buyer's request and its ReturnRequested record both say.
RETURN_REQUEST_FIELDS: dict[str, Any] = {
    "order_ref": "ORD-1",
    "buyer_id": "B-1",
    "seller_id": "S-1",
    "category": "apparel",
    "market": "DE",
    "reason_code": "CHANGED_MIND",
}


def return_request_body(**overrides: Any) -> dict[str, Any]:
    """The default return as the buyer posts it (POST /returns): the lines of
    `return_lines()`, with `quantity` for what comes back."""
    lines = [
        {
            "order_line_id": line["order_line_id"],
            "sku": line["sku"],
            "quantity": line["quantity_returned"],
            "quantity_bought": line["quantity_bought"],
            "unit_price": line["unit_price"],
        }
        for line in return_lines()
    ]
    body = {
        **RETURN_REQUEST_FIELDS,
        "delivered_at": "2026-09-10",
        "payment_method": "CARD",
        "pickup_address": "Musterstrasse 1, Berlin",
        "lines": lines,
    }
    return body | overrides


def inspected_item(**changes: Any) -> dict[str, Any]:
    """One item of an InspectionRecorded record: a grade-A SKU-RED-M that matches the order."""
    item = {
        "sku": "SKU-RED-M",
        "serial": None,
        "grade": "A",
        "matches_order": True,
        "measured_weight_grams": 400,
        "expected_weight_grams": 410,
        "notes": "",
        "photo_refs": [],
    }
    return item | changes


def event(name: str, return_id: str, **fields: Any) -> dict[str, Any]:
    """A complete, schema-valid record of `name` with sensible values."""
    defaults: dict[str, dict[str, Any]] = {
        "ReturnRequested": {
            **RETURN_REQUEST_FIELDS,
            "lines": return_lines(),
            "delivered_at": 1_789_000_000_000,
            "payment_method": "CARD",
            "pickup_address": "Musterstrasse 1, Berlin",
            "buyer_notes": "",
            "photo_refs": [],
            "idempotency_key": None,
            "request_hash": None,
        },
        "ReturnAccepted": {"policy_version": "minimal-1", "rules_fired": []},
        "ReturnRejected": {
            "rejection_code": "OUTSIDE_WINDOW",
            "detail": "45 days > 30",
            "policy_version": "minimal-1",
            "rules_fired": [],
        },
        "ReturnCancelled": {"cancelled_by": "buyer", "reason": "changed mind again"},
        "PickupScheduled": {
            "carrier": "double-express",
            "booking_id": "BK-1",
            "tracking_number": "TRK-1",
            "window_start": 1,
            "window_end": 2,
        },
        "PickupAttemptFailed": {
            "booking_id": "BK-1",
            "attempt_no": 1,
            "failure_reason": "BUYER_ABSENT",
            "detail": "",
            "retryable": True,
        },
        "PickupRescheduled": {
            "booking_id": "BK-1",
            "outcome": "rescheduled",
            "proposed_by": "buyer",
            "reschedule_no": 1,
            "window_start": 86_400_000,
            "window_end": 86_400_000 + 4 * 3_600_000,
            "detail": "",
        },
        "PersonalDataErasureRequested": {"buyer_id": "B-1", "requested_by": "buyer"},
        "DropOffChosen": {"point_id": "DP-BER-1", "requested_by": "buyer"},
        "ReturnFailed": {"outcome": "REJECTED", "failed_step": "INSPECTION", "reason": "damaged"},
        "ChargeRequested": {
            "amount": {"amount_minor": 500, "currency": "EUR"},
            "method": "CARD",
            "idempotency_key": f"{return_id}-exchange-charge",
            "order_ref": "ORD-1",
            "buyer_id": "B-1",
            "reason": "exchange to SKU-RED-XL: the price difference",
        },
        "ChargeCaptured": {
            "amount": {"amount_minor": 500, "currency": "EUR"},
            "method": "CARD",
            "provider": "psp-double",
            "provider_charge_id": "CH-1",
            "idempotency_key": f"{return_id}-exchange-charge",
            "order_ref": "ORD-1",
        },
        "ChargeFailed": {
            "amount": {"amount_minor": 500, "currency": "EUR"},
            "method": "CARD",
            "provider": "psp-double",
            "idempotency_key": f"{return_id}-exchange-charge",
            "decline_code": "insufficient_funds",
            "detail": "",
            "retryable": False,
        },
        "DisputeRequested": {
            "reason": "GRADE_WRONG",
            "details": "",
            "photo_refs": [],
            "requested_by": "buyer",
        },
        "DisputeOpened": {
            "dispute_id": f"{return_id}-D1",
            "reason": "GRADE_WRONG",
            "details": "",
            "requested_by": "buyer",
            "disputed_status": "COMPLETED",
            "kept": {"amount_minor": 500, "currency": "EUR"},
            "decide_by": 5,
        },
        "ReinspectionRequested": {
            "dispute_id": f"{return_id}-D1",
            "round": 2,
            "excluded_station_id": "ST-1",
            "first_scan_id": f"SCAN-{return_id}",
        },
        "DisputeRuled": {
            "dispute_id": f"{return_id}-D1",
            "case_id": "CASE-1",
            "decision": "UPHELD",
            "amount": None,
            "liable": None,
            "agent_id": "agent-1",
            "note": "",
        },
        "DisputeDecided": {
            "dispute_id": f"{return_id}-D1",
            "decision": "PARTIAL_REFUND",
            "decided_by": "reinspection",
            "note": "",
            "refund": {"amount_minor": 500, "currency": "EUR"},
            "liable": "SELLER",
            "method": "CARD",
            "provider": "psp-double",
            "provider_refund_id": "RF-D1",
            "idempotency_key": f"{return_id}-dispute-1",
            "order_ref": "ORD-1",
            "carrier_id": None,
            "decided_at": 6,
        },
        "DropOffBooked": {
            "booking_id": "BK-1",
            "outcome": "booked",
            "point_id": "DP-BER-1",
            "drop_off_code": "DO-1",
            "detail": "",
        },
        "PickupWindowRequested": {
            "window_start": 86_400_000,
            "window_end": 86_400_000 + 4 * 3_600_000,
            "requested_by": "buyer",
        },
        "PickupCompleted": {
            "booking_id": "BK-1",
            "tracking_number": "TRK-1",
            "collected_at": 3,
            "carrier_noted_damage": False,
            "parcel_weight_grams": 800,
        },
        "PickupCancelled": {"booking_id": "BK-1", "reason": "cancelled"},
        "InspectionRecorded": {
            "scan_id": f"SCAN-{return_id}",
            "station_id": "ST-1",
            "inspector_id": "I-1",
            "items": [inspected_item()],
            "inspected_at": 4,
        },
        "IntakeCompleted": {
            "warehouse_id": "WH-1",
            "movements": [
                {
                    "movement_id": f"{return_id}-intake-SKU-RED-M-1",
                    "sku": "SKU-RED-M",
                    "location": "WH-1/SELLABLE",
                    "disposition": "RESTOCK_SELLABLE",
                    "quantity": 1,
                }
            ],
        },
        "IntakeReversed": {"movements": []},
        "RefundIssued": {
            "amount": {"amount_minor": 4498, "currency": "EUR"},
            "method": "CARD",
            "provider": "psp-double",
            "provider_refund_id": "RF-1",
            "status": "SUCCEEDED",
            "idempotency_key": f"{return_id}-refund-1",
        },
        "RefundFailed": {
            "amount": {"amount_minor": 4498, "currency": "EUR"},
            "method": "CARD",
            "provider": "psp-double",
            "decline_code": "account_closed",
            "detail": "",
            "retryable": False,
        },
        "SagaStepTimedOut": {"step": "PICKUP", "timer_id": "no-such-timer", "deadline_at": 1},
        "RefundReserved": {
            "order_ref": "ORD-1",
            "amount": {"amount_minor": 4498, "currency": "EUR"},
            "breakdown": [],
            "notes": [],
            "order_paid_minor": 6497,
            "order_reserved_minor": 4498,
            "other_returns": [],
            "unit_positions_json": "{}",
        },
        "RefundReservationRefused": {
            "order_ref": "ORD-1",
            "reason": "line L1: returning 2 after 2 of 3 bought",
            "held_by": ["RMA-OTHER"],
        },
        "RefundReservationReleased": {"order_ref": "ORD-1", "released_minor": 4498, "reason": ""},
        "RefundVoided": {
            "provider_refund_id": "RF-1",
            "amount": {"amount_minor": 4498, "currency": "EUR"},
        },
        "RefundSettled": {
            "provider": "psp",
            "provider_refund_id": "RF-1",
            "amount": {"amount_minor": 4498, "currency": "EUR"},
            "settled_at": 5,
        },
        "BuyerDetailsProvided": {
            "refund_account": {
                "holder": "B. Buyer",
                "number": "DE89370400440532013000",
                "bank_code": "COBADEFFXXX",
            }
        },
        "ReplacementOrderPlaced": {
            "replacement_order_id": "ro_1",
            "sku": "SKU-RED-L",
            "quantity": 3,
        },
        "ReplacementOutOfStock": {"sku": "SKU-RED-L", "available": 0},
        "RiskDecided": {
            "decision_id": f"{return_id}-risk",
            "outcome": "approve",
            "score": 0,
            "rule_set": "risk",
            "rule_set_version": 1,
            "reason": "",
            "rules": [],
            "missing": [],
            "case_id": None,
            "review_deadline_at": None,
            "shadow_outcome": None,
            "shadow_rule_set_version": None,
            "shadow_rules": [],
            "decided_at": 5,
        },
        "RiskReviewDecided": {
            "case_id": "case-1",
            "verdict": "approve",
            "reviewer": "reviewer-1",
            "reason": "photos show the item",
            "held": True,
            "decided_at": 6,
        },
        "SagaRetryRequested": {
            "requested_by": "oncall@example",
            "reason": "partner fixed",
            "operation_id": "op-1",
        },
        "SagaCancelRequested": {
            "requested_by": "oncall@example",
            "reason": "buyer phoned support",
            "operation_id": "op-2",
        },
        "SagaResumeRequested": {
            "requested_by": "oncall@example",
            "reason": "reviewed the photos",
            "operation_id": "op-3",
            "decision": "REFUND",
        },
    }
    envelope_overrides = fields.pop("envelope", {})
    record = {"envelope": {**envelope(name, return_id), **envelope_overrides}}
    record.update(defaults[name])
    record.update(fields)
    return record


def new_return_id() -> str:
    return f"RMA-{uuid.uuid4().hex[:10].upper()}"
