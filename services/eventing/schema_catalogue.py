"""The event contract loaded from `schemas/`: every record, its canonical form and fingerprint.

A *message* is a record with an `envelope` field (a command or an event); the other
records and enums are named types that messages reference. Each message schema is
expanded into one self-contained schema whose Parsing Canonical Form gives the
CRC-64-AVRO fingerprint used by single-object encoding.

Published older versions (`schemas/history/<FullName>/v<N>.avsc`, self-contained)
are loaded too, so records written by older producers still decode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
HISTORY_DIRNAME = "history"


class SchemaCatalogueError(ValueError):
    """A schema file is unreadable, invalid, or references a type that does not exist."""


@dataclass(frozen=True)
class MessageSchema:
    full_name: str  # io.boomerang.returns.ReturnRequested
    name: str  # ReturnRequested (also the envelope's event_type)
    parsed: Any = field(repr=False)  # fastavro parsed schema, as written (with logical types)
    wire: Any = field(repr=False)  # the same without logicalType: plain ints and strings in Python
    # `wire` marked as parsed for fastavro: a reader or writer given it does not parse the
    # schema again (it does for every record given `wire`: 3-7x the cost of the record)
    prepared: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes = b""  # 8 bytes, little-endian CRC-64-AVRO
    version: int | None = None  # published version number, None when not published yet
    source: Path | None = None

    @property
    def fingerprint_int(self) -> int:
        return int.from_bytes(self.fingerprint, "little", signed=True)


def crc64_avro_fingerprint(canonical: str) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a Parsing Canonical Form."""
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


def strip_logical_types(node: Any) -> Any:
    """Drop logicalType annotations. The binary encoding and the canonical form are unchanged;
    Python values stay plain (timestamps as int millis, uuids as str)."""
    if isinstance(node, list):
        return [strip_logical_types(n) for n in node]
    if isinstance(node, dict):
        if "logicalType" in node and node.get("type") not in ("record", "enum", "fixed"):
            return strip_logical_types(node["type"])
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    return node


def make_message_schema(
    parsed: Any, version: int | None = None, source: Path | None = None
) -> MessageSchema:
    canonical = to_parsing_canonical_form(parsed)
    full_name = parsed["name"]
    wire = parse_schema(strip_logical_types(parsed), named_schemas={}, _write_hint=False)
    return MessageSchema(
        full_name=full_name,
        name=full_name.rsplit(".", 1)[-1],
        parsed=parsed,
        wire=wire,
        prepared=parse_schema(wire, named_schemas={}),
        canonical=canonical,
        fingerprint=crc64_avro_fingerprint(canonical),
        version=version,
        source=source,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SchemaCatalogueError(f"{path}: not valid JSON: {exc}") from exc


def _is_message(raw: dict[str, Any]) -> bool:
    return raw.get("type") == "record" and any(
        f.get("name") == "envelope" for f in raw.get("fields", [])
    )


def expand(parsed: Any, named: dict[str, Any]) -> Any:
    """Inline every named-type reference (first occurrence only) into one schema."""
    seen: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            if node in named and node not in seen:
                return walk(named[node])
            return node
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            name = node.get("name") if node.get("type") in ("record", "enum", "fixed") else None
            if name:
                if name in seen:
                    return name
                seen.add(name)
            out = dict(node)
            if node.get("type") == "record":
                out["fields"] = [{**f, "type": walk(f["type"])} for f in node["fields"]]
            elif node.get("type") == "array":
                out["items"] = walk(node["items"])
            elif node.get("type") == "map":
                out["values"] = walk(node["values"])
            return out
        return node

    return walk(parsed)


def load_current(schemas_dir: Path) -> dict[str, MessageSchema]:
    """Parse every `.avsc` outside history/, resolving cross-file references in any order."""
    files = sorted(
        p
        for p in schemas_dir.rglob("*.avsc")
        if HISTORY_DIRNAME not in p.relative_to(schemas_dir).parts
    )
    if not files:
        raise SchemaCatalogueError(f"no .avsc files under {schemas_dir}")
    raw_by_file = {p: _read_json(p) for p in files}
    pending = dict(raw_by_file)
    named: dict[str, Any] = {}
    parsed_by_file: dict[Path, Any] = {}
    while pending:
        progressed = False
        errors: dict[Path, str] = {}
        for path, raw in list(pending.items()):
            attempt: dict[str, Any] = dict(named)
            try:
                parsed = parse_schema(raw, named_schemas=attempt, _write_hint=False)
            except Exception as exc:
                errors[path] = f"{type(exc).__name__}: {exc}"
                continue
            named.update(attempt)
            parsed_by_file[path] = parsed
            del pending[path]
            progressed = True
        if not progressed:
            detail = "; ".join(f"{p.relative_to(schemas_dir)}: {e}" for p, e in errors.items())
            raise SchemaCatalogueError(f"unresolvable schemas: {detail}")
    messages: dict[str, MessageSchema] = {}
    for path, parsed in parsed_by_file.items():
        if not _is_message(raw_by_file[path]):
            continue
        schema = make_message_schema(expand(parsed, named), source=path)
        if schema.name in {m.name for m in messages.values()}:
            raise SchemaCatalogueError(f"{path}: record name {schema.name} is used twice")
        messages[schema.full_name] = schema
    return messages


def load_history(schemas_dir: Path) -> dict[str, list[MessageSchema]]:
    """Published versions per full name, oldest first."""
    history: dict[str, list[MessageSchema]] = {}
    root = schemas_dir / HISTORY_DIRNAME
    if not root.exists():
        return history
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = []
        for path in directory.glob("v*.avsc"):
            try:
                number = int(path.stem[1:])
                parsed = parse_schema(_read_json(path), named_schemas={}, _write_hint=False)
            except Exception as exc:
                raise SchemaCatalogueError(f"{path}: {type(exc).__name__}: {exc}") from exc
            versions.append(make_message_schema(parsed, version=number, source=path))
        history[directory.name] = sorted(versions, key=lambda s: s.version or 0)
    return history


class SchemaCatalogue:
    """Current message schemas by name, and every known writer schema by fingerprint."""

    def __init__(
        self,
        current: dict[str, MessageSchema],
        history: dict[str, list[MessageSchema]] | None = None,
    ) -> None:
        self.history = history or {}
        self._by_full_name: dict[str, MessageSchema] = {}
        self._by_name: dict[str, MessageSchema] = {}
        for full_name, schema in current.items():
            published = self.history.get(full_name, [])
            version = next(
                (s.version for s in published if s.fingerprint == schema.fingerprint), None
            )
            if version is not None:
                schema = MessageSchema(**{**schema.__dict__, "version": version})
            self._by_full_name[full_name] = schema
            self._by_name[schema.name] = schema
        self._writers: dict[bytes, MessageSchema] = {}
        for versions in self.history.values():
            for old in versions:
                self._writers[old.fingerprint] = old
        for schema in self._by_full_name.values():
            self._writers[schema.fingerprint] = schema

    @classmethod
    def load(cls, schemas_dir: Path = SCHEMAS_DIR) -> SchemaCatalogue:
        return cls(load_current(schemas_dir), load_history(schemas_dir))

    def __len__(self) -> int:
        return len(self._by_full_name)

    def messages(self) -> list[MessageSchema]:
        return sorted(self._by_full_name.values(), key=lambda s: s.full_name)

    def get(self, name: str) -> MessageSchema:
        """By short name (ReturnRequested) or full name (io.boomerang.returns.ReturnRequested)."""
        schema = self._by_name.get(name) or self._by_full_name.get(name)
        if schema is None:
            raise KeyError(f"no message schema named {name!r}")
        return schema

    def writer(self, fingerprint_bytes: bytes) -> MessageSchema | None:
        return self._writers.get(fingerprint_bytes)
