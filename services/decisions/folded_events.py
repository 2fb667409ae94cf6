"""Records that carry an earlier event of the same return (pure).

The front door writes one record per request: its decision (ReturnAccepted or
ReturnRejected) with the request itself in `requested`, instead of a ReturnRequested and then
the decision. Every consumer takes such a record as the two events it stands for, the request
first; a record without `requested` (written before) is itself.
"""

from __future__ import annotations

from typing import Any

CARRYING_THE_REQUEST = frozenset({"ReturnAccepted", "ReturnRejected"})


def unfolded(name: str, record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    requested = record.get("requested") if name in CARRYING_THE_REQUEST else None
    if not requested:
        return [(name, record)]
    decision = {field: value for field, value in record.items() if field != "requested"}
    return [("ReturnRequested", requested), (name, decision)]
