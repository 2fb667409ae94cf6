"""A buyer's bank account for bank-transfer refunds: validated and normalised (pure)."""

from __future__ import annotations

import re
from typing import Any

from services.eventing.request_fields import Fields

ACCOUNT_NUMBER = re.compile(r"[A-Z0-9]{6,34}")  # domestic account numbers and IBANs
BANK_CODE = re.compile(r"[A-Z0-9]{2,16}")  # BIC, sort code, bank id


def parse_bank_account(fields: Fields, key: str, data: Any) -> dict[str, str] | None:
    """`data` as the buyer sent it; problems are recorded on `fields` under `key`."""
    if not isinstance(data, dict):
        fields.problem(key, "must be an object with holder, number and bank_code")
        return None
    account = fields.nested(key, data)
    holder = account.text("holder", max_len=128).strip()
    number = re.sub(r"[\s-]", "", account.text("number", max_len=64)).upper()
    bank_code = re.sub(r"[\s-]", "", account.text("bank_code", max_len=32)).upper()
    if number and not ACCOUNT_NUMBER.fullmatch(number):
        account.problem("number", "must be 6-34 letters and digits (account number or IBAN)")
    if bank_code and not BANK_CODE.fullmatch(bank_code):
        account.problem("bank_code", "must be 2-16 letters and digits")
    if not (holder and ACCOUNT_NUMBER.fullmatch(number) and BANK_CODE.fullmatch(bank_code)):
        return None
    return {"holder": holder, "number": number, "bank_code": bank_code}
