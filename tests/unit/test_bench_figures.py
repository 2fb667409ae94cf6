"""The benchmark's arithmetic (tests/bench/bench_figures.py, service_profiles.hot_spots)."""

import pytest

from tests.bench.bench_figures import (
    TARGET_RECORD_BUDGET,
    admission_rate,
    budget_totals,
    collapse_ratio,
    cpu_ms_per_return,
    final_line,
    kb_per_return,
    latency_summary,
    overload_rate,
    percentile,
    pipe_plan,
    record_budget,
    record_bytes,
    records_delta,
    saturation_level,
    scaled_bytes,
    sustained,
)
from tests.bench.service_profiles import hot_spots


def level(offered: float, completed: float, ok: bool, p99: float | None = 100.0) -> dict:
    return {
        "offered_per_s": offered,
        "completed_per_s": completed,
        "sustained": ok,
        "scan_to_refund_ms": {"p99": p99},
        "records_per_return": 40.0,
        "kb_per_return": 80.0,
        "cpu_ms_per_return": 100.0,
        "partner_doubles_cpu_ms_per_return": 5.0,
        "generator_cpu_ms_per_return": 1.5,
        "peak_rss_mb": {"coordinator": 90.0, "refund": 80.0, "broker": 600.0},
    }


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_a_latency_summary_has_the_four_figures_and_the_count():
    summary = latency_summary([10.0, 30.0, 20.0])
    assert summary == {"p50": 20.0, "p95": 30.0, "p99": 30.0, "max": 30.0, "count": 3}
    assert latency_summary([])["p99"] is None


def test_a_level_is_sustained_only_when_it_keeps_up_and_leaves_no_backlog():
    assert sustained(10, 9.5, created=300, unfinished=0)
    assert not sustained(10, 8.0, created=300, unfinished=0)  # completes less than offered
    assert not sustained(10, 10.0, created=300, unfinished=4)  # a backlog is left
    assert not sustained(10, 10.0, created=0, unfinished=0)


def test_records_written_are_the_growth_of_each_topic():
    before = {"a": 10, "b": 5}
    after = {"a": 15, "b": 5, "c": 3}
    assert records_delta(before, after) == {"a": 5, "c": 3}


def test_the_saturation_point_is_the_first_level_not_sustained():
    levels = [level(10, 10, True), level(25, 12, False), level(50, 11, False)]
    assert saturation_level(levels) == 25
    assert saturation_level(levels[:1]) is None


def test_the_final_line_takes_the_best_sustained_level_and_p99_at_200_only_if_sustained():
    levels = [
        level(100, 99, True, p99=300.0),
        level(200, 198, True, p99=420.0),
        level(400, 250, False, p99=9000.0),
    ]
    line = final_line(levels, raw_returns_per_s=396.0)
    assert line == {
        "max_returns_per_s": 198.0,
        "p99_scan_to_refund_ms_at_200": 420.0,
        "p99_scan_to_refund_ms_at_100": 300.0,
        "records_per_return": 40.0,
        "kb_per_return": 80.0,
        "ratio_vs_raw": 0.5,
        "collapse_ratio": round(250 / 198, 3),  # 400/s is twice the max sustained 200/s
        "cpu_ms_per_return": 100.0,
        "partner_doubles_cpu_ms_per_return": 5.0,
        "generator_cpu_ms_per_return": 1.5,
        "peak_rss_mb_max_service": 90.0,  # the broker is not a service
    }
    unsustained = final_line([level(200, 50, False)], None)
    assert unsustained["p99_scan_to_refund_ms_at_200"] is None
    assert unsustained["max_returns_per_s"] == 0.0
    assert unsustained["ratio_vs_raw"] is None
    assert unsustained["collapse_ratio"] is None
    assert unsustained["kb_per_return"] is None


def test_p99_at_100_is_reported_whenever_the_level_ran_and_null_when_it_did_not():
    assert final_line([level(100, 40, False, p99=8000.0)], None)[
        "p99_scan_to_refund_ms_at_100"
    ] == (8000.0)
    assert final_line([level(50, 50, True)], None)["p99_scan_to_refund_ms_at_100"] is None


def test_the_overload_level_offers_twice_the_max_sustained_load():
    levels = [level(50, 50, True), level(100, 99, True), level(150, 120, False)]
    assert overload_rate(levels) == 200
    assert overload_rate([level(25, 10, False)]) is None


def test_the_admission_level_offers_four_times_the_max_sustained_load_not_an_overload_level():
    overloaded = {**level(200, 199, True), "overload": True}
    levels = [level(50, 50, True), level(100, 99, True), overloaded]
    assert admission_rate(levels) == 400
    assert admission_rate([level(25, 10, False)]) is None


def test_the_collapse_ratio_is_completed_at_twice_the_max_sustained_over_the_max():
    held = [level(100, 100, True), level(150, 96, False), level(200, 92, False)]
    assert collapse_ratio(held) == 0.92
    collapsed = [level(10, 10, True), level(20, 5.6, False)]
    assert collapse_ratio(collapsed) == 0.56
    # twice the max sustained level's offer, not twice the last level's
    swept = [
        level(50, 50, True),
        level(100, 99, True),
        level(150, 95, False),
        level(200, 97, False),
    ]
    assert collapse_ratio(swept) == 0.98
    assert collapse_ratio([level(100, 99, True)]) is None  # the overload level did not run
    assert collapse_ratio([level(25, 10, False), level(50, 9, False)]) is None


def test_cpu_per_return_counts_only_the_named_processes():
    cpu_s = {"coordinator": 1.0, "refund": 0.5, "broker": 1.5, "carrier": 0.4}
    assert cpu_ms_per_return(cpu_s, {"coordinator", "refund", "broker"}, 300) == 10.0
    assert cpu_ms_per_return(cpu_s, {"carrier", "psp"}, 200) == 2.0
    assert cpu_ms_per_return(cpu_s, {"broker"}, 0) is None


def test_a_records_size_is_its_key_value_and_headers_as_written():
    headers = [("event_type", b"RefundIssued"), ("event_id", b"e-1")]
    assert record_bytes(b"RMA-1", b"x" * 100, headers) == 5 + 100 + (10 + 12) + (8 + 3)
    assert record_bytes(None, b"abc", []) == 3
    assert record_bytes(b"k", None, [("h", None)]) == 2  # a tombstone, a header without value


def test_a_sampled_partition_is_scaled_by_the_offsets_it_spans():
    assert scaled_bytes(5000, 10, 10) == 5000  # read whole: exact
    assert scaled_bytes(1000, 1000, 4000) == 4000  # a quarter read
    assert scaled_bytes(0, 0, 100) == 0


def test_kb_per_return_counts_every_topic_the_loop_writes_but_kafkas_internal_ones():
    written = {
        "boomerang.returns.events": 600_000,
        "boomerang-coordinator-sagas-changelog": 900_000,
        "__consumer_offsets": 5_000_000,  # offset commits: not the loop's records
        "__transaction_state": 1_000_000,
        "boomerang.bench.raw.1.hop0": 7_000_000,  # the raw pipe's
    }
    assert kb_per_return(written, 100) == 15.0  # 1.5 MB / 100 returns, KB of 1,000 bytes
    assert kb_per_return(written, 0) is None
    assert kb_per_return({}, 10) == 0.0


def test_the_record_budget_is_the_records_per_return_by_topic_sharing_its_bytes():
    completed = 100
    records = {
        "boomerang.zz.audit": 150,  # 1.5 per return, a topic the target table does not list
        "boomerang.pickup.events": 250,  # 2.5
        "boomerang.returns.events": 150,  # 1.5
        "boomerang-coordinator-sagas-changelog": 330,  # 3.3
        "__consumer_offsets": 500,
        "boomerang.refund.events.dlq": 1,  # 0.01: no record of it in a typical return
    }
    written = {
        "boomerang.zz.audit": 150 * 100,
        "boomerang.pickup.events": 250 * 300,
        "boomerang.returns.events": 150 * 400,
        "boomerang-coordinator-sagas-changelog": 330 * 1000,
        "boomerang.refund.events.dlq": 900,
    }
    budget = record_budget(records, written, completed)
    # 8.81 per return round to 9: the floors (1 + 2 + 1 + 3) and the two largest remainders
    # (the halves; ties by name)
    assert [(r["topic"], r["bytes"]) for r in budget] == [
        ("boomerang.returns.events", 300),  # 600 bytes per return over 2 records
        ("boomerang.returns.events", 300),
        ("boomerang.pickup.events", 250),  # 750 bytes per return over 3 records
        ("boomerang.pickup.events", 250),
        ("boomerang.pickup.events", 250),
        ("boomerang.zz.audit", 150),  # not in the loop's order: after the known topics
        ("boomerang-coordinator-sagas-changelog", 1100),  # 3,300 over 3
        ("boomerang-coordinator-sagas-changelog", 1100),
        ("boomerang-coordinator-sagas-changelog", 1100),
    ]
    assert [r["state"] for r in budget] == [False] * 6 + [True] * 3
    # the bytes per return are the level's, but for the dead letter rounded away
    assert budget_totals(budget) == {"records": 9, "state_records": 3, "kb": 4.8}
    assert kb_per_return(written, completed) == 4.81
    assert record_budget(records, written, 0) == []


def test_the_target_budget_is_the_issues_budget():
    totals = budget_totals(TARGET_RECORD_BUDGET)
    assert totals["records"] <= 16
    assert totals["kb"] <= 12.0
    assert totals["state_records"] >= 1


def test_the_pipe_plan_chains_the_events_and_spreads_the_state_over_the_hops():
    budget = [{"topic": f"e{i}", "bytes": 100 + i, "state": False} for i in range(5)] + [
        {"topic": "s.a", "bytes": 900, "state": True},
        {"topic": "s.b", "bytes": 800, "state": True},
        {"topic": "s.a", "bytes": 700, "state": True},
        {"topic": "s.a", "bytes": 600, "state": True},
        {"topic": "s.c", "bytes": 500, "state": True},
    ]
    plan = pipe_plan(budget, processes=3)
    assert plan["events"] == [100, 101, 102, 103, 104]
    assert plan["stages"] == [[1, 4], [2], [3]]  # hop 0 is the injector's
    assert plan["state_at"] == {
        "1": [{"label": "s-a", "bytes": 900}, {"label": "s-c", "bytes": 500}],
        "2": [{"label": "s-b", "bytes": 800}],
        "3": [{"label": "s-a", "bytes": 700}],
        "4": [{"label": "s-a", "bytes": 600}],
    }
    assert plan["state_labels"] == ["s-a", "s-b", "s-c"]
    written = sum(plan["events"]) + sum(r["bytes"] for rs in plan["state_at"].values() for r in rs)
    assert written == sum(r["bytes"] for r in budget)  # the whole budget, once
    assert pipe_plan(budget, processes=10)["stages"] == [[1], [2], [3], [4]]
    with pytest.raises(ValueError):
        pipe_plan(budget[:1], processes=3)


def test_hot_spots_share_samples_by_own_and_inclusive_time():
    collapsed = "\n".join(
        [
            "main (app.py:1);handle (saga.py:9);to_json (saga.py:20) 6",
            "main (app.py:1);handle (saga.py:9) 2",
            "main (app.py:1);send (aiokafka/producer.py:3) 2",
            "not a sample line",
        ]
    )
    spots = hot_spots(collapsed)
    assert spots["samples"] == [("total", 10)]
    assert spots["own"][0] == ("to_json (saga.py)", 60.0)
    assert ("handle (saga.py)", 80.0) in spots["inclusive"]
    assert ("main (app.py)", 100.0) in spots["inclusive"]


def test_boomerangs_own_functions_are_listed_without_the_entry_points():
    collapsed = "\n".join(
        [
            "main (services/coordinator/app.py:1);handle (services/coordinator/app.py:9);"
            "to_json (services/decisions/saga/:20) 6",
            "main (services/coordinator/app.py:1);send (aiokafka/producer.py:3) 4",
        ]
    )
    assert hot_spots(collapsed)["ours"] == [
        ("handle (services/coordinator/app.py)", 60.0),
        ("to_json (services/decisions/saga/)", 60.0),
    ]


def test_hop_delays_take_each_returns_first_record_of_each_step_bucketed_by_acceptance():
    from tests.bench.hop_delays import hop_delays

    seen = [
        ("R1", "ReturnAccepted", 1_000),
        ("R1", "PickupRequested", 1_040),
        ("R1", "PickupRequested", 1_900),  # sent again after a timeout: the first counts
        ("R1", "PickupScheduled", 1_070),
        ("R2", "ReturnAccepted", 12_000),
        ("R2", "PickupCompleted", 12_500),  # a step missing in between: the next one seen
        ("R2", "TicketOpened", 12_600),  # not on the forward path
        ("R3", "PickupScheduled", 5_000),  # its acceptance not read: left out
    ]
    assert hop_delays(seen, 10_000) == {
        0: {"ReturnAccepted → PickupRequested": [40], "PickupRequested → PickupScheduled": [30]},
        10_000: {"ReturnAccepted → PickupCompleted": [500]},
    }
    assert hop_delays([], 10_000) == {}
