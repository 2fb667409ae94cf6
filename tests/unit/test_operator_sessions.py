"""Operators' sessions: a signed cookie names its operator until it expires; a forged,
expired or revoked one names nobody; a Bearer token works for scripts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ops.metric_scrape import parsed_samples
from services.ops.operator_sessions import OperatorSessions

SESSIONS = OperatorSessions(
    {"operator-1": "operator-token-0001", "ana": "operator-token-0002"}, b"secret", 3_600_000
)
NOW = 1_790_000_000_000


def test_a_cookie_names_its_operator_until_it_expires():
    cookie = SESSIONS.cookie_for("ana", NOW)
    assert SESSIONS.operator_of_cookie(cookie, NOW + 3_599_999) == "ana"
    assert SESSIONS.operator_of_cookie(cookie, NOW + 3_600_000) is None


def test_a_cookie_of_another_secret_or_a_revoked_operator_names_nobody():
    other = OperatorSessions(SESSIONS.tokens, b"another secret", 3_600_000)
    assert SESSIONS.operator_of_cookie(other.cookie_for("ana", NOW), NOW) is None
    revoked = OperatorSessions({"operator-1": "operator-token-0001"}, b"secret", 3_600_000)
    assert revoked.operator_of_cookie(SESSIONS.cookie_for("ana", NOW), NOW) is None


def test_a_changed_name_or_expiry_breaks_the_signature():
    name, expires, signature = SESSIONS.cookie_for("ana", NOW).split(".")
    forged_expiry = f"{name}.{int(expires) + 10**9}.{signature}"
    forged_name = f"{SESSIONS.cookie_for('operator-1', NOW).split('.')[0]}.{expires}.{signature}"
    assert SESSIONS.operator_of_cookie(forged_expiry, NOW) is None
    assert SESSIONS.operator_of_cookie(forged_name, NOW) is None


@given(st.text(max_size=200))
def test_any_other_cookie_names_nobody(cookie):
    assert SESSIONS.operator_of_cookie(cookie, NOW) is None


def test_a_bearer_token_names_its_holder_and_wins_over_the_cookie():
    cookie = SESSIONS.cookie_for("ana", NOW)
    assert SESSIONS.operator_of(cookie, "Bearer operator-token-0001", NOW) == "operator-1"
    assert SESSIONS.operator_of(cookie, "Bearer wrong-token-0000000", NOW) is None
    assert SESSIONS.operator_of(cookie, None, NOW) == "ana"
    assert SESSIONS.operator_of(None, None, NOW) is None


def test_scraped_samples_name_their_service_and_instance():
    text = (
        "# TYPE boomerang_returns_started counter\n"
        'boomerang_returns_started_total{market="DE",category="shoes"} 3.0\n'
        "# TYPE boomerang_sagas gauge\n"
        'boomerang_sagas{status="COMPLETED",job="coordinator"} 2.0\n'
    )
    own, federated = parsed_samples(text, "coordinator#2")
    assert own.name == "boomerang_returns_started_total" and own.value == 3.0
    assert own.labels["service"] == "coordinator" and own.labels["instance"] == "coordinator#2"
    assert federated.labels["service"] == "coordinator"
