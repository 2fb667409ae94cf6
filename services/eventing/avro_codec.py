"""Avro single-object encoding (Avro spec, "Single-object encoding"), done with fastavro.

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | binary body

Decoding finds the writer schema by fingerprint in the catalogue and resolves it against
the reader's schema. Every way the bytes can be wrong raises its own `CodecError`
subclass with a message saying what was wrong; nothing from fastavro leaks out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import validate

from services.eventing.schema_catalogue import MessageSchema, SchemaCatalogue

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8


class CodecError(ValueError):
    """Base of every encoding/decoding failure. `reason` is a short stable code for DLQ headers."""

    reason = "codec-error"


class NotAFrameError(CodecError):
    """Too short (or not bytes at all) to hold the 10-byte single-object header."""

    reason = "not-a-frame"


class BadMarkerError(CodecError):
    """The first two bytes are not the single-object marker C3 01."""

    reason = "bad-marker"


class UnknownFingerprintError(CodecError):
    """The writer schema's fingerprint is not in the catalogue (nor its history)."""

    reason = "unknown-fingerprint"


class TruncatedBodyError(CodecError):
    """The body ends before the record does."""

    reason = "truncated-body"


class CorruptBodyError(CodecError):
    """The body's bytes are not a valid encoding of the writer schema (or have trailing bytes)."""

    reason = "corrupt-body"


class SchemaResolutionFailedError(CodecError):
    """The writer's schema cannot be resolved against the reader's schema."""

    reason = "schema-resolution"


class InvalidRecordError(CodecError):
    """Encode side: the record does not conform to its schema."""

    reason = "invalid-record"


@dataclass(frozen=True)
class Decoded:
    name: str  # short record name, e.g. ReturnRequested
    record: dict[str, Any]
    writer: MessageSchema
    reader: MessageSchema


class AvroCodec:
    def __init__(self, catalogue: SchemaCatalogue) -> None:
        self.catalogue = catalogue

    def encode(self, name: str, record: dict[str, Any], checked: bool = True) -> bytes:
        """`checked`: validate the record against its schema first, for a precise error
        (edges and tests). The consume loop's outputs are built by handlers from typed
        records and skip it (about half the encoding cost); a record the writer still
        cannot encode raises InvalidRecordError either way."""
        schema = self.catalogue.get(name)
        if checked:
            try:
                validate(record, schema.prepared, raise_errors=True)
            except Exception as exc:
                raise InvalidRecordError(f"{schema.name}: {exc}") from exc
        buffer = io.BytesIO()
        buffer.write(MARKER)
        buffer.write(schema.fingerprint)
        try:
            schemaless_writer(buffer, schema.prepared, record)
        except Exception as exc:
            raise InvalidRecordError(f"{schema.name}: {type(exc).__name__}: {exc}") from exc
        return buffer.getvalue()

    def fingerprint_of(self, data: bytes) -> bytes:
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < HEADER_SIZE:
            size = len(data) if isinstance(data, bytes | bytearray | memoryview) else None
            raise NotAFrameError(
                f"expected at least {HEADER_SIZE} bytes of single-object header, got "
                + (f"{size}" if size is not None else type(data).__name__)
            )
        if bytes(data[:2]) != MARKER:
            raise BadMarkerError(f"marker is {bytes(data[:2]).hex()}, expected c301")
        return bytes(data[2:HEADER_SIZE])

    def writer_schema(self, data: bytes) -> MessageSchema:
        fingerprint = self.fingerprint_of(data)
        writer = self.catalogue.writer(fingerprint)
        if writer is None:
            raise UnknownFingerprintError(
                f"no schema with fingerprint {fingerprint.hex()} "
                f"(signed {int.from_bytes(fingerprint, 'little', signed=True)})"
            )
        return writer

    def decode(self, data: bytes, reader_name: str | None = None) -> Decoded:
        """Decode with reader schema `reader_name` (default: writer's current schema)."""
        writer = self.writer_schema(data)
        try:
            reader = self.catalogue.get(reader_name or writer.full_name)
        except KeyError as exc:
            raise SchemaResolutionFailedError(
                f"writer {writer.full_name} has no current reader schema: {exc}"
            ) from exc
        if reader.full_name != writer.full_name:
            raise SchemaResolutionFailedError(
                f"record is {writer.full_name}, the reader expects {reader.full_name}"
            )
        payload = bytes(data[HEADER_SIZE:])
        body = io.BytesIO(payload)
        resolve_with = None if reader.fingerprint == writer.fingerprint else reader.prepared
        try:
            record = schemaless_reader(body, writer.prepared, resolve_with)
        except Exception as exc:
            if "SchemaResolution" in type(exc).__name__:
                raise SchemaResolutionFailedError(
                    f"{writer.name} v{writer.version} -> v{reader.version}: {exc}"
                ) from exc
            if _is_truncated(payload, writer):
                raise TruncatedBodyError(
                    f"{writer.name}: body of {len(payload)} byte(s) ends before the record does"
                ) from exc
            raise CorruptBodyError(f"{writer.name}: {type(exc).__name__}: {exc}") from exc
        trailing = len(body.getbuffer()) - body.tell()
        if trailing:
            raise CorruptBodyError(f"{writer.name}: {trailing} unexpected byte(s) after the record")
        return Decoded(name=reader.name, record=record, writer=writer, reader=reader)


_PADDING = bytes(4096)


def _is_truncated(payload: bytes, writer: MessageSchema) -> bool:
    """A body is truncated (not corrupt) when some continuation makes it a valid record.

    Zero bytes are a valid continuation for every Avro type (0, empty string/array/map,
    first union branch, first enum symbol, false), so decode the body padded with zeros
    and check the decoder needed the padding.
    """
    padded = io.BytesIO(payload + _PADDING)
    try:
        # a cut inside a multi-byte character is still a cut: ignore UTF-8 errors here
        schemaless_reader(padded, writer.prepared, None, handle_unicode_errors="ignore")
    except Exception:
        return False
    return padded.tell() > len(payload)
