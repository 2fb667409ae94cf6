"""HTTP requests about one key answered by the instance that owns the key's partition.

A route that reads or changes one return's state names the request's key (`Route.owner_key`).
Here: while partitions move the answer is 503 + Retry-After (a partial view would answer a
wrong 404 or 409); on the owner the handler answers; elsewhere the request is forwarded once
to the owner (`partition_owners`), whose answer is returned as it is. A forwarded request
that lands on a non-owner (the map changed meanwhile), or an owner that cannot be reached,
is a 503 + Retry-After too: the caller retries, and never gets a wrong answer.

A route over every key (a listing, a ledger) is gathered instead: the instance asked answers
for its partitions and asks each other owner for theirs (`Boomerang-Partitions` says which
partitions an answer covers); the parts are merged by the route's own function only if they
cover every partition exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from services.engine.partition_owners import partition_for
from services.eventing.handler_contract import HttpAnswer, HttpRequest, MergeParts, OwnerKey
from services.eventing.log_setup import get_logger

log = get_logger(__name__)
FORWARDED_BY = "Boomerang-Forwarded-By"  # the instance that forwarded a request
COVERED_PARTITIONS = "Boomerang-Partitions"  # the partitions a gathered part answers for
FORWARD_TIMEOUT_S = 10.0
FORWARD_CONNECTIONS = 100  # kept-alive connections to the other instances
PASSED_ANSWER_HEADERS = ("Retry-After", "Location", "WWW-Authenticate", COVERED_PARTITIONS)
NOT_FORWARDED_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


@dataclass(frozen=True)
class AnswerHere:
    pass


@dataclass(frozen=True)
class ForwardTo:
    url: str


@dataclass(frozen=True)
class NotNow:
    """503 + Retry-After: `reason` is the error code."""

    reason: str
    detail: str


Where = AnswerHere | ForwardTo | NotNow


def where_to_answer(
    partition: int,
    owned: frozenset[int] | None,
    owner_url: str | None,
    own_url: str,
    forwarded: bool,
) -> Where:
    """Where a request about a key of `partition` is answered; `owned` is None while this
    instance's partitions move or their state is recovered."""
    if owned is None:
        return NotNow("rebalancing", "partitions are moving between instances; retry shortly")
    if partition in owned:
        return AnswerHere()
    if forwarded:  # the forwarder's map named this instance, whose own says otherwise
        return NotNow("not_owner", f"partition {partition} is moving; retry shortly")
    if owner_url is None or owner_url == own_url:
        return NotNow("owner_unknown", f"no instance owns partition {partition} yet")
    return ForwardTo(owner_url)


def not_now_answer(where: NotNow) -> HttpAnswer:
    return HttpAnswer(503, {"error": where.reason, "detail": where.detail}, {"Retry-After": "1"})


class OwnerForwarding:
    """Sends a request on to its owner: aiohttp's client, one pooled session per process
    opened on first use (the same server library; httpx cost 3-5× the CPU per request as
    measured for the load generator, docs/performance.md, and a forward is paid on both
    the forwarding and the owning instance's cores)."""

    def __init__(self, own_url: str) -> None:
        self.own_url = own_url
        self._session: aiohttp.ClientSession | None = None

    async def forward(
        self, owner_url: str, method: str, path: str, request: HttpRequest
    ) -> HttpAnswer:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
                connector=aiohttp.TCPConnector(limit=FORWARD_CONNECTIONS),
            )
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in NOT_FORWARDED_HEADERS
        }
        headers[FORWARDED_BY] = self.own_url
        try:
            async with self._session.request(
                method,
                owner_url + path,
                data=request.body or None,
                headers=headers,
                params=dict(request.query),
            ) as answer:
                content = await answer.read()
                status, answer_headers = answer.status, answer.headers
            body = orjson.loads(content)
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("the owner did not answer", owner=owner_url, error=repr(exc))
            return not_now_answer(NotNow("owner_unreachable", "the owner did not answer; retry"))
        if not isinstance(body, dict):
            body = {"answer": body}
        kept = {
            name: answer_headers[name] for name in PASSED_ANSWER_HEADERS if name in answer_headers
        }
        return HttpAnswer(status, body, kept)

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


def routed_to_owner(
    handler: Callable[..., Awaitable[HttpAnswer]],
    owner_key: OwnerKey,
    method: str,
    path_template: str,
    owned: Callable[[], frozenset[int] | None],
    partitions: Callable[[], int],
    owner_of: Callable[[int], Awaitable[str | None]],
    forwarding: OwnerForwarding,
    partition_of: Callable[[str, int], int] = partition_for,
    before_forwarding: Callable[[HttpRequest], HttpAnswer | None] | None = None,
) -> Callable[..., Awaitable[HttpAnswer]]:
    """`handler` answering on the key's owner only (a request whose key cannot be read is
    answered here: the handler refuses it with its own 4xx). An instance that owns every
    partition answers without reading the key (a body is not parsed twice). A request to
    forward is first offered to `before_forwarding`, whose answer (if any) is given here."""

    async def answer(request: HttpRequest, **params: Any) -> HttpAnswer:
        mine = owned()
        count = partitions()
        if mine is not None and len(mine) >= count:
            return await handler(request, **params)
        key = owner_key(request, params)
        if key is None:
            return await handler(request, **params)
        partition = partition_of(key, count)
        owner_url = None
        if mine is not None and partition not in mine:
            owner_url = await owner_of(partition)
        forwarded = was_forwarded(request)
        where = where_to_answer(partition, mine, owner_url, forwarding.own_url, forwarded)
        match where:
            case AnswerHere():
                return await handler(request, **params)
            case ForwardTo(url=url):
                if before_forwarding is not None and (early := before_forwarding(request)):
                    return early
                path = path_template.format(**{k: quote(v, safe="") for k, v in params.items()})
                return await forwarding.forward(url, method, path, request)
            case NotNow():
                return not_now_answer(where)

    return answer


def was_forwarded(request: HttpRequest) -> bool:
    return FORWARDED_BY.lower() in {name.lower() for name in request.headers}


def covered(answer: HttpAnswer) -> list[int] | None:
    """The partitions a gathered part says it covers (None: it does not say)."""
    raw = answer.headers.get(COVERED_PARTITIONS)
    if raw is None:
        return None
    try:
        return [int(number) for number in raw.split(",") if number]
    except ValueError:
        return None


def merged_if_complete(
    parts: Sequence[HttpAnswer], partitions: int, merge: MergeParts
) -> HttpAnswer:
    """The parts merged if all are 200 and together cover each of `partitions` exactly
    once; else the first refusal, or a 503 (the owners changed while they were asked)."""
    for part in parts:
        if part.status != 200:
            return part
    numbers = [number for part in parts for number in (covered(part) or [-1])]
    if sorted(numbers) != list(range(partitions)):
        return not_now_answer(NotNow("rebalancing", "the partitions moved while asked; retry"))
    whole = merge([part.body for part in parts])
    return HttpAnswer(200, whole)


def gathered_from_owners(
    handler: Callable[..., Awaitable[HttpAnswer]],
    merge: MergeParts,
    method: str,
    path_template: str,
    owned: Callable[[], frozenset[int] | None],
    partitions: Callable[[], int],
    all_owners: Callable[[], Awaitable[Mapping[int, str]]],
    forwarding: OwnerForwarding,
) -> Callable[..., Awaitable[HttpAnswer]]:
    """`handler` answering for every partition: this instance's part and each other
    owner's, merged (a forwarded request is answered with this instance's part only)."""

    async def own_part(request: HttpRequest, params: dict[str, Any]) -> HttpAnswer:
        mine = owned()
        if mine is None:
            return not_now_answer(NotNow("rebalancing", "partitions are moving; retry shortly"))
        answer = await handler(request, **params)
        if answer.status != 200:
            return answer
        numbers = ",".join(str(number) for number in sorted(mine))
        return HttpAnswer(200, answer.body, {**answer.headers, COVERED_PARTITIONS: numbers})

    async def answer(request: HttpRequest, **params: Any) -> HttpAnswer:
        if was_forwarded(request):
            return await own_part(request, params)
        mine = owned()
        if mine is None:
            return not_now_answer(NotNow("rebalancing", "partitions are moving; retry shortly"))
        count = partitions()
        owners = await all_owners() if len(mine) < count else {}
        others = {owners.get(number) for number in range(count) if number not in mine}
        if None in others or forwarding.own_url in others:
            return not_now_answer(NotNow("owner_unknown", "not every partition has an owner"))
        path = path_template.format(**{k: quote(v, safe="") for k, v in params.items()})
        parts = await asyncio.gather(
            own_part(request, params),
            *[forwarding.forward(url, method, path, request) for url in sorted(others)],  # type: ignore[arg-type]
        )
        return merged_if_complete(parts, count, merge)

    return answer
