"""The schema evolution gate.

`check`: every message schema must be both backward compatible (old writer → new reader)
and forward compatible (new writer → old reader) with its last published version in
`schemas/history/`. Compatibility is tested with real Avro schema resolution (fastavro):
records generated from the writer schema are encoded and then read with the reader schema.

`publish`: record each changed (compatible) schema as the next version, self-contained.

    python -m services.eventing.schema_evolution check|publish [--schemas-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from services.eventing.schema_catalogue import (
    HISTORY_DIRNAME,
    SCHEMAS_DIR,
    MessageSchema,
    SchemaCatalogueError,
    load_current,
    load_history,
)

SAMPLES = 200


@dataclass(frozen=True)
class Finding:
    schema: str
    ok: bool
    message: str


def resolution_error(
    writer: MessageSchema, reader: MessageSchema, samples: int = SAMPLES
) -> str | None:
    """None when every generated writer record resolves into the reader schema, else why not."""
    state = random.getstate()
    random.seed(0xB00E)  # fastavro's generator draws from `random`: make the check repeatable
    try:
        records = list(generate_many(writer.wire, samples))
    finally:
        random.setstate(state)
    for record in records:
        buffer = io.BytesIO()
        schemaless_writer(buffer, writer.wire, record)
        buffer.seek(0)
        try:
            schemaless_reader(buffer, writer.wire, reader.wire)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def compare(previous: MessageSchema, current: MessageSchema) -> list[str]:
    problems = []
    if (why := resolution_error(previous, current)) is not None:
        problems.append(
            f"not backward compatible (v{previous.version} writer -> new reader): {why}"
        )
    if (why := resolution_error(current, previous)) is not None:
        problems.append(f"not forward compatible (new writer -> v{previous.version} reader): {why}")
    return problems


def check(schemas_dir: Path = SCHEMAS_DIR) -> list[Finding]:
    current = load_current(schemas_dir)
    history = load_history(schemas_dir)
    findings = []
    for full_name, schema in sorted(current.items()):
        published = history.get(full_name, [])
        if not published:
            findings.append(
                Finding(full_name, False, "never published: run `make schemas-publish`")
            )
            continue
        latest = published[-1]
        if latest.fingerprint == schema.fingerprint:
            findings.append(Finding(full_name, True, f"unchanged since v{latest.version}"))
            continue
        problems = compare(latest, schema)
        if problems:
            findings.extend(Finding(full_name, False, p) for p in problems)
        else:
            findings.append(
                Finding(full_name, True, f"changed compatibly since v{latest.version} (publish it)")
            )
    for full_name in sorted(set(history) - set(current)):
        findings.append(
            Finding(full_name, False, "published but deleted: consumers may still read it")
        )
    return findings


def publish(schemas_dir: Path = SCHEMAS_DIR) -> list[Path]:
    failing = [f for f in check(schemas_dir) if not f.ok and "never published" not in f.message]
    if failing:
        raise SchemaCatalogueError(
            "refusing to publish: " + "; ".join(f"{f.schema}: {f.message}" for f in failing)
        )
    current = load_current(schemas_dir)
    history = load_history(schemas_dir)
    written = []
    for full_name, schema in sorted(current.items()):
        published = history.get(full_name, [])
        if published and published[-1].fingerprint == schema.fingerprint:
            continue
        version = (published[-1].version or 0) + 1 if published else 1
        path = schemas_dir / HISTORY_DIRNAME / full_name / f"v{version}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema.parsed, indent=2) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.eventing.schema_evolution")
    parser.add_argument("command", choices=["check", "publish"])
    parser.add_argument("--schemas-dir", type=Path, default=SCHEMAS_DIR)
    args = parser.parse_args(argv)
    try:
        if args.command == "publish":
            for path in publish(args.schemas_dir):
                print(f"published {path.relative_to(args.schemas_dir)}")
            return 0
        findings = check(args.schemas_dir)
    except SchemaCatalogueError as exc:
        print(f"schemas: {exc}", file=sys.stderr)
        return 1
    bad = [f for f in findings if not f.ok]
    for finding in findings:
        if not finding.ok or finding.message.startswith("changed"):
            print(f"{'FAIL' if not finding.ok else 'ok  '} {finding.schema}: {finding.message}")
    checked = len({f.schema for f in findings})
    print(f"schemas-check: {checked} message schema(s), {len(bad)} problem(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
