"""The rules every schema in schemas/ follows (the event contract)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.eventing.schema_catalogue import (
    SCHEMAS_DIR,
    SchemaCatalogue,
    SchemaCatalogueError,
    load_current,
)

CATALOGUE = SchemaCatalogue.load()
SOURCE_FILES = sorted(p for p in SCHEMAS_DIR.rglob("*.avsc") if "history" not in p.parts)
REQUIRED_MESSAGES = {
    "ReturnRequested",
    "ReturnAccepted",
    "ReturnRejected",
    "ReturnCancelled",
    "PickupRequested",
    "PickupScheduled",
    "PickupAttemptFailed",
    "PickupCompleted",
    "PickupCancelRequested",
    "PickupCancelled",
    "InspectionRecorded",
    "IntakeRequested",
    "IntakeCompleted",
    "IntakeReverseRequested",
    "IntakeReversed",
    "RefundRequested",
    "RefundIssued",
    "RefundFailed",
    "RefundVoidRequested",
    "RefundVoided",
    "SagaStepTimedOut",
    "ReturnCompleted",
    "ReturnFailed",
    "TicketOpened",
}
ENVELOPE_FIELDS = [
    "event_id",
    "event_type",
    "return_id",
    "correlation_id",
    "causation_id",
    "occurred_at",
    "producer",
    "attempt",
]


def _walk(node, visit):
    visit(node)
    if isinstance(node, list):
        for n in node:
            _walk(n, visit)
    elif isinstance(node, dict):
        for key in ("type", "items", "values"):
            if key in node and not isinstance(node[key], str):
                _walk(node[key], visit)
        for f in node.get("fields", []):
            _walk(f, visit)


def test_every_record_of_the_reverse_loop_has_a_schema():
    assert {m.name for m in CATALOGUE.messages()} >= REQUIRED_MESSAGES


def test_one_file_per_record_named_after_it():
    for path in SOURCE_FILES:
        raw = json.loads(path.read_text())
        assert raw["name"] == path.stem, path
        assert raw["namespace"] == f"io.boomerang.{path.parent.name}", path


@pytest.mark.parametrize("schema", CATALOGUE.messages(), ids=lambda s: s.name)
def test_every_message_starts_with_the_common_envelope(schema):
    envelope = schema.parsed["fields"][0]
    assert envelope["name"] == "envelope"
    assert envelope["type"]["name"] == "io.boomerang.common.Envelope"
    assert [f["name"] for f in envelope["type"]["fields"]] == ENVELOPE_FIELDS
    types = {f["name"]: f["type"] for f in envelope["type"]["fields"]}
    assert types["event_id"] == {"type": "string", "logicalType": "uuid"}
    assert types["occurred_at"] == {"type": "long", "logicalType": "timestamp-millis"}


def test_money_is_integer_minor_units_and_a_currency_code():
    money = json.loads((SCHEMAS_DIR / "common" / "Money.avsc").read_text())
    assert [(f["name"], f["type"]) for f in money["fields"]] == [
        ("amount_minor", "long"),
        ("currency", "string"),
    ]


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: p.stem)
def test_no_floats_anywhere(path):
    text = path.read_text()
    assert '"float"' not in text and '"double"' not in text


@pytest.mark.parametrize("path", SOURCE_FILES, ids=lambda p: p.stem)
def test_enums_have_a_default_symbol_and_optionals_default_to_null(path):
    problems = []

    def visit(node):
        is_enum = isinstance(node, dict) and node.get("type") == "enum"
        if is_enum and node.get("default") not in node["symbols"]:
            problems.append(f"enum {node['name']} has no default symbol")
        if isinstance(node, dict) and "name" in node and isinstance(node.get("type"), list):
            union = node["type"]
            if "null" in union and (
                union[0] != "null" or "default" not in node or node["default"] is not None
            ):
                problems.append(
                    f"optional field {node['name']} must be ['null', ...] with default null"
                )

    _walk(json.loads(path.read_text()), visit)
    assert not problems


def test_a_reference_to_a_missing_type_names_the_file(tmp_path: Path):
    (tmp_path / "returns").mkdir()
    (tmp_path / "returns" / "Broken.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Broken",
                "namespace": "io.boomerang.returns",
                "fields": [{"name": "envelope", "type": "io.boomerang.common.Nope"}],
            }
        )
    )
    with pytest.raises(SchemaCatalogueError, match=r"returns/Broken.avsc"):
        load_current(tmp_path)


def test_invalid_json_names_the_file(tmp_path: Path):
    (tmp_path / "x.avsc").write_text("{ not json")
    with pytest.raises(SchemaCatalogueError, match=r"x\.avsc: not valid JSON"):
        load_current(tmp_path)


def test_fingerprints_are_unique():
    fingerprints = [m.fingerprint for m in CATALOGUE.messages()]
    assert len(set(fingerprints)) == len(fingerprints)
