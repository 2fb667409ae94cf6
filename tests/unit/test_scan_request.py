"""An inspection scan as posted by a warehouse scanner: validation with exact field paths."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.eventing.avro_codec import AvroCodec
from services.eventing.request_fields import ApiError
from services.inspection.scan_request import MAX_ITEMS, ScanRequest, parse_scan
from tests.support.return_events import envelope


def scanned_item(**overrides: Any) -> dict[str, Any]:
    raw = {
        "sku": "TS-M",
        "serial": None,
        "grade": "A",
        "matches_order": True,
        "measured_weight_grams": 410,
        "expected_weight_grams": 420,
        "notes": "",
        "photo_refs": ["s3://scans/1.jpg"],
    }
    raw.update(overrides)
    return raw


def scan(**overrides: Any) -> dict[str, Any]:
    raw = {
        "scan_id": "SCAN-1",
        "return_id": "RMA-1",
        "station_id": "ST-1",
        "inspector_id": "I-7",
        "items": [scanned_item()],
    }
    raw.update(overrides)
    return raw


def fields_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ApiError) as info:
        parse_scan(raw)
    assert info.value.status == 422
    assert info.value.code == "invalid_request"
    return [problem.field for problem in info.value.fields]


def second_item(**overrides: Any) -> dict[str, Any]:
    """A scan whose second item (index 1) carries the overrides."""
    return scan(items=[scanned_item(), scanned_item(**overrides)])


def second_item_without(key: str) -> dict[str, Any]:
    raw = second_item()
    del raw["items"][1][key]
    return raw


# ------------------------------------------------------------------ valid scans


def test_valid_scan_parses() -> None:
    assert parse_scan(scan()) == ScanRequest(
        scan_id="SCAN-1",
        return_id="RMA-1",
        station_id="ST-1",
        inspector_id="I-7",
        items=(scanned_item() | {"packaging_damaged": False},),
    )


def test_optional_item_fields_get_their_defaults() -> None:
    minimal = {"sku": "TS-M", "grade": "B", "matches_order": False, "measured_weight_grams": 0}
    (item,) = parse_scan(scan(items=[minimal])).items
    assert item == {
        "sku": "TS-M",
        "serial": None,
        "grade": "B",
        "matches_order": False,
        "measured_weight_grams": 0,
        "expected_weight_grams": None,
        "notes": "",
        "photo_refs": [],
        "packaging_damaged": False,
    }


def test_packaging_damage_is_reported_per_item() -> None:
    (item,) = parse_scan(scan(items=[scanned_item(packaging_damaged=True)])).items
    assert item["packaging_damaged"] is True


def test_packaging_damage_must_be_true_or_false() -> None:
    with pytest.raises(ApiError) as refused:
        parse_scan(scan(items=[scanned_item(packaging_damaged="yes")]))
    assert "items[0].packaging_damaged" in [f.field for f in refused.value.fields]


def test_empty_serial_becomes_none() -> None:
    assert parse_scan(scan(items=[scanned_item(serial="")])).items[0]["serial"] is None


def test_serial_is_kept() -> None:
    assert parse_scan(scan(items=[scanned_item(serial="SN-42")])).items[0]["serial"] == "SN-42"


@pytest.mark.parametrize("grade", ["A", "B", "C", "D"])
def test_every_grade_a_to_d_is_accepted(grade: str) -> None:
    assert parse_scan(scan(items=[scanned_item(grade=grade)])).items[0]["grade"] == grade


def test_zero_weights_are_accepted() -> None:
    raw = scanned_item(measured_weight_grams=0, expected_weight_grams=0)
    (item,) = parse_scan(scan(items=[raw])).items
    assert (item["measured_weight_grams"], item["expected_weight_grams"]) == (0, 0)


def test_hundred_items_are_accepted() -> None:
    assert len(parse_scan(scan(items=[scanned_item()] * MAX_ITEMS)).items) == MAX_ITEMS


def test_twenty_photo_refs_are_accepted() -> None:
    refs = [f"s3://scans/{i}.jpg" for i in range(20)]
    assert parse_scan(scan(items=[scanned_item(photo_refs=refs)])).items[0]["photo_refs"] == refs


def test_unknown_item_keys_are_dropped() -> None:
    (item,) = parse_scan(scan(items=[scanned_item(colour="red")])).items
    assert "colour" not in item


def test_parsing_does_not_modify_the_body() -> None:
    raw = scan()
    before = copy.deepcopy(raw)
    parse_scan(raw)
    assert raw == before


def test_event_fields_carry_the_scan_and_the_inspection_time() -> None:
    fields = parse_scan(scan()).event_fields(inspected_at=1_790_000_000_000)
    assert fields == {
        "scan_id": "SCAN-1",
        "station_id": "ST-1",
        "inspector_id": "I-7",
        "items": [scanned_item() | {"packaging_damaged": False}],
        "inspected_at": 1_790_000_000_000,
    }


def test_event_fields_encode_as_inspection_recorded(codec: AvroCodec) -> None:
    items = [
        scanned_item(),
        {"sku": "CAP", "grade": "D", "matches_order": False, "measured_weight_grams": 10**7},
    ]
    record = {
        "envelope": envelope("InspectionRecorded", "RMA-1"),
        **parse_scan(scan(items=items)).event_fields(1_790_000_000_000),
    }
    assert codec.decode(codec.encode("InspectionRecorded", record)).record == record


# ------------------------------------------------------------------ top-level problems


@pytest.mark.parametrize("key", ["scan_id", "return_id", "station_id", "inspector_id", "items"])
def test_missing_top_level_field_is_named(key: str) -> None:
    raw = scan()
    del raw[key]
    assert fields_of(raw) == [key]


@pytest.mark.parametrize("key", ["scan_id", "return_id", "station_id", "inspector_id"])
@pytest.mark.parametrize("value", ["", "  ", 1, True, ["x"], "X" * 65])
def test_bad_top_level_text_is_named(key: str, value: Any) -> None:
    assert fields_of(scan(**{key: value})) == [key]


@pytest.mark.parametrize("items", [[], None, "TS-M", {"sku": "TS-M"}, [1], ["TS-M"]])
def test_items_must_be_a_non_empty_list_of_objects(items: Any) -> None:
    assert fields_of(scan(items=items)) == ["items"]


def test_too_many_items_are_refused() -> None:
    assert fields_of(scan(items=[scanned_item()] * (MAX_ITEMS + 1))) == ["items"]


# ------------------------------------------------------------------ item problems


@pytest.mark.parametrize("key", ["sku", "grade", "matches_order", "measured_weight_grams"])
def test_missing_required_item_field_is_named_with_its_index(key: str) -> None:
    assert fields_of(second_item_without(key)) == [f"items[1].{key}"]


@pytest.mark.parametrize(
    "grade", ["E", "F", "", "AB", "a", "UNKNOWN", None, 1], ids=lambda g: repr(g)
)
def test_grade_outside_a_to_d_is_refused(grade: Any) -> None:
    assert fields_of(second_item(grade=grade)) == ["items[1].grade"]


@pytest.mark.parametrize("value", ["true", 1, 0, None, "yes", []], ids=repr)
def test_matches_order_must_be_a_boolean(value: Any) -> None:
    assert fields_of(second_item(matches_order=value)) == ["items[1].matches_order"]


@pytest.mark.parametrize("key", ["measured_weight_grams", "expected_weight_grams"])
def test_negative_weight_is_refused(key: str) -> None:
    assert fields_of(second_item(**{key: -1})) == [f"items[1].{key}"]


@pytest.mark.parametrize("key", ["measured_weight_grams", "expected_weight_grams"])
def test_weight_above_ten_tonnes_is_refused(key: str) -> None:
    assert parse_scan(second_item(**{key: 10**7}))
    assert fields_of(second_item(**{key: 10**7 + 1})) == [f"items[1].{key}"]


@pytest.mark.parametrize("key", ["measured_weight_grams", "expected_weight_grams"])
@pytest.mark.parametrize("value", [410.5, True, False, "410"], ids=repr)
def test_weight_must_be_an_integer(key: str, value: Any) -> None:
    assert fields_of(second_item(**{key: value})) == [f"items[1].{key}"]


@pytest.mark.parametrize("key", ["measured_weight_grams", "expected_weight_grams"])
def test_a_whole_weight_written_with_a_fraction_is_that_integer(key: str) -> None:
    """JSON Schema's integers, as the document says: 410.0 is 410."""
    assert parse_scan(second_item(**{key: 410.0})) == parse_scan(second_item(**{key: 410}))


@pytest.mark.parametrize("sku", ["", "   ", 7, "X" * 65])
def test_bad_sku_is_refused(sku: Any) -> None:
    assert fields_of(second_item(sku=sku)) == ["items[1].sku"]


@pytest.mark.parametrize("serial", [7, True, "X" * 129])
def test_bad_serial_is_refused(serial: Any) -> None:
    assert fields_of(second_item(serial=serial)) == ["items[1].serial"]


@pytest.mark.parametrize("notes", [7, ["x"], "X" * 2001])
def test_bad_notes_are_refused(notes: Any) -> None:
    assert fields_of(second_item(notes=notes)) == ["items[1].notes"]


@pytest.mark.parametrize(
    "refs",
    ["s3://x", [""], [1], ["x" * 257], None],
    ids=["string", "empty", "int", "too-long", "null"],
)
def test_bad_photo_refs_are_refused(refs: Any) -> None:
    assert fields_of(second_item(photo_refs=refs)) == ["items[1].photo_refs"]


def test_too_many_photo_refs_are_refused() -> None:
    refs = [f"s3://scans/{i}.jpg" for i in range(21)]
    assert fields_of(second_item(photo_refs=refs)) == ["items[1].photo_refs"]


def test_every_problem_is_reported_at_once() -> None:
    raw = scan(
        scan_id="",
        items=[
            scanned_item(grade="E"),
            scanned_item(matches_order="yes", measured_weight_grams=-1),
        ],
    )
    del raw["inspector_id"]
    assert sorted(fields_of(raw)) == sorted(
        [
            "scan_id",
            "inspector_id",
            "items[0].grade",
            "items[1].matches_order",
            "items[1].measured_weight_grams",
        ]
    )


@given(
    index=st.integers(0, 9),
    key=st.sampled_from(["grade", "matches_order", "measured_weight_grams", "sku"]),
)
def test_the_field_path_names_the_broken_items_index(index: int, key: str) -> None:
    items = [scanned_item() for _ in range(10)]
    items[index][key] = "?" if key != "sku" else ""
    assert fields_of(scan(items=items)) == [f"items[{index}].{key}"]


ITEM_BREAKERS: dict[str, Any] = {
    "sku": "",
    "serial": 5,
    "grade": "E",
    "matches_order": "yes",
    "measured_weight_grams": -1,
    "expected_weight_grams": 1.5,
    "notes": ["x"],
    "photo_refs": [""],
}


@given(
    broken=st.sets(
        st.tuples(st.integers(0, 2), st.sampled_from(sorted(ITEM_BREAKERS))), min_size=1
    ),
    scan_id_broken=st.booleans(),
)
def test_every_broken_item_field_is_named_and_only_those(
    broken: set[tuple[int, str]], scan_id_broken: bool
) -> None:
    raw = scan(items=[scanned_item() for _ in range(3)], scan_id="" if scan_id_broken else "S")
    for index, key in broken:
        raw["items"][index][key] = ITEM_BREAKERS[key]
    expected = {f"items[{index}].{key}" for index, key in broken}
    if scan_id_broken:
        expected.add("scan_id")
    assert sorted(fields_of(raw)) == sorted(expected)
