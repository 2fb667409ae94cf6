"""Services write JSON lines that carry the event's ids; people get a console format."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging
from services.eventing.log_setup import configure_logging, event_context, get_logger
configure_logging("refund", json_lines={json_lines})
with event_context({{"return_id": "RMA-9", "event_id": "e-1", "correlation_id": "c-1",
                    "event_type": "RefundRequested"}}):
    get_logger("x").info("refund requested", amount_minor=1500)
    logging.getLogger("aiokafka").warning("library line")
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
    ours, library, outside = lines
    for line in (ours, library):
        assert line["return_id"] == "RMA-9"
        assert line["event_id"] == "e-1"
        assert line["correlation_id"] == "c-1"
        assert line["service"] == "refund"
    assert ours["amount_minor"] == 1500 and ours["level"] == "info"
    assert library["event"] == "library line"
    assert "return_id" not in outside


def test_console_format_for_people():
    first = _run(json_lines=False)[0]
    assert "refund requested" in first and "return_id=RMA-9" in first
    assert not first.startswith("{")
