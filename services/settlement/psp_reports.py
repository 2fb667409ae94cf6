"""The providers' daily settlement reports (an adapter): fetched over HTTP and read from CSV.

A report is outside input: every row is checked, and a row that is wrong is kept aside with
the reason (`RejectedRow`) instead of stopping the day or being dropped in silence.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import httpx

from services.decisions.money import CURRENCY_EXPONENTS
from services.decisions.settlement.reconciliation import LINE_TYPES, REPORT_COLUMNS, ReportLine

COLUMNS = REPORT_COLUMNS
MAX_TEXT = 200
MAX_MINOR = 10**15  # a line above this is a corrupt report, not a refund
BOOKED_WITHIN_DAYS = (400, 7)  # a line's booking date: at most this long before / after its report


class ReportUnavailable(Exception):
    """A provider's report could not be fetched (the day is reconciled again later)."""


@dataclass(frozen=True)
class RejectedRow:
    provider: str
    row_no: int  # 1 = the first row after the header
    reason: str
    raw: str

    def to_json(self) -> dict[str, object]:
        return {"provider": self.provider, "row": self.row_no, "reason": self.reason}


def parse_report(
    provider: str, text: str, day: date | None = None
) -> tuple[list[ReportLine], list[RejectedRow]]:
    """The report's lines, and the rows that could not be read (with the reason); with the
    report's `day`, a booking date far from it is a wrong row too."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    except csv.Error as exc:
        missing = [f"a readable header ({exc})"]
    if missing:
        return [], [RejectedRow(provider, 0, f"the header lacks {missing}", text[:200])]
    lines: list[ReportLine] = []
    rejected: list[RejectedRow] = []
    row_no = 0
    while True:
        row_no += 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # the rest cannot be split into rows: set aside whole
            rest = f"not CSV from here on: {exc}"
            rejected.append(RejectedRow(provider, row_no, rest, ""))
            break
        try:
            line = _line(provider, row, row_no)
            if day is not None and not (
                day - timedelta(days=BOOKED_WITHIN_DAYS[0])
                <= line.booking_date
                <= day + timedelta(days=BOOKED_WITHIN_DAYS[1])
            ):
                raise ValueError(f"booking_date {line.booking_date} is far from the report's {day}")
            lines.append(line)
        except ValueError as exc:
            rejected.append(RejectedRow(provider, row_no, str(exc), json.dumps(row)[:500]))
    return lines, rejected


def _line(provider: str, row: Mapping[str, str | None], row_no: int) -> ReportLine:
    def text(name: str) -> str:
        value = row.get(name)
        value = value.strip() if isinstance(value, str) else ""
        if not value or len(value) > MAX_TEXT:
            raise ValueError(f"{name} is empty or longer than {MAX_TEXT} characters")
        if not value.isprintable():
            raise ValueError(f"{name} holds control characters")
        return value

    def whole(name: str) -> int:
        value = text(name)
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} is not a whole number of minor units: {value!r}") from None

    line_type = text("type")
    if line_type not in LINE_TYPES:
        raise ValueError(f"type {line_type!r} is not one of {sorted(LINE_TYPES)}")
    currency = text("currency")
    if currency not in CURRENCY_EXPONENTS:
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code settled here")
    gross, fee, net = whole("gross_minor"), whole("fee_minor"), whole("net_minor")
    if max(gross, fee, net) > MAX_MINOR:
        raise ValueError(f"an amount above {MAX_MINOR} minor units")
    if gross < 0 or fee < 0 or net != gross + fee:
        raise ValueError(f"gross {gross}, fee {fee} and net {net} do not add up (net = gross+fee)")
    try:
        booked = date.fromisoformat(text("booking_date"))
    except ValueError:
        raise ValueError(f"booking_date {row.get('booking_date')!r} is not a date") from None
    return ReportLine(
        provider,
        text("provider_reference"),
        text("merchant_reference"),
        line_type,
        gross,
        fee,
        net,
        currency,
        booked,
        text("batch"),
        row_no,
    )


def providers_from_env() -> dict[str, str]:
    """The providers to reconcile with (`PSP_PROVIDERS`: name → base URL, as the refund
    service uses them; `PSP_URL` alone is the provider `psp`)."""
    raw = os.environ.get("PSP_PROVIDERS")
    if raw:
        providers = json.loads(raw)
        if not isinstance(providers, dict):
            raise ValueError("PSP_PROVIDERS must be a JSON object: name → base URL")
        return {str(name): str(url) for name, url in providers.items()}
    url = os.environ.get("PSP_URL")
    return {"psp": url} if url else {}


async def fetch_report(http: httpx.AsyncClient, provider_url: str, day: date) -> str:
    """The CSV of one provider's report of `day`; ReportUnavailable when it cannot be had."""
    try:
        response = await http.get(
            f"{provider_url.rstrip('/')}/reports/settlement", params={"date": day.isoformat()}
        )
    except httpx.HTTPError as exc:
        raise ReportUnavailable(f"{provider_url}: {exc!r}") from exc
    if response.status_code != 200:
        raise ReportUnavailable(
            f"{provider_url}: HTTP {response.status_code} {response.text[:200]}"
        )
    return response.text
