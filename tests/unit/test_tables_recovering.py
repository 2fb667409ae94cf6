"""Pages that read a table answer 503 while it is recovering, never a partial view."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from services.eventing.service_runtime import tables_recovering


@dataclass
class Answer:
    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class Web:
    def json(self, body: dict, status: int = 200, headers: dict | None = None) -> Answer:
        return Answer(body, status, headers or {})


def app(recovered: bool, rebalancing: bool = False) -> Any:
    completed = asyncio.Event()
    if recovered:
        completed.set()
    recovery = SimpleNamespace(completed=completed)
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery), rebalancing=rebalancing)


def test_a_recovered_app_lets_the_page_answer():
    assert tables_recovering(app(recovered=True), Web()) is None


def test_a_recovering_app_answers_503_with_a_reason_and_retry_after():
    answer = tables_recovering(app(recovered=False), Web())
    assert answer.status == 503
    assert answer.body["error"] == "recovering"
    assert answer.headers == {"Retry-After": "1"}


def test_a_rebalancing_app_answers_503():
    assert tables_recovering(app(recovered=True, rebalancing=True), Web()).status == 503
