"""A notice's words in its reader's language (pure): texts per language and recipient
(deploy/notifications/<lang>.json, loaded by the service), the language of each market
(deploy/settlement/markets.json, as sellers' statements; a market not listed reads
`en`), and the facts put in (`$name` placeholders; money shown with the language's
decimal separator and the currency's decimals).

`check_texts` refuses a set where a text names a fact its milestone does not have, or
the fallback language lacks a milestone: a bad file stops the service's start, never a
message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Any

from services.decisions.money import shown_amount
from services.decisions.notifications.milestones import MILESTONES, Notice

FALLBACK = "en"
# the facts each milestone offers a text (besides return_id), as milestones.py gives them
FACTS: dict[str, tuple[str, ...]] = {
    "accepted": ("order_ref",),
    "rejected": ("reason",),
    "cancelled": ("reason",),
    "pickup_booked": ("carrier", "tracking_number", "window_start", "window_end"),
    "pickup_failed": ("attempt_no", "reason"),
    "pickup_rescheduled": ("window_start", "window_end"),
    "drop_off_booked": ("point_id", "drop_off_code"),
    "inspected": ("items", "grades"),
    "held": ("review_by",),
    "bank_account_needed": ("deadline",),
    "bank_account_changed": ("account_ends",),
    "refunded": ("amount", "method"),
    "disputed": ("dispute_id",),
    "decided": ("decision", "amount"),
    "closed": ("outcome", "amount"),
}


@dataclass(frozen=True)
class Message:
    language: str
    subject: str
    body: str


@dataclass(frozen=True)
class MessageTexts:
    # language -> recipient -> milestone -> {"subject", "body"}
    texts: Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]
    market_languages: Mapping[str, str]
    decimal_separators: Mapping[str, str]

    def language_of(self, market: str) -> str:
        code = self.market_languages.get(market, FALLBACK)
        return code if code in self.texts else FALLBACK

    def render(self, notice: Notice, market: str, return_id: str) -> Message:
        language = self.language_of(market)
        recipient_texts = self.texts[language].get(notice.recipient, {})
        if notice.milestone not in recipient_texts:
            language, recipient_texts = FALLBACK, self.texts[FALLBACK][notice.recipient]
        text = recipient_texts[notice.milestone]
        facts = shown_facts(notice.facts, self.decimal_separators.get(language, "."))
        facts["return_id"] = return_id
        return Message(
            language,
            Template(text["subject"]).safe_substitute(facts),
            Template(text["body"]).safe_substitute(facts),
        )


def shown_facts(facts: Mapping[str, Any], decimal_separator: str) -> dict[str, str]:
    shown = {key: str(value) for key, value in facts.items()}
    if "amount_minor" in facts:
        amount = int(facts["amount_minor"])
        shown["amount"] = shown_amount(amount, str(facts.get("currency", "")), decimal_separator)
    return shown


def check_texts(texts: Mapping[str, Any]) -> list[str]:
    """What is wrong with a set of texts (empty: usable)."""
    problems: list[str] = []
    if FALLBACK not in texts:
        return [f"no {FALLBACK} texts: the fallback language is required"]
    for language, by_recipient in texts.items():
        if not isinstance(by_recipient, Mapping):
            problems.append(f"{language}: not an object of recipients")
            continue
        for recipient, milestones in by_recipient.items():
            if recipient not in ("buyer", "seller") or not isinstance(milestones, Mapping):
                problems.append(f"{language}.{recipient}: not a recipient's texts")
                continue
            for milestone, text in milestones.items():
                where = f"{language}.{recipient}.{milestone}"
                if milestone not in MILESTONES:
                    problems.append(f"{where}: no such milestone")
                    continue
                problems += _check_text(where, milestone, text)
    for milestone, recipients in MILESTONES.items():
        for recipient in recipients:
            if milestone not in texts[FALLBACK].get(recipient, {}):
                problems.append(f"{FALLBACK}.{recipient}.{milestone}: missing")
    return problems


def _check_text(where: str, milestone: str, text: Any) -> list[str]:
    if not isinstance(text, Mapping) or set(text) != {"subject", "body"}:
        return [f"{where}: needs exactly `subject` and `body`"]
    allowed = {*FACTS[milestone], "return_id"}
    problems = []
    for part in ("subject", "body"):
        if not isinstance(text[part], str) or not text[part].strip():
            problems.append(f"{where}.{part}: empty")
            continue
        template = Template(text[part])
        if not template.is_valid():
            problems.append(f"{where}.{part}: a `$` that is not a placeholder (write `$$`)")
            continue
        unknown = set(template.get_identifiers()) - allowed
        if unknown:
            problems.append(
                f"{where}.{part}: no such fact {sorted(unknown)} (has {sorted(allowed)})"
            )
    return problems
