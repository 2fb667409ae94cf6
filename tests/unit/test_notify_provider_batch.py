"""The notifier's reading of the provider's batch answer (pure): every send gets one
outcome, in order, from its own entry; a batch refused whole fails every send the same way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.decisions.notifications.message_texts import Message
from services.decisions.notifications.milestones import Notice
from services.notifications.handlers import Send
from services.notifications.provider import Delivered, Undelivered, outcomes_of


def send_numbered(n: int) -> Send:
    notice = Notice(f"event-{n}:buyer", "accepted", "buyer", {}, 0)
    return Send("R-1", notice, 1, "B-1", Message("en", "s", "b"))


entry_status = st.sampled_from([200, 201, 409, 422, 429, 500, 503])


@given(st.lists(entry_status, min_size=1, max_size=30), st.randoms())
def test_each_send_gets_its_own_entrys_outcome_whatever_the_order(statuses, rnd) -> None:
    sends = [send_numbered(n) for n in range(len(statuses))]
    results = [
        {"idempotency_key": send.notice.key, "status": status, "message_id": f"M-{i}"}
        if status < 300
        else {"idempotency_key": send.notice.key, "status": status, "error": "x", "detail": "y"}
        for i, (send, status) in enumerate(zip(sends, statuses, strict=True))
    ]
    shuffled = list(results)
    rnd.shuffle(shuffled)
    outcomes = outcomes_of(sends, 200, {"results": shuffled}, "")
    assert len(outcomes) == len(sends)
    for i, (status, outcome) in enumerate(zip(statuses, outcomes, strict=True)):
        if status < 300:
            assert outcome == Delivered(f"M-{i}")
        else:
            assert isinstance(outcome, Undelivered)
            assert outcome.retryable == (status >= 500 or status == 429)


@given(st.integers(min_value=300, max_value=599).filter(lambda s: s != 200), st.integers(1, 20))
def test_a_batch_refused_whole_fails_every_send_alike(status, n) -> None:
    sends = [send_numbered(i) for i in range(n)]
    outcomes = outcomes_of(sends, status, None, "down")
    assert len(outcomes) == n
    assert all(
        o == Undelivered(f"HTTP {status}: down", status >= 500 or status == 429) for o in outcomes
    )


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(),
        st.dictionaries(st.text(), st.integers()),
        st.fixed_dictionaries({"results": st.lists(st.integers(), max_size=3)}),
        st.fixed_dictionaries(
            {"results": st.lists(st.dictionaries(st.text(), st.text()), min_size=2, max_size=2)}
        ),
    )
)
def test_an_unreadable_answer_is_retried_never_counted_as_sent(answer) -> None:
    sends = [send_numbered(0), send_numbered(1)]
    outcomes = outcomes_of(sends, 200, answer, "")
    assert len(outcomes) == 2
    assert all(isinstance(o, Undelivered) and o.retryable for o in outcomes)
