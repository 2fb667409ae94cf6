"""A table value as its changelog record holds it: JSON, deflated when it is large.

A saga is 7-9 KB of JSON (field names, repeated sku and id strings) that deflate to about
40 %; a value under COMPRESS_FROM bytes stays plain JSON, readable as it is. A deflated
value starts with DEFLATED (a byte no JSON text starts with) followed by a zlib
stream, so a record of either form, written before or after, reads back the same.
Compression at level 1: ~40 µs for a 9 KB saga, written at most once per checkpoint.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

DEFLATED = b"\x00"
COMPRESS_FROM = 512  # bytes of JSON
_LEVEL = 1


def stored_value(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """The changelog form of `value` (`default` as orjson's: for objects it cannot write)."""
    text = orjson.dumps(value, default=default, option=orjson.OPT_PASSTHROUGH_DATACLASS)
    if len(text) < COMPRESS_FROM:
        return text
    return DEFLATED + zlib.compress(text, _LEVEL)


def value_of(stored: bytes) -> Any:
    """The value a changelog record holds, in either form."""
    if stored[:1] == DEFLATED:
        return orjson.loads(zlib.decompress(stored[1:]))
    return orjson.loads(stored)


@dataclass(frozen=True, slots=True)
class Settled:
    """A table value kept in memory as its changelog form: bytes are one object the garbage
    collector never walks, where the value as dicts and lists is ~100 (a finished saga:
    tens of thousands of them make every full collection long). `label` is a short summary
    kept beside it (a saga's status). Written to the changelog as it is; read back with
    `stored_json()`, the JSON a restored value is. `archive_at`: when it may be archived
    (a finished saga past its retention), if ever."""

    stored: bytes
    label: str
    archive_at: int | None = None

    @classmethod
    def of(cls, value: Any, label: str, archive_at: int | None = None) -> Settled:
        return cls(stored_value(value), label, archive_at)

    def stored_json(self) -> Any:
        return value_of(self.stored)


# a restored value (decoded, and its changelog bytes) kept Settled, or None: kept decoded
Settles = Callable[[Any, bytes], Settled | None]
