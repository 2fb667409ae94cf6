"""How often Python's cyclic garbage collector runs in a service process.

A full collection walks every tracked object of the heap, and one is due whenever the
objects that survived the young collections since the last one pass a quarter of the
heap. At Python's default (a young collection every 700 allocations) the records a
service has in flight survive young collections and bring full collections on: at twice
its max sustained load the coordinator, holding ~40k sagas (a 1 GB heap), spent 32 % of
its CPU samples in the collector (py-spy --native, docs/performance.md) and completed
fewer returns than at its max. A service's state is acyclic JSON-like data freed by
reference counting as soon as it is replaced; the collector only finds cycles (tasks,
exceptions with their frames). A young collection every YOUNG_OBJECTS allocations lets
what is in flight die by reference counting first; cyclic garbage still goes, a little
later.
"""

from __future__ import annotations

import gc

YOUNG_OBJECTS = 50_000  # allocations between two young collections (Python's default: 700)


def tune(young_objects: int = YOUNG_OBJECTS) -> None:
    """Young collections every `young_objects` allocations (0 leaves Python's default);
    the older generations keep Python's ratios."""
    if young_objects > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_objects, middle, old)
