"""The after-sales figures: what each saga step adds (through real saga transitions), and
the KPIs read back from metric samples (quantiles as Prometheus estimates them)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from services.decisions.after_sales.kpi_readings import (
    MetricSample,
    cumulative_buckets,
    kpi_figures,
    quantile,
)
from services.decisions.after_sales.saga_figures import (
    MONEY_TIME_BUCKETS_S,
    SagaFigures,
    saga_figures,
)
from services.decisions.saga import decide
from services.decisions.saga.state import SagaState, Status
from tests.support.return_events import event
from tests.unit.test_saga import HAPPY_PATH

RID = "RMA-FIGURES-1"
HAPPY = [name for name, *_ in HAPPY_PATH]  # request to refund, one event per step


def walk(steps: list[str | tuple[str, dict]]) -> list[SagaFigures]:
    """The figures of each step of a saga driven through `steps`."""
    clock = itertools.count(1_790_000_000_000, 1000)
    state: SagaState | None = None
    figures = []
    for step in steps:
        name, fields = (step, {}) if isinstance(step, str) else step
        transition = decide(state, name, event(name, RID, **fields), next(clock))
        if not transition.duplicate:
            figures.append(saga_figures(state, transition.state))
        state = transition.state
    return figures


def test_a_paid_return_adds_a_start_a_first_attempt_pickup_its_money_times_and_its_end():
    figures = walk(HAPPY)
    assert [f.started for f in figures] == [True] + [False] * 6
    assert [f.pickup for f in figures if f.pickup] == ["first_attempt"]
    (paid,) = [f for f in figures if f.finished]
    assert paid.finished == Status.COMPLETED
    assert paid.refund_method == "CARD"
    assert paid.request_to_money_s is not None and paid.request_to_money_s >= 0
    # the saga's clocks: the request's envelope (6 events before the refund's, 1 s apart)
    assert paid.request_to_money_s == 6.0
    assert paid.pickup_to_money_s is not None
    assert (paid.market, paid.category) == ("DE", "apparel")
    assert not any(f.compensation_started for f in figures)


def test_a_pickup_collected_after_a_failed_attempt_is_not_a_first_attempt_success():
    figures = walk([*HAPPY[:3], "PickupAttemptFailed", *HAPPY[3:]])
    assert [f.pickup for f in figures if f.pickup] == ["after_failed_attempt"]


def test_a_pickup_that_ran_out_of_attempts_is_not_collected_once():
    figures = walk([*HAPPY[:3], *["PickupAttemptFailed"] * 3, "PickupCancelled"])
    assert [f.pickup for f in figures if f.pickup] == ["not_collected"]


def test_a_failed_refund_starts_a_compensation_and_ends_compensated_without_money():
    figures = walk([*HAPPY[:6], "RefundFailed", "IntakeReversed", "PickupCancelled"])
    assert sum(f.compensation_started for f in figures) == 1
    (ended,) = [f for f in figures if f.finished]
    assert ended.finished == Status.COMPENSATED
    assert ended.request_to_money_s is None


def test_a_rejected_return_starts_and_ends_and_moves_no_money():
    figures = walk(["ReturnRequested", "ReturnRejected"])
    assert figures[0].started and figures[1].finished == Status.REJECTED
    assert figures[1].request_to_money_s is None


def test_an_exchange_completes_without_a_money_time():
    exchange = {"resolution": "EXCHANGE", "exchange_sku": "SKU-RED-L"}
    steps = [("ReturnRequested", exchange), *HAPPY[1:6], "ReplacementOrderPlaced"]
    figures = walk(steps)
    (ended,) = [f for f in figures if f.finished]
    assert ended.finished == Status.COMPLETED and ended.request_to_money_s is None


def test_a_duplicate_event_adds_nothing():
    figures = walk([*HAPPY, "RefundIssued", "PickupCompleted"])
    assert sum(f.started for f in figures) == 1
    assert sum(bool(f.finished) for f in figures) == 1
    assert sum(bool(f.pickup) for f in figures) == 1


# ------------------------------------------------------------------------------ KPI readings


def histogram(name: str, observations: list[float], bounds=MONEY_TIME_BUCKETS_S, **labels):
    samples = [
        MetricSample(f"{name}_bucket", {**labels, "le": str(b)}, sum(o <= b for o in observations))
        for b in (*bounds, math.inf)
    ]
    samples.append(MetricSample(f"{name}_count", labels, len(observations)))
    return samples


@given(
    st.lists(st.floats(0, 40 * 86400, allow_nan=False), min_size=1, max_size=200),
    st.floats(0.01, 1.0),
)
def test_a_quantile_lies_in_the_bucket_holding_the_true_one(observations, q):
    buckets = cumulative_buckets(histogram("h", observations), "h")
    found = quantile(q, buckets)
    ordered = sorted(observations)
    true = ordered[max(0, math.ceil(q * len(ordered)) - 1)]
    assert found.value is not None
    assert found.lower <= found.value <= found.upper
    assert found.lower <= true <= found.upper or (math.isinf(found.upper) and true > found.lower)


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=100))
def test_quantiles_never_decrease_with_the_rank(observations):
    buckets = cumulative_buckets(histogram("h", observations), "h")
    values = [quantile(q, buckets).value for q in (0.1, 0.5, 0.9, 0.95, 0.99)]
    assert values == sorted(values)


def test_an_empty_histogram_has_no_quantile():
    assert quantile(0.5, cumulative_buckets(histogram("h", []), "h")).value is None


def test_kpis_sum_the_processes_and_take_the_oldest_age_at_its_largest():
    samples = [
        MetricSample("boomerang_returns_started_total", {"market": "DE", "category": "a"}, 3),
        MetricSample("boomerang_returns_started_total", {"market": "FR", "category": "a"}, 1),
        MetricSample("boomerang_orders_delivered_total", {"market": "DE"}, 6),
        MetricSample("boomerang_orders_delivered_total", {"market": "FR"}, 2),
        MetricSample("boomerang_pickups_resolved_total", {"outcome": "first_attempt"}, 3),
        MetricSample("boomerang_pickups_resolved_total", {"outcome": "after_failed_attempt"}, 1),
        MetricSample("boomerang_inspection_backlog_returns", {}, 2),
        MetricSample("boomerang_inspection_backlog_returns", {}, 1),
        MetricSample("boomerang_inspection_backlog_oldest_age_seconds", {}, 40),
        MetricSample("boomerang_inspection_backlog_oldest_age_seconds", {}, 90),
        MetricSample(
            "boomerang_refund_attempts_total",
            {"method": "CARD", "provider": "psp", "outcome": "issued"},
            9,
        ),
        MetricSample(
            "boomerang_refund_attempts_total",
            {"method": "CARD", "provider": "psp", "outcome": "declined"},
            1,
        ),
        *histogram("boomerang_refund_request_to_money_seconds", [1.2, 1.4, 2.0, 7.0]),
    ]
    figures = kpi_figures(samples)
    assert figures["returns_started"] == 4 and figures["orders_delivered"] == 8
    assert figures["return_rate"] == 0.5
    assert figures["return_rate_by_market"] == {"DE": 0.5, "FR": 0.5}
    assert figures["first_attempt_pickup_success"] == 0.75
    assert figures["inspection_backlog"] == 3 and figures["inspection_oldest_age_s"] == 90
    assert figures["refund_attempts"]["CARD/psp"] == {
        "attempts": 10,
        "failed": 1,
        "failure_rate": 0.1,
    }
    timing = figures["refund_request_to_money"]
    assert timing["count"] == 4
    assert timing["p50_bucket_s"] == [1.0, 2.0]
    assert timing["p95_bucket_s"] == [5.0, 7.5]
