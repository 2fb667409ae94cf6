"""A command answered once: its answer is stored with the command's event id, per return, so
a redelivered or replayed command re-emits the stored answer (same event id) instead of
calling a partner again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from services.eventing.handler_contract import Incoming, Outbound
from services.eventing.log_setup import get_logger

log = get_logger(__name__)


def answers_fold(
    answer_names: frozenset[str],
    not_stored: Callable[[str, dict[str, Any]], bool] = lambda name, record: False,
) -> Callable[[MutableMapping[str, Any], str, dict[str, Any]], None]:
    """The fold that rebuilds `answered` from the answers topic (a view, no changelog): each
    of `answer_names` is the stored answer of the command that caused it (the first one),
    unless `not_stored` says the handler did not store it (an answer made when a command
    gave up, not by `answer_once`)."""

    def fold(answered: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
        envelope = record["envelope"]
        command_id = envelope.get("causation_id")
        if name not in answer_names or not command_id or not_stored(name, record):
            return
        done = answered.get(envelope["return_id"]) or {}
        if command_id not in done:
            answered[envelope["return_id"]] = {**done, command_id: [name, record]}

    return fold


async def answer_once(
    answered: MutableMapping[str, Any],
    incoming: Incoming,
    answer: Callable[[], Awaitable[list[Outbound]]],
) -> list[Outbound]:
    """`answered` maps return_id → {command event id: [name, record]}; an empty answer is
    not stored (nothing was done, the command may be answered later)."""
    done = answered.get(incoming.return_id) or {}
    if incoming.event_id in done:
        name, record = done[incoming.event_id]
        log.debug("command seen before: stored answer re-emitted", result=name)
        return [(name, record)]
    outbound = await answer()
    if outbound:
        answered[incoming.return_id] = {**done, incoming.event_id: list(outbound[0])}
    return outbound
