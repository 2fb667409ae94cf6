"""The benchmark's arithmetic (tests/bench/bench_figures.py, service_profiles.hot_spots)."""

from tests.bench.bench_figures import (
    final_line,
    latency_summary,
    percentile,
    records_delta,
    saturation_level,
    sustained,
    typical_path,
)
from tests.bench.service_profiles import hot_spots


def level(offered: float, completed: float, ok: bool, p99: float | None = 100.0) -> dict:
    return {
        "offered_per_s": offered,
        "completed_per_s": completed,
        "sustained": ok,
        "scan_to_refund_ms": {"p99": p99},
        "records_per_return": 40.0,
        "cpu_ms_per_return": 100.0,
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
    levels = [level(100, 99, True), level(200, 198, True, p99=420.0), level(400, 250, False)]
    line = final_line(levels, raw_returns_per_s=396.0)
    assert line == {
        "max_returns_per_s": 198.0,
        "p99_scan_to_refund_ms_at_200": 420.0,
        "records_per_return": 40.0,
        "ratio_vs_raw": 0.5,
        "cpu_ms_per_return": 100.0,
        "peak_rss_mb_max_service": 90.0,  # the broker is not a service
    }
    unsustained = final_line([level(200, 50, False)], None)
    assert unsustained["p99_scan_to_refund_ms_at_200"] is None
    assert unsustained["max_returns_per_s"] == 0.0
    assert unsustained["ratio_vs_raw"] is None


def test_the_typical_path_is_the_most_common_sequence_of_records():
    short = [{"name": "A"}, {"name": "B"}]
    long = [{"name": "A"}, {"name": "X"}, {"name": "B"}]
    assert typical_path([long, short, list(short)]) == short
    assert typical_path([long, short]) == short  # a tie: the shorter
    assert typical_path([]) == []


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
