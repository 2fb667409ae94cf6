"""Services write JSON lines that carry the event's ids; people get a console format."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from services.eventing.log_setup import FRAMEWORK_LOGGERS, RepeatedMessageFilter

SCRIPT = """
import logging
from services.eventing.log_setup import configure_logging, event_context, get_logger
configure_logging("refund", json_lines={json_lines})
with event_context({{"return_id": "RMA-9", "event_id": "e-1", "correlation_id": "c-1",
                    "event_type": "RefundRequested"}}):
    get_logger("x").info("refund requested", amount_minor=1500)
    logging.getLogger("aiokafka").warning("library line")
    get_logger("x").debug("below the level")
    with event_context(topic="boomerang.refund.commands"):
        get_logger("x").info("inner", event_id="said-by-the-line")
    get_logger("x").info("after inner")
get_logger("x").info("outside")
"""


def _run(json_lines: bool) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(json_lines=json_lines)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stderr.strip().splitlines()


def test_json_lines_carry_return_and_event_ids_also_for_library_loggers():
    lines = [json.loads(line) for line in _run(json_lines=True)]
    ours, library, inner, after_inner, outside = lines
    for line in (ours, library):
        assert line["return_id"] == "RMA-9"
        assert line["event_id"] == "e-1"
        assert line["correlation_id"] == "c-1"
        assert line["service"] == "refund"
    assert ours["amount_minor"] == 1500 and ours["level"] == "info"
    assert library["event"] == "library line"
    assert "return_id" not in outside
    # an inner context adds its fields and gives the outer ones back; a line's own field wins
    assert (inner["return_id"], inner["topic"], inner["event_id"]) == (
        "RMA-9",
        "boomerang.refund.commands",
        "said-by-the-line",
    )
    assert (after_inner["event_id"], "topic" in after_inner) == ("e-1", False)


def test_console_format_for_people():
    first = _run(json_lines=False)[0]
    assert not any("below the level" in line for line in _run(json_lines=False))
    assert "refund requested" in first and "return_id=RMA-9" in first
    assert not first.startswith("{")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(name: str, message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_a_framework_line_repeated_within_the_window_passes_once_then_reports_the_count():
    clock = _Clock()
    repeats = RepeatedMessageFilter(FRAMEWORK_LOGGERS, window_s=5.0, clock=clock)
    passed = [
        repeats.filter(_record("aiokafka.cluster", "Unable to update metadata")) for _ in range(500)
    ]
    assert passed.count(True) == 1
    clock.now += 5.0
    after_window = _record("aiokafka.cluster", "Unable to update metadata")
    assert repeats.filter(after_window)
    assert after_window.repeated == 499


def test_different_framework_lines_and_levels_are_counted_apart():
    repeats = RepeatedMessageFilter(FRAMEWORK_LOGGERS, clock=_Clock())
    assert repeats.filter(_record("aiokafka", "node 1 down"))
    assert repeats.filter(_record("aiokafka", "node 2 down"))
    assert repeats.filter(_record("aiokafka", "node 1 down", logging.WARNING))
    assert repeats.filter(_record("aiokafka.conn", "node 1 down"))


def test_boomerang_lines_are_never_held_back():
    repeats = RepeatedMessageFilter(FRAMEWORK_LOGGERS, clock=_Clock())
    assert all(repeats.filter(_record("services.refund.app", "dead-lettered")) for _ in range(50))


LEVEL_SCRIPT = """
import structlog
from services.eventing.log_setup import configure_logging, get_logger
configure_logging("coordinator", json_lines=True, level="{level}")
seen = []
def spy(_logger, name, event_dict):
    seen.append(name)
    return event_dict
structlog.configure(processors=[spy, *structlog.get_config()["processors"]])
log = get_logger("y")
log.debug("a debug line")
log.info("an info line")
log.warning("a warning")
print(",".join(seen))
"""


def test_a_line_below_the_level_runs_no_processor_and_one_at_it_runs_them_all():
    def processed(level: str) -> str:
        script = LEVEL_SCRIPT.format(level=level)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert processed("WARNING") == "warning"
    assert processed("INFO") == "info,warning"
    assert processed("DEBUG") == "debug,info,warning"
