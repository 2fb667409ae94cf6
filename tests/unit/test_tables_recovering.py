"""Pages that read a table answer 503 while it is recovering, never a partial view."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from services.eventing.handler_contract import HttpAnswer, HttpRequest
from services.eventing.service_runtime import tables_recovering, while_tables_recover


def app(recovered: bool, rebalancing: bool = False) -> Any:
    completed = asyncio.Event()
    if recovered:
        completed.set()
    recovery = SimpleNamespace(completed=completed)
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery), rebalancing=rebalancing)


def test_a_recovered_app_lets_the_page_answer():
    assert tables_recovering(app(recovered=True)) is None


def test_a_recovering_app_answers_503_with_a_reason_and_retry_after():
    answer = tables_recovering(app(recovered=False))
    assert answer.status == 503
    assert answer.body["error"] == "recovering"
    assert answer.headers == {"Retry-After": "1"}


def test_a_rebalancing_app_answers_503():
    assert tables_recovering(app(recovered=True, rebalancing=True)).status == 503


def test_a_page_wrapped_for_recovery_answers_only_once_the_tables_are_recovered():
    async def page(request: HttpRequest) -> HttpAnswer:
        return HttpAnswer(200, {"seen": True})

    recovering = asyncio.run(while_tables_recover(app(recovered=False), page)(HttpRequest()))
    recovered = asyncio.run(while_tables_recover(app(recovered=True), page)(HttpRequest()))
    assert (recovering.status, recovered.status) == (503, 200)
