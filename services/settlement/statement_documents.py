"""A statement as a seller reads it: a readable HTML page and the notification text that
tells the seller it is there, in the market's language (deploy/settlement/markets.json)
from templates per language (deploy/settlement/languages/<lang>.json: labels, line type
names, number separators, the notification's subject and body, `string.Template`).

Rendering is plain functions of a statement and a loaded language; every value that came
from outside (ids, descriptions) is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from services.decisions.money import shown_amount

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "settlement"
FALLBACK = "en"


class UnknownLanguage(ValueError):
    pass


@dataclass(frozen=True)
class Language:
    code: str
    direction: str
    decimal_separator: str
    thousands_separator: str
    labels: dict[str, str]
    line_types: dict[str, str]
    notification: dict[str, str]
    outcomes: dict[str, str]

    def money(self, amount_minor: int, currency: str) -> str:
        """`-1.234,56 EUR` (separators of the language, the currency's decimals)."""
        return shown_amount(
            amount_minor, currency, self.decimal_separator, self.thousands_separator
        )


@dataclass(frozen=True)
class StatementTexts:
    """The languages, and which one each market reads."""

    languages: dict[str, Language]
    market_languages: dict[str, str]

    @classmethod
    def load(cls, directory: Path | None = None) -> StatementTexts:
        folder = directory or Path(os.environ.get("BOOMERANG_SETTLEMENT_TEXTS") or DEFAULT_DIR)
        languages = {}
        for path in sorted((folder / "languages").glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            languages[path.stem] = Language(
                path.stem,
                data["direction"],
                data["decimal_separator"],
                data["thousands_separator"],
                data["labels"],
                data["line_types"],
                data["notification"],
                data["outcomes"],
            )
        markets = json.loads((folder / "markets.json").read_text(encoding="utf-8"))
        markets.pop("_doc", None)
        if FALLBACK not in languages:
            raise ValueError(f"{folder}: the {FALLBACK} texts are missing")
        return cls(languages, markets)

    def language(self, market: str, asked: str | None = None) -> Language:
        """The language asked for, else the market's; UnknownLanguage for one not here."""
        code = asked or self.market_languages.get(market, FALLBACK)
        if code not in self.languages:
            raise UnknownLanguage(f"no statement texts in {code!r}: {sorted(self.languages)}")
        return self.languages[code]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def render_html(statement: dict[str, Any], language: Language) -> str:
    """The statement as one HTML page (no scripts, no outside resources)."""
    labels, currency = language.labels, statement["currency"]
    e = html.escape

    def money(amount: int) -> str:
        return e(language.money(amount, currency))

    rows = "\n".join(
        "<tr>"
        f"<td>{e(_when(line['booked_at_ms']))}</td><td>{e(line['return_id'])}</td>"
        f"<td>{e(line['order_ref'])}</td><td>{e(line['sku'])}</td>"
        f"<td>{e(language.line_types.get(line['line_type'], line['line_type']))}</td>"
        f"<td>{e(line['description'])}</td><td class=amount>{money(line['amount_minor'])}</td>"
        "</tr>"
        for line in statement["lines"]
    )
    totals = "\n".join(
        f"<tr><td>{e(language.line_types.get(kind, kind))}</td>"
        f"<td class=amount>{money(amount)}</td></tr>"
        for kind, amount in statement["totals"].items()
    )
    draft = f"<p class=draft>{e(labels['draft'])}</p>" if statement.get("draft") else ""
    headers = "".join(
        f"<th>{e(labels[k])}</th>"
        for k in ("booked", "return", "order", "sku", "type", "description", "amount")
    )
    return f"""<!doctype html>
<html lang="{e(language.code)}" dir="{e(language.direction)}">
<head><meta charset="utf-8"><title>{e(labels["title"])} {e(statement["cycle_id"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}.amount{{text-align:end;white-space:nowrap}}
.draft{{color:#a60}}</style></head>
<body>
<h1>{e(labels["title"])}</h1>
{draft}
<dl>
<dt>{e(labels["seller"])}</dt><dd id=seller>{e(statement["seller_id"])}</dd>
<dt>{e(labels["cycle"])}</dt><dd id=cycle>{e(statement["cycle_id"])}</dd>
<dt>{e(labels["currency"])}</dt><dd>{e(currency)}</dd>
<dt>{e(labels["opening"])}</dt><dd id=opening>{money(statement["opening_minor"])}</dd>
<dt>{e(labels["closing"])}</dt><dd id=closing>{money(statement["closing_minor"])}</dd>
<dt>{e(labels["payout"])}</dt><dd id=payout>{money(statement["payout_minor"])}</dd>
<dt>{e(labels["carried"])}</dt><dd id=carried>{money(statement["carried_forward_minor"])}</dd>
</dl>
<table id=lines><thead><tr>{headers}</tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>{e(labels["totals"])}</h2>
<table id=totals><tbody>
{totals}
</tbody></table>
</body></html>
"""


def notification(statement: dict[str, Any], language: Language, link: str) -> dict[str, str]:
    """The message telling the seller its statement is there: subject and body."""
    currency = statement["currency"]
    amounts = {
        "payout": language.money(statement["payout_minor"], currency),
        "carried": language.money(statement["carried_forward_minor"], currency),
    }
    if statement["payout_minor"] > 0:
        outcome = Template(language.outcomes["payout"]).substitute(amounts)
    elif statement["carried_forward_minor"] < 0:
        outcome = Template(language.outcomes["carried"]).substitute(amounts)
    else:
        outcome = language.outcomes["zero"]
    values = {
        "seller_id": statement["seller_id"],
        "cycle_id": statement["cycle_id"],
        "currency": currency,
        "lines": str(len(statement["lines"])),
        "opening": language.money(statement["opening_minor"], currency),
        "closing": language.money(statement["closing_minor"], currency),
        "outcome": outcome,
        "link": link,
        **amounts,
    }
    return {
        "language": language.code,
        "subject": Template(language.notification["subject"]).substitute(values),
        "body": Template(language.notification["body"]).substitute(values),
    }
