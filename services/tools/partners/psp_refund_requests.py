"""What the PSP double accepts in a refund request (`POST /refunds`), checked field by field:
a 422 naming the field for anything else."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.tools.partners import http_support
from services.tools.partners.psp_refunds import BANK_TRANSFER, BNPL, METHODS, RefundRequest

CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
MAX_AMOUNT_MINOR = 10**12
BANK_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9]{6,34}")


def refund_request(payload: Mapping[str, Any]) -> RefundRequest:
    """A BANK_TRANSFER needs the buyer's `bank_account`; a BNPL refund its `order_ref` and
    `order_paid_minor` (at least `amount_minor`)."""
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


def optional_return_id(payload: Mapping[str, Any]) -> str | None:
    if payload.get("return_id") is None:
        return None
    return http_support.text_field(payload, "return_id")


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


def _amount_minor(payload: Mapping[str, Any], name: str) -> int:
    """Money is a whole number of minor units (cents): no floats, no bools, more than zero."""
    return http_support.whole_number_field(
        payload,
        name,
        minimum=1,
        maximum=MAX_AMOUNT_MINOR,
        expected="an integer number of minor units",
    )


def _currency(payload: Mapping[str, Any], name: str) -> str:
    value = http_support.required_field(payload, name)
    if not isinstance(value, str) or not CURRENCY_PATTERN.fullmatch(value):
        raise http_support.invalid_field(
            name, f"must be three upper-case letters (ISO 4217), got {value!r}"
        )
    return value
