"""Seller tokens (a seller reads its own statements only) and the statement documents
(HTML page and notification per market language)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.settlement.seller_tokens import (
    AccessDenied,
    AccessSettings,
    issue_seller_token,
    seller_of_token,
)
from services.settlement.statement_documents import (
    StatementTexts,
    UnknownLanguage,
    notification,
    render_html,
)

SECRET = "s3cret"
NOW = 1_800_000_000_000


@given(st.text(min_size=1, max_size=60))
def test_a_token_names_the_seller_it_was_issued_for(seller_id: str) -> None:
    token = issue_seller_token(SECRET, seller_id, NOW + 1)
    assert seller_of_token(SECRET, token, NOW) == seller_id


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (issue_seller_token(SECRET, "S-1", NOW - 1), "expired"),
        (issue_seller_token("other", "S-1", NOW + 1), "signature"),
        (issue_seller_token(SECRET, "S-1", NOW + 1)[:-2] + "xx", "signature"),
        ("st1.abc", "not a seller token"),
        ("", "not a seller token"),
    ],
)
def test_a_wrong_token_is_refused_with_the_reason(token: str, reason: str) -> None:
    with pytest.raises(AccessDenied) as refused:
        seller_of_token(SECRET, token, NOW)
    assert refused.value.status == 401 and reason in refused.value.reason


def test_a_token_for_one_seller_cannot_be_turned_into_another() -> None:
    prefix, _seller, expiry, signature = issue_seller_token(SECRET, "S-1", NOW + 1).split(".")
    other = issue_seller_token(SECRET, "S-2", NOW + 1).split(".")[1]
    with pytest.raises(AccessDenied):
        seller_of_token(SECRET, ".".join([prefix, other, expiry, signature]), NOW)


def test_finance_reads_everything_a_seller_its_own() -> None:
    access = AccessSettings(SECRET, ("fin-1",))
    finance = access.reader("Bearer fin-1", NOW)
    seller = access.reader(f"Bearer {issue_seller_token(SECRET, 'S-1', NOW + 1)}", NOW)
    assert finance.may_read("S-1") and finance.may_read("S-2") and finance.is_finance
    assert seller.may_read("S-1") and not seller.may_read("S-2") and not seller.is_finance
    for header in (None, "Basic abc", "Bearer fin-2", "Bearer st1.a.1.é", "Bearer é"):
        with pytest.raises(AccessDenied):
            access.reader(header, NOW)


TEXTS = StatementTexts.load()
STATEMENT = {
    "seller_id": "S-<b>",
    "market": "DE",
    "currency": "EUR",
    "cycle_id": "DE-02918",
    "opening_minor": -500,
    "closing_minor": 123_456,
    "payout_minor": 123_456,
    "carried_forward_minor": 0,
    "totals": {"ItemPrice": -10_000, "Commission": 1_000},
    "lines": [
        {
            "entry_id": "e1",
            "return_id": "R-1",
            "order_ref": "O-1",
            "sku": "SKU-<script>",
            "line_type": "ItemPrice",
            "description": "refund of <script>alert(1)</script>",
            "amount_minor": -10_000,
            "booked_at_ms": NOW,
        }
    ],
}


def test_every_language_has_every_text() -> None:
    english = TEXTS.languages["en"]
    assert set(TEXTS.languages) >= {"en", "de", "id", "ar"}
    for language in TEXTS.languages.values():
        assert set(language.labels) == set(english.labels), language.code
        assert set(language.line_types) == set(english.line_types), language.code
        assert set(language.outcomes) == set(english.outcomes), language.code
        notification(STATEMENT, language, "/x")  # every placeholder is known


@pytest.mark.parametrize(
    ("language", "amount", "currency", "shown"),
    [
        ("en", 123_456, "EUR", "1,234.56 EUR"),
        ("de", -123_456, "EUR", "-1.234,56 EUR"),
        ("id", 1_500_000, "IDR", "1.500.000 IDR"),
        ("ar", 1_234, "KWD", "1.234 KWD"),
        ("en", 5, "JPY", "5 JPY"),
    ],
)
def test_money_is_shown_in_the_currencys_decimals_and_the_languages_separators(
    language: str, amount: int, currency: str, shown: str
) -> None:
    assert TEXTS.languages[language].money(amount, currency) == shown


def test_the_page_is_in_the_markets_language_and_escapes_what_came_from_outside() -> None:
    page = render_html(STATEMENT, TEXTS.language("DE"))
    assert '<html lang="de" dir="ltr">' in page and "Abrechnung" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and "S-&lt;b&gt;" in page
    assert "1.234,56 EUR" in page and "Erstatteter Artikelpreis" in page
    assert 'dir="rtl"' in render_html(STATEMENT, TEXTS.language("KW"))
    assert '<html lang="en"' in render_html(STATEMENT, TEXTS.language("ZZ"))


def test_the_notification_says_what_is_paid_or_carried() -> None:
    paid = notification(STATEMENT, TEXTS.language("DE"), "/link")
    assert paid["language"] == "de" and "DE-02918" in paid["subject"]
    assert "Wir zahlen 1.234,56 EUR aus." in paid["body"] and "/link" in paid["body"]
    owing = STATEMENT | {"closing_minor": -700, "payout_minor": 0, "carried_forward_minor": -700}
    carried = notification(owing, TEXTS.language("GB"), "/link")
    assert "negative balance of -7.00 EUR is carried" in carried["body"]
    with pytest.raises(UnknownLanguage):
        TEXTS.language("DE", "xx")
