"""What a service's handlers take and give, whatever runtime delivers their input.

An event handler is `async def handle(ports, incoming: Incoming) -> list[Outbound]`: the
decoded record in, the records to publish out. An HTTP handler is
`async def handle(ports, request: HttpRequest, **path) -> HttpAnswer`. `ports` is the
service's own dataclass of tables (mappings), partner clients and a `publish` callable,
built by its composition root; tests build it from dicts and in-memory fakes. Nothing here
imports Kafka or aiohttp.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# (record name, record) or (record name, record, key) for a topic not keyed by return_id
Outbound = tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], bytes]
Publish = Callable[[Sequence[Outbound]], Awaitable[None]]


class DomainRejection(ValueError):
    """The event decoded but is impossible for the domain (e.g. a negative quantity).
    Not retried: it goes to the dead-letter topic."""

    reason = "domain-validation"


class UnhandledError(RuntimeError):
    """A handler raised something unexpected (a bug): the record is dead-lettered."""

    reason = "unhandled"


class TransientFailure(RuntimeError):
    """A partner or the broker failed in a way worth retrying (5xx, timeout, connection)."""

    reason = "transient"


@dataclass(frozen=True)
class Incoming:
    """One decoded input record: its name (e.g. `PickupRequested`), the record with its
    envelope, the Kafka key it came with and its position."""

    name: str
    record: dict[str, Any]
    key: bytes | None = None
    # where it was read (for handlers that store their input offsets with their effects)
    topic: str = ""
    partition: int = -1
    offset: int = -1

    @property
    def envelope(self) -> dict[str, Any]:
        return self.record["envelope"]

    @property
    def return_id(self) -> str:
        return self.record["envelope"]["return_id"]

    @property
    def event_id(self) -> str:
        return self.record["envelope"]["event_id"]


@dataclass(frozen=True)
class HttpRequest:
    """What an HTTP handler reads of a request: the raw body, the headers and the query."""

    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


EventHandler = Callable[[Incoming], Awaitable[Sequence[Outbound]]]
ExhaustedHandler = Callable[[Incoming, Exception], Awaitable[Sequence[Outbound]]]
RouteHandler = Callable[..., Awaitable[HttpAnswer]]
# the key whose partition's owner answers a request (None: any instance answers it)
OwnerKey = Callable[[HttpRequest, Mapping[str, str]], str | None]
# one body from the parts of a route over every key, each answered by the owner of some
# partitions (a listing gathered from every instance)
MergeParts = Callable[[Sequence[dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class Subscription:
    """One consumer of a service: the topics it reads, its handler, the record names it takes
    (None: all), whether its records are keyed by return_id, and what a transient failure
    that outlived its retries becomes (None: a dead letter)."""

    name: str
    topics: tuple[str, ...]
    handler: EventHandler
    accepts: frozenset[str] | None = None
    keyed_by_return: bool = True
    on_exhausted: ExhaustedHandler | None = None


@dataclass(frozen=True)
class Route:
    """One HTTP route; `reads_tables`: answered 503 while the tables are being recovered;
    `owner_key`: answered by the instance owning that key's partition; `merge`: a route over
    every key, gathered from every instance and merged (engine/owner_routing);
    `before_forwarding`: with `owner_key`, an answer the instance a request landed on may
    give instead of forwarding it to the owner (a refusal the owner would give too, e.g.
    admission's, which then costs no forward); None: forward it.
    """

    method: str
    path: str
    handler: RouteHandler
    reads_tables: bool = False
    owner_key: OwnerKey | None = None
    merge: MergeParts | None = None
    before_forwarding: Callable[[HttpRequest], HttpAnswer | None] | None = None


@dataclass(frozen=True)
class Wiring:
    """What a composition root hands the runtime: its consumers and its routes."""

    subscriptions: tuple[Subscription, ...]
    routes: tuple[Route, ...] = ()
    # topics whose records start new work (a new return): fetched only while the loop has
    # room, so under overload the work already started is finished first and throughput
    # holds instead of every return slowing down (the rest of the lag waits in Kafka)
    admission_topics: frozenset[str] = frozenset()


def recovering_answer() -> HttpAnswer:
    """The 503 a page answers while its tables are being recovered from their changelogs."""
    return HttpAnswer(
        503,
        {"error": "recovering", "detail": "tables are being recovered; retry shortly"},
        {"Retry-After": "1"},
    )
