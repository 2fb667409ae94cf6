"""Reading a caller from the marketplace's token (pure: the keys are given), and each
caller's quota."""

from __future__ import annotations

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.decisions.caller_quota import CallerQuotas, QuotaTerms
from services.eventing.marketplace_keys import signing_keys
from services.eventing.marketplace_tokens import (
    TokenRefused,
    TokenTerms,
    UnknownSigningKey,
    bearer_token,
    caller_of,
)
from services.tools.partners.buyer_token_issuer import BuyerTokenIssuer, signing_key
from tests.support.buyer_signin import issuer

NOW_S = 1_790_000_000
TERMS = TokenTerms()


def keys() -> dict:
    return signing_keys(issuer().jwks())


def refused(token: str, at: int = NOW_S) -> str:
    with pytest.raises(TokenRefused) as refusal:
        caller_of(token, keys(), TERMS, at)
    return refusal.value.reason


def test_a_buyers_token_names_the_buyer_and_when_they_signed_in():
    token = issuer().issue("B-1", signed_in_at_s=NOW_S - 60, now_s=NOW_S)
    caller = caller_of(token, keys(), TERMS, NOW_S)
    assert (caller.subject, caller.role, caller.signed_in_at_s) == ("B-1", "buyer", NOW_S - 60)
    assert caller.signed_in_within(300, NOW_S) and not caller.signed_in_within(59, NOW_S)
    agent = caller_of(issuer().issue("AGENT-1", "support", now_s=NOW_S), keys(), TERMS, NOW_S)
    assert (agent.role, agent.is_buyer) == ("support", False)


def test_expiry_is_judged_by_the_clock_given_with_a_leeway():
    token = issuer().issue("B-1", ttl_s=3600, now_s=NOW_S)
    assert caller_of(token, keys(), TERMS, NOW_S + 3600 + 29).subject == "B-1"
    assert refused(token, NOW_S + 3600 + 30) == "token_expired"


def test_another_issuer_audience_key_or_algorithm_is_refused():
    other = BuyerTokenIssuer(signing_key(None))  # not the marketplace's key
    forged = jwt.encode(
        {"sub": "B-1"}, other.key, algorithm="RS256", headers={"kid": issuer().key_id}
    )
    assert refused(forged) == "invalid_token"
    with pytest.raises(UnknownSigningKey):
        caller_of(other.issue("B-1", now_s=NOW_S), keys(), TERMS, NOW_S)
    elsewhere = BuyerTokenIssuer(issuer().key, issuer="https://evil.example")
    assert refused(elsewhere.issue("B-1", now_s=NOW_S)) == "invalid_token"
    for_others = BuyerTokenIssuer(issuer().key, audience="someone-else")
    assert refused(for_others.issue("B-1", now_s=NOW_S)) == "invalid_token"
    symmetric = jwt.encode(
        {"sub": "B-1"},
        "secret-of-32-bytes-at-least-0000",
        algorithm="HS256",
        headers={"kid": issuer().key_id},
    )
    assert refused(symmetric) == "invalid_token"
    unsigned = jwt.encode({"sub": "B-1"}, None, algorithm="none")
    assert refused(unsigned) == "invalid_token"


def test_a_sign_in_in_the_future_or_a_bad_role_is_refused():
    later = issuer().issue("B-1", signed_in_at_s=NOW_S + 600, now_s=NOW_S)
    assert refused(later) == "invalid_token"
    admin = issuer().issue("B-1", role="admin", now_s=NOW_S)
    assert refused(admin) == "invalid_token"


@settings(max_examples=200, deadline=None)
@given(header=st.one_of(st.none(), st.text(max_size=300)))
def test_any_authorization_header_is_a_caller_or_a_401_reason(header):
    try:
        token = bearer_token(header)
        caller_of(token, keys(), TERMS, NOW_S)
    except TokenRefused as refusal:
        assert refusal.reason in {"missing_token", "invalid_token", "token_expired"}


@settings(max_examples=200, deadline=None)
@given(
    per_minute=st.floats(1, 600),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=200),
)
def test_a_quota_lets_in_at_most_its_burst_plus_its_rate(per_minute, burst, gaps):
    quotas = CallerQuotas(QuotaTerms(per_minute=per_minute, burst=burst))
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        over = quotas.take("B-1", now)
        if over is None:
            taken += 1
        else:
            assert over.retry_after_s >= 1
            assert quotas.take("B-1", now + over.retry_after_s) is None  # as promised
            now += over.retry_after_s
            taken += 1
    assert taken <= burst + now * per_minute / 60 + 1e-6


def test_quotas_are_per_caller_and_bounded():
    quotas = CallerQuotas(QuotaTerms(per_minute=60, burst=1, callers_kept=3))
    assert quotas.take("B-1", 0) is None
    assert quotas.take("B-1", 0) is not None
    assert quotas.take("B-2", 0) is None
    for n in range(10):
        quotas.take(f"B-x{n}", 0)
    assert len(quotas) == 3
    assert quotas.take("B-1", 0) is None  # forgotten: a full bucket again
