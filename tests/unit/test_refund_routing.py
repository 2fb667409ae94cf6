"""The refund service's pure parts: decline codes → next action, provider routes and
failover order, settlement webhooks → events."""

from __future__ import annotations

import pytest

from services.decisions.refunds.decline_codes import DECLINE_ACTIONS, NextAction, next_action
from services.decisions.refunds.provider_routing import (
    ProviderRoutes,
    RoutingError,
    providers_to_try,
)
from services.eventing.avro_codec import AvroCodec
from services.eventing.request_fields import ApiError
from services.eventing.schema_catalogue import SchemaCatalogue
from services.refund.webhook_parsing import provider_of, webhook_event

CODEC = AvroCodec(SchemaCatalogue.load())


@pytest.mark.parametrize(("code", "action"), sorted(DECLINE_ACTIONS.items()))
def test_every_known_decline_code_has_its_action(code, action):
    assert next_action(code) == action
    assert next_action(f"  {code.upper()} ") == action


def test_an_unknown_decline_code_goes_to_a_person():
    assert next_action("something_new") == NextAction.NEEDS_ATTENTION


ROUTES = '{"CARD": ["psp", "psp-b"], "*": ["psp"]}'


def test_cards_fail_over_to_the_second_provider_other_methods_have_one():
    routes = ProviderRoutes.parse(ROUTES, ["psp", "psp-b"])
    assert providers_to_try(routes, "CARD", None) == ("psp", "psp-b")
    assert providers_to_try(routes, "EWALLET", None) == ("psp",)


def test_a_refund_that_reached_a_provider_stays_with_it():
    routes = ProviderRoutes.parse(ROUTES, ["psp", "psp-b"])
    assert providers_to_try(routes, "CARD", "psp-b") == ("psp-b",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[]", "non-empty JSON object"),
        ('{"CARD": ["psp"]}', "'*'"),
        ('{"*": []}', "non-empty list"),
        ('{"*": ["nope"]}', "unknown provider"),
        ('{"*": ["psp", "psp"]}', "listed twice"),
    ],
)
def test_bad_routes_are_refused_with_the_reason(text, problem):
    with pytest.raises(RoutingError, match=problem):
        ProviderRoutes.parse(text, ["psp", "psp-b"])


def webhook(kind: str = "refund.settled", **refund) -> dict:
    return {
        "webhook_id": "wh_rf_1_succeeded",
        "type": kind,
        "provider": "psp",
        "occurred_at": 1_790_000_000_000,
        "refund": {
            "refund_id": "rf_1",
            "return_id": "RMA-1",
            "amount_minor": 4498,
            "currency": "EUR",
            "method": "CARD",
            "status": "succeeded" if kind == "refund.settled" else "failed",
            "decline_code": None if kind == "refund.settled" else "account_closed",
        }
        | refund,
    }


def test_a_settled_webhook_becomes_refund_settled_with_an_id_from_the_webhook():
    name, record = webhook_event(webhook(), "refund")
    again_name, again = webhook_event(webhook(), "refund")
    assert name == again_name == "RefundSettled"
    assert record["envelope"]["event_id"] == again["envelope"]["event_id"]
    assert record["provider_refund_id"] == "rf_1"
    assert record["amount"] == {"amount_minor": 4498, "currency": "EUR"}
    CODEC.encode(name, record)


def test_a_failed_webhook_becomes_refund_failed_with_its_next_action():
    name, record = webhook_event(webhook("refund.failed"), "refund")
    assert name == "RefundFailed"
    assert (record["decline_code"], record["next_action"]) == ("account_closed", "FALLBACK")
    assert record["retryable"] is False
    CODEC.encode(name, record)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (webhook(amount_minor=0), "refund.amount_minor"),
        (webhook(currency="eur"), "refund.currency"),
        (webhook(method="CASH"), "refund.method"),
        (webhook(status="failed"), "refund.status"),
        (webhook("refund.failed", decline_code=""), "refund.decline_code"),
        ({**webhook(), "type": "refund.created"}, "type"),
        ({**webhook(), "refund": "rf_1"}, "refund"),
    ],
)
def test_a_wrong_webhook_is_refused_naming_the_field(body, field):
    with pytest.raises(ApiError) as refused:
        webhook_event(body, "refund")
    assert refused.value.status == 422
    assert field in [problem.field for problem in refused.value.fields]


def test_a_webhook_without_a_provider_is_refused():
    with pytest.raises(ApiError):
        provider_of({"type": "refund.settled"})
