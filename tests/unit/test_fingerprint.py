"""CRC-64-AVRO fingerprints checked against values computed outside this project.

EXPECTED comes from Apache Avro's shared test data (share/test/data/schema-tests.txt), whose
fingerprints the Avro Java implementation cross-checks. `reference_crc64_avro` is the
algorithm exactly as the Avro specification prints it, written independently of fastavro.
"""

from __future__ import annotations

import json

import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st

from services.eventing.schema_catalogue import SchemaCatalogue, crc64_avro_fingerprint

# (schema as written, its Parsing Canonical Form, fingerprint as a signed 64-bit long)
EXPECTED = [
    ('"null"', '"null"', 7195948357588979594),
    ('"boolean"', '"boolean"', -6970731678124411036),
    ('"int"', '"int"', 8247732601305521295),
    ('"long"', '"long"', -3434872931120570953),
    ('"string"', '"string"', -8142146995180207161),
    ('["int", {"type":"boolean"}]', '["int","boolean"]', 5392556393470105090),
    (
        '{"fields":[], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[]}',
        -4824392279771201922,
    ),
    (
        '{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}',
        '{"name":"x.y.foo","type":"record","fields":[]}',
        5916914534497305771,
    ),
    (
        '{"fields":[{"type":{"type":"boolean"}, "name":"f1"}], "type":"record", "name":"foo"}',
        '{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}',
        7843277075252814651,
    ),
    (
        '{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar",'
        ' "symbols":["A1", "A2"]}',
        '{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}',
        -4448647247586288245,
    ),
    ('{"values":"string", "type":"map"}', '{"type":"map","values":"string"}', -8732877298790414990),
]

EMPTY = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


TABLE = _table()


def reference_crc64_avro(data: bytes) -> int:
    """The Avro specification's fingerprint64 (Rabin, CRC-64-AVRO), as an unsigned int."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize(
    ("schema", "canonical", "expected"), EXPECTED, ids=[e[1][:30] for e in EXPECTED]
)
def test_canonical_form_and_fingerprint_match_avro_test_vectors(schema, canonical, expected):
    assert to_parsing_canonical_form(json.loads(schema)) == canonical
    fingerprint = crc64_avro_fingerprint(canonical)
    assert int.from_bytes(fingerprint, "little", signed=True) == expected


@pytest.mark.parametrize(
    ("schema", "canonical", "expected"), EXPECTED, ids=[e[1][:30] for e in EXPECTED]
)
def test_reference_algorithm_reproduces_avro_test_vectors(schema, canonical, expected):
    assert reference_crc64_avro(canonical.encode()) == expected & 0xFFFFFFFFFFFFFFFF


@given(st.binary(max_size=200))
def test_fastavro_fingerprint_equals_the_specification_algorithm(data):
    text = data.decode("latin-1")
    expected = reference_crc64_avro(text.encode())
    assert int.from_bytes(crc64_avro_fingerprint(text), "little") == expected


def test_every_message_schema_fingerprint_equals_the_specification_algorithm():
    for schema in SchemaCatalogue.load().messages():
        expected = reference_crc64_avro(schema.canonical.encode())
        assert int.from_bytes(schema.fingerprint, "little") == expected, schema.name
