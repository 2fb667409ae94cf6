"""The front door's handlers with the deployed policy files and an in-memory answers table
(no broker, no HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import pytest

from services.decisions.admission import AdmissionLimits, Refusal
from services.decisions.admission_pace import PaceSettings
from services.decisions.caller_quota import CallerQuotas, QuotaTerms
from services.decisions.folded_events import unfolded
from services.eventing.handler_contract import HttpRequest, Incoming
from services.eventing.request_fields import ApiError
from services.returns import handlers
from services.returns.admission_settings import admission_limits_from_env, pace_settings_from_env
from services.returns.handlers import ReturnsPorts
from services.tools.local_stack.drawn_returns import request_of
from tests.support.buyer_signin import authenticate, bearer
from tests.support.fake_orders import FakeOrders
from tests.support.fake_partners import Published
from tests.support.policies import deployed_rules
from tests.support.return_events import return_request_body

NOW = 1_790_000_000_000


def ports() -> ReturnsPorts:
    return ReturnsPorts(
        {},
        deployed_rules(),
        Published(),
        lambda: NOW,
        FakeOrders(),
        authenticate,
        lambda: "RMA-NEW-1",
    )


def create(
    wired: ReturnsPorts, key: str | None = "key-1", as_buyer: str = "B-1", **overrides: Any
) -> Any:
    described = return_request_body(**overrides)
    wired.orders.place_described(described)  # the marketplace's order of the body
    body = json.dumps(described).encode()
    headers = {"Idempotency-Key": key} if key else {}
    headers |= bearer(as_buyer, NOW)
    return asyncio.run(handlers.create_return(wired, HttpRequest(body, headers)))


def signed(body: Any, subject: str = "B-1", signed_in_at: int = NOW, role: str = "buyer") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpRequest(raw, bearer(subject, NOW, signed_in_at, role))


def refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as refused:
        call()
    return refused.value.status, refused.value.code


def unfolded_names(wired: ReturnsPorts) -> list[str]:
    return [
        each for name, record, *_ in wired.publish.records for each, _ in unfolded(name, record)
    ]


def test_an_accepted_return_is_one_record_carrying_its_request_and_answers_202():
    """...after its policy, published once per process and named by its digest."""
    wired = ports()
    answer = create(wired)
    assert (answer.status, answer.body["status"]) == (202, "accepted")
    assert wired.publish.names() == ["PolicySnapshotPublished", "ReturnAccepted"]
    assert unfolded_names(wired) == [
        "PolicySnapshotPublished",
        "ReturnRequested",
        "ReturnAccepted",
    ]
    [(_, snapshot, _), (_, accepted)] = wired.publish.records
    request = accepted["requested"]
    assert accepted["envelope"]["causation_id"] == request["envelope"]["event_id"]
    assert answer.body["return_id"] == handlers.return_id_for_key("key-1")
    assert answer.body["policy_version"].startswith("DE/")
    digest = hashlib.sha256(snapshot["policy_json"].encode()).hexdigest()
    assert accepted["policy_digest"] == snapshot["policy_digest"] == digest
    assert accepted.get("policy_json") is None  # the schema's default: null
    assert json.loads(snapshot["policy_json"])["version"] == accepted["policy_version"]
    create(wired, key="key-2")  # the same policy: only the return's record
    assert wired.publish.names()[2:] == ["ReturnAccepted"]
    assert wired.publish.records[2][1]["policy_digest"] == digest


def test_a_policy_is_published_with_its_digest_as_the_key():
    (name, record, key) = handlers.policy_snapshot(
        "RMA-1", deployed_rules().decide(request_of(return_request_body()), NOW), NOW
    )
    assert name == "PolicySnapshotPublished"
    assert key == record["policy_digest"].encode()


def test_the_same_key_and_body_answer_the_same_return_again_another_body_is_409():
    wired = ports()
    first = create(wired)
    published = len(wired.publish.records)
    again = create(wired)
    assert (again.body, again.headers) == (first.body, {"Idempotent-Replayed": "true"})
    assert len(wired.publish.records) == published
    assert refusal(lambda: create(wired, reason_code="DEFECTIVE")) == (
        409,
        "idempotency_key_reused",
    )


def test_an_answer_survives_a_restart_through_the_table_rebuilt_from_the_topic():
    before = ports()
    create(before)
    after = ports()  # a new process: no recent answers, the table learns from the topic
    for name, record, *_ in before.publish.records:
        if name == "PolicySnapshotPublished":  # not on the returns topic
            continue
        incoming = Incoming(name, record, record["envelope"]["return_id"].encode())
        asyncio.run(handlers.record_answers(after, incoming))
    again = create(after)
    assert (again.status, again.headers) == (202, {"Idempotent-Replayed": "true"})
    assert after.publish.records == []


def test_a_return_outside_the_policy_is_a_422_with_the_rule_and_is_still_recorded():
    wired = ports()
    answer = create(wired, delivered_at="2025-01-01")
    assert (answer.status, answer.body["error"]) == (422, "policy_rejected")
    assert wired.publish.names() == ["ReturnRejected"]
    assert unfolded_names(wired) == ["ReturnRequested", "ReturnRejected"]


def test_without_a_key_each_return_gets_a_fresh_id_from_the_port():
    answer = create(ports(), key=None)
    assert answer.body["return_id"] == "RMA-NEW-1"


def test_cancel_and_bank_account_need_a_known_return_and_are_one_event_each():
    wired = ports()
    return_id = create(wired).body["return_id"]
    cancel = signed({"cancelled_by": "buyer", "reason": "found it"})
    assert refusal(lambda: asyncio.run(handlers.cancel_return(wired, cancel, "RMA-NOPE"))) == (
        404,
        "unknown_return",
    )
    answer = asyncio.run(handlers.cancel_return(wired, cancel, return_id))
    again = asyncio.run(handlers.cancel_return(wired, cancel, return_id))
    assert answer.status == again.status == 202
    assert answer.body["event_id"] == again.body["event_id"]
    account = {
        "holder": "Erika Mustermann",
        "number": "DE89370400440532013000",
        "bank_code": "COBA",
    }
    given = signed(account)
    answer = asyncio.run(handlers.give_bank_account(wired, given, return_id))
    assert (answer.status, wired.publish.names()[-1]) == (202, "BuyerDetailsProvided")
    bad = signed(b"[]")
    assert refusal(lambda: asyncio.run(handlers.give_bank_account(wired, bad, return_id)))[0] == 400


def test_an_overloaded_front_door_refuses_a_new_return_with_503_and_retry_after():
    seen: list[int] = []
    wired = ports()

    def admit(in_flight: int) -> Refusal | None:
        seen.append(in_flight)
        return Refusal("accepted returns wait 45 s for the coordinator (limit 30 s)", 15)

    wired.admit = admit
    answer = create(wired)
    assert answer.status == 503
    assert answer.headers == {"Retry-After": "15"}
    assert answer.body["error"] == "overloaded" and "45 s" in answer.body["detail"]
    assert wired.publish.records == []  # nothing recorded: the same request can come again
    assert seen == [1] and wired.in_flight == 0


def test_a_new_return_can_be_refused_where_it_lands_before_it_is_forwarded():
    """The instance a request lands on decides with the same measure as the owner (a
    refusal there costs no forward); the owner decides again with its own draw."""
    wired = ports()
    wired.admit = lambda in_flight: Refusal("busy", 2)
    early = wired.refused_before_forwarding(HttpRequest(b"{}"))
    assert early is not None and (early.status, early.headers) == (503, {"Retry-After": "2"})
    assert early.body["error"] == "overloaded" and wired.publish.records == []
    wired.admit = lambda in_flight: None
    assert wired.refused_before_forwarding(HttpRequest(b"{}")) is None


def test_a_replay_of_an_accepted_return_is_answered_even_while_refusing_new_ones():
    wired = ports()
    first = create(wired)
    wired.admit = lambda in_flight: Refusal("busy", 1)
    again = create(wired)
    assert (again.status, again.body) == (first.status, first.body)
    assert again.headers == {"Idempotent-Replayed": "true"}
    assert create(wired, key="key-2").status == 503


def test_the_admission_limits_come_from_the_environment() -> None:
    assert admission_limits_from_env({}) == AdmissionLimits()
    limits = admission_limits_from_env(
        {
            "BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S": "12.5",
            "BOOMERANG_ADMISSION_EARLY_SHARE": "1.7",
            "BOOMERANG_ADMISSION_MAX_WAIT_S": "0",
            "BOOMERANG_ADMISSION_MAX_IN_FLIGHT": "7",
        }
    )
    assert limits == AdmissionLimits(
        max_pipeline_wait_s=12.5, early_share=1.0, max_wait_s=float("inf"), max_in_flight=7
    )


def test_the_pace_settings_come_from_the_environment() -> None:
    assert pace_settings_from_env({}) == PaceSettings()
    pace = pace_settings_from_env(
        {
            "BOOMERANG_ADMISSION_PACE": "off",
            "BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S": "8",
            "BOOMERANG_ADMISSION_PACE_CUT": "3",
            "BOOMERANG_ADMISSION_PACE_GROWTH": "-1",
            "BOOMERANG_ADMISSION_PACE_MIN_RATE": "20",
        }
    )
    assert pace == PaceSettings(slow_from_s=4.0, cut=1.0, growth=0.0, min_rate=20.0, enabled=False)
    no_wait_limit = {"BOOMERANG_ADMISSION_MAX_PIPELINE_WAIT_S": "0"}
    assert pace_settings_from_env(no_wait_limit).slow_from_s == float("inf")


def refused_with_headers(call: Any) -> tuple[int, str, dict[str, str]]:
    with pytest.raises(ApiError) as refused:
        call()
    return refused.value.status, refused.value.code, refused.value.headers


def test_a_return_needs_the_buyers_token_and_their_own_order():
    wired = ports()
    body = json.dumps(return_request_body()).encode()
    unsigned = HttpRequest(body, {"Idempotency-Key": "key-1"})
    status, code, headers = refused_with_headers(
        lambda: asyncio.run(handlers.create_return(wired, unsigned))
    )
    assert (status, code, headers) == (401, "missing_token", {"WWW-Authenticate": "Bearer"})
    forged = HttpRequest(body, {"Authorization": "Bearer abc.def.ghi"})
    assert refusal(lambda: asyncio.run(handlers.create_return(wired, forged))) == (
        401,
        "invalid_token",
    )
    assert refusal(lambda: create(wired, as_buyer="B-OTHER")) == (403, "not_your_order")
    assert wired.publish.records == []
    first = create(wired)  # the order's own buyer
    assert first.status == 202
    # another buyer replaying the same key and body learns nothing of it
    assert refusal(lambda: create(wired, as_buyer="B-OTHER")) == (403, "not_your_return")


def test_an_expired_token_and_a_support_agent_cannot_ask_for_a_return():
    wired = ports()
    body = return_request_body()
    wired.orders.place_described(body)
    old = HttpRequest(json.dumps(body).encode(), bearer("B-1", NOW - 2 * 3_600_000))
    assert refusal(lambda: asyncio.run(handlers.create_return(wired, old))) == (
        401,
        "token_expired",
    )
    agent = signed(body, "AGENT-7", role="support")
    assert refusal(lambda: asyncio.run(handlers.create_return(wired, agent))) == (
        403,
        "buyers_only",
    )


def test_only_the_returns_buyer_or_support_cancels_it():
    wired = ports()
    return_id = create(wired).body["return_id"]
    other = signed({}, "B-OTHER")
    assert refusal(lambda: asyncio.run(handlers.cancel_return(wired, other, return_id))) == (
        403,
        "not_your_return",
    )
    posing = signed({"cancelled_by": "support"})
    assert refusal(lambda: asyncio.run(handlers.cancel_return(wired, posing, return_id))) == (
        403,
        "not_your_role",
    )
    agent = signed({"reason": "duplicate return"}, "AGENT-7", role="support")
    answer = asyncio.run(handlers.cancel_return(wired, agent, return_id))
    assert answer.status == 202
    assert wired.publish.records[-1][1]["cancelled_by"] == "support"


def test_a_bank_account_needs_a_fresh_sign_in_and_is_audited():
    wired = ports()
    return_id = create(wired).body["return_id"]
    account = {
        "holder": "Erika Mustermann",
        "number": "DE89370400440532013000",
        "bank_code": "COBA",
    }
    stale = signed(account, signed_in_at=NOW - 301_000)
    status, code, headers = refused_with_headers(
        lambda: asyncio.run(handlers.give_bank_account(wired, stale, return_id))
    )
    assert (status, code) == (401, "fresh_sign_in_required")
    assert 'error="insufficient_user_authentication"' in headers["WWW-Authenticate"]
    assert 'max_age="300"' in headers["WWW-Authenticate"]
    other = signed(account, "B-OTHER")
    assert refusal(lambda: asyncio.run(handlers.give_bank_account(wired, other, return_id))) == (
        403,
        "not_your_return",
    )
    agent = signed(account, "AGENT-7", role="support")
    assert refusal(lambda: asyncio.run(handlers.give_bank_account(wired, agent, return_id))) == (
        403,
        "buyers_only",
    )
    assert wired.publish.names()[-1] != "BuyerDetailsProvided"
    fresh = signed(account, signed_in_at=NOW - 299_000)
    assert asyncio.run(handlers.give_bank_account(wired, fresh, return_id)).status == 202
    name, given = wired.publish.records[-1][:2]
    assert name == "BuyerDetailsProvided"
    assert (given["given_by"], given["signed_in_at"]) == ("B-1", (NOW - 299_000) // 1000 * 1000)
    assert len(given["token_id"]) == 32


def test_a_buyer_over_their_quota_gets_429_with_retry_after():
    wired = ports()
    wired.quotas = {"buyer": CallerQuotas(QuotaTerms(per_minute=6, burst=2))}
    return_id = create(wired).body["return_id"]  # the first request of the burst
    cancel = signed({})
    assert asyncio.run(handlers.cancel_return(wired, cancel, return_id)).status == 202
    status, code, headers = refused_with_headers(
        lambda: asyncio.run(handlers.cancel_return(wired, cancel, return_id))
    )
    assert (status, code, headers) == (429, "too_many_requests", {"Retry-After": "10"})
    other = create(wired, key="key-9", as_buyer="B-9", buyer_id="B-9", order_ref="ORD-9")
    assert other.status == 202  # another buyer's quota is their own
