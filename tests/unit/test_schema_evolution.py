"""`make schemas-check`: passes on the committed schemas, fails on incompatible changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from services.eventing.schema_catalogue import SCHEMAS_DIR
from services.eventing.schema_evolution import check, publish
from tests.support.cli_process import run_python_module


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, copy)
    return copy


def _edit(path: Path, change) -> None:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def _run_check(schemas_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_python_module(
        "services.eventing.schema_evolution", "check", "--schemas-dir", str(schemas_dir)
    )


def test_committed_schemas_pass_and_are_all_published():
    findings = check()
    assert findings and all(f.ok for f in findings), [f for f in findings if not f.ok]
    assert all(f.message.startswith("unchanged") for f in findings)


def test_the_gate_command_passes_on_the_committed_schemas():
    result = _run_check(SCHEMAS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problem(s)" in result.stdout


def test_new_required_field_without_default_fails_backward(schemas: Path):
    _edit(
        schemas / "refund" / "RefundIssued.avsc",
        lambda s: s["fields"].append({"name": "settled_at", "type": "long"}),
    )
    result = _run_check(schemas)
    assert result.returncode == 1
    assert "RefundIssued: not backward compatible" in result.stdout
    assert "No default value for field settled_at" in result.stdout


def test_changing_a_field_type_fails_both_ways(schemas: Path):
    def to_int(s):
        for f in s["fields"]:
            if f["name"] == "order_ref":
                f["type"] = "int"

    _edit(schemas / "returns" / "ReturnRequested.avsc", to_int)
    result = _run_check(schemas)
    assert result.returncode == 1
    assert "ReturnRequested: not backward compatible" in result.stdout
    assert "ReturnRequested: not forward compatible" in result.stdout


def test_removing_a_field_without_default_fails_forward(schemas: Path):
    _edit(
        schemas / "pickup" / "PickupScheduled.avsc",
        lambda s: s.update(fields=[f for f in s["fields"] if f["name"] != "carrier"]),
    )
    result = _run_check(schemas)
    assert result.returncode == 1
    assert "PickupScheduled: not forward compatible" in result.stdout


def test_enum_symbol_removed_from_an_enum_without_default_fails(schemas: Path):
    def drop_default_and_symbol(s):
        s.pop("default")
        s["symbols"].remove("PENDING")
        s["symbols"].remove("UNKNOWN")

    _edit(schemas / "refund" / "RefundStatus.avsc", drop_default_and_symbol)
    result = _run_check(schemas)
    assert result.returncode == 1
    assert "RefundIssued: not backward compatible" in result.stdout


def test_adding_an_optional_field_passes_and_publishes_as_v2(schemas: Path):
    _edit(
        schemas / "refund" / "RefundVoided.avsc",
        lambda s: s["fields"].append(
            {"name": "voided_at", "type": ["null", "long"], "default": None}
        ),
    )
    result = _run_check(schemas)
    assert result.returncode == 0, result.stdout
    assert "RefundVoided: changed compatibly since v1" in result.stdout
    written = publish(schemas)
    assert [p.relative_to(schemas).as_posix() for p in written] == [
        "history/io.boomerang.refund.RefundVoided/v2.avsc"
    ]
    assert all(f.ok and f.message.startswith("unchanged") for f in check(schemas))


def test_an_unpublished_new_message_fails_until_published(schemas: Path):
    (schemas / "support" / "TicketClosed.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "TicketClosed",
                "namespace": "io.boomerang.support",
                "fields": [
                    {"name": "envelope", "type": "io.boomerang.common.Envelope"},
                    {"name": "ticket_id", "type": "string"},
                ],
            }
        )
    )
    assert _run_check(schemas).returncode == 1
    publish(schemas)
    assert _run_check(schemas).returncode == 0
