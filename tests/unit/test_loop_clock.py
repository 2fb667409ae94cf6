"""The consume loop's clock: time waiting for events vs handling them."""

from services.eventing.service_runtime import LoopClock


def test_the_clock_splits_time_between_waiting_and_handling_and_reports_every_10_s():
    clock = LoopClock(mark=0.0)
    started = clock.event_arrived(3.0)  # waited 3 s for the first event
    assert not clock.event_done(started, 4.0)  # handled it in 1 s
    started = clock.event_arrived(10.0)  # waited 6 s
    assert clock.event_done(started, 13.0)  # 3 s; 10 s since the first event: report
    report = clock.report(unacknowledged=2)
    assert report == {
        "events": 2,
        "events_per_s": round(2 / 13, 1),
        "handling_share": round(4 / 13, 3),
        "handling_ms_per_event": 2000.0,
        "unacknowledged": 2,
    }
    started = clock.event_arrived(13.5)
    assert not clock.event_done(started, 14.0)  # a new window starts at the report
    assert clock.report(0)["events"] == 1
