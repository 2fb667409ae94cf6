"""The saga as the coordinator stores it: one record per return, in two parts.

- the slim record: what later steps read (status, request, pickup, inspection, refund,
  timers, tries, compensations, the ids of recent events) and nothing else; a step decides
  from it alone (`loaded_state`);
- its explanation, under EXPLANATION: the history and the rules fired that the slim record
  does not keep (the request's). It is shown (GET /returns/{return_id}, `boomerang saga
  show`), never read by a step, and grows by the entries of each event, bounded
  (HISTORY_KEPT, RULES_KEPT). The policy snapshot as accepted is named on ReturnAccepted
  by its digest (the coordinator puts it into `policy_json` before the saga decides); the
  slim record keeps the values later steps read.

Both are written compactly and read back losslessly: a history entry as a row (its timer
as its id and due time where the rest follows from the id), the inspection's items and the
refund plan's breakdown as tables (field names once), the refund as its difference from the
refund plan it was copied from.
"""

from __future__ import annotations

from typing import Any

from services.decisions.saga.state import HISTORY_KEPT, STEP_OF, SagaState, Status

# The policy values the steps after inspection read (refund routes and answers); the
# whole effective policy is read once, when the inspection's refund plan is made.
LATER_POLICY_RULES = ("decline_fallback", "refund_deadline_days", "exchange_out_of_stock")
# Rules fired at these steps travel on the refund command, so the slim record keeps them.
RULE_STEPS_KEPT = frozenset({"INSPECTION", "REFUND"})
RULES_KEPT = 200
EXPLANATION = "explanation"


_HISTORY_ROW = ("at", "event_type", "event_id", "from", "to")


def slim_record(state: SagaState) -> dict[str, Any]:
    data = state.to_json()
    del data["history"]
    data["rules_fired"] = [r for r in state.rules_fired if r.get("step") in RULE_STEPS_KEPT]
    if state.inspection and state.status != Status.DISPUTED:  # a dispute reads it whole
        rules = state.policy.get("rules") or {}
        data["policy"] = {"rules": {n: rules[n] for n in LATER_POLICY_RULES if n in rules}}
    plan = state.inspection.get("refund_plan")
    if state.refund and plan:
        data["refund"] = {n: v for n, v in state.refund.items() if plan.get(n, _NONE) != v}
        data["refund_from_plan_but"] = sorted(name for name in plan if name not in state.refund)
    if state.inspection:
        data["inspection"] = _inspection_rows(state.inspection)
    return data


_NONE = object()
# lists of records of one shape in the inspection, stored as a table (columns, rows)
_TABULAR = (("items",), ("refund_plan", "breakdown"))


def as_table(records: list[dict[str, Any]]) -> Any:
    """Records that share their field names as {"columns": [...], "rows": [[...], ...]}
    (names written once, not per record); anything else as it is."""
    if not records or not all(isinstance(r, dict) for r in records):
        return records
    columns = list(records[0])
    if any(list(r) != columns for r in records):
        return records
    return {"columns": columns, "rows": [list(r.values()) for r in records]}


def from_table(stored: Any) -> Any:
    if isinstance(stored, dict) and set(stored) == {"columns", "rows"}:
        return [dict(zip(stored["columns"], row, strict=True)) for row in stored["rows"]]
    return stored


def _inspection_rows(inspection: dict[str, Any]) -> dict[str, Any]:
    stored = dict(inspection)
    for path in _TABULAR:
        _replace(stored, path, as_table)
    return stored


def _inspection_of(stored: dict[str, Any] | None) -> dict[str, Any]:
    inspection = dict(stored or {})
    for path in _TABULAR:
        _replace(inspection, path, from_table)
    return inspection


def _replace(data: dict[str, Any], path: tuple[str, ...], change: Any) -> None:
    """data[path] = change(data[path]) where the path exists, copying the dicts on the way."""
    *parents, last = path
    for name in parents:
        if not isinstance(data.get(name), dict):
            return
        data[name] = dict(data[name])
        data = data[name]
    if last in data:
        data[last] = change(data[last])


def stored_record(state: SagaState, explanation: dict[str, Any] | None) -> dict[str, Any]:
    """The record the coordinator writes: the slim record with its explanation."""
    return {**slim_record(state), EXPLANATION: explanation or {}}


def explanation_in(record: dict[str, Any]) -> dict[str, Any] | None:
    return record.get(EXPLANATION)


def _refund_of(slim: dict[str, Any], inspection: dict[str, Any]) -> dict[str, Any]:
    """The refund, from its difference with the refund plan (`refund_from_plan_but`: the
    plan's fields it does not have; a record written before that names the plan's fields it
    copied, in `refund_as_plan`)."""
    plan = inspection.get("refund_plan") or {}
    if (left_out := slim.get("refund_from_plan_but")) is not None:
        return {**{n: v for n, v in plan.items() if n not in left_out}, **slim["refund"]}
    if (same := slim.get("refund_as_plan")) is not None:
        return {**{name: plan[name] for name in same}, **slim["refund"]}
    return slim.get("refund") or {}


def _history_row(entry: dict[str, Any]) -> list[Any]:
    extra = {k: v for k, v in entry.items() if k not in _HISTORY_ROW and k != "step"}
    if "commands" in extra:
        extra["commands"] = [[c["command"], c["event_id"]] for c in extra["commands"]]
    timer = extra.get("timer")
    if timer and _timer_of(timer.get("id"), timer.get("due_at")) == timer:
        extra["timer"] = [timer["id"], timer["due_at"]]
    return [*(entry[name] for name in _HISTORY_ROW), extra]


def _timer_of(timer_id: Any, due_at: Any) -> dict[str, Any] | None:
    """A timer from its id ("<kind>-<stage>-<number>", step.set_timer) and due time."""
    kind, _, rest = str(timer_id).partition("-")
    stage, _, number = rest.rpartition("-")
    step = _STEP_OF_STAGE.get(stage)
    if not number.isdigit() or step is None:
        return None
    return {"id": timer_id, "kind": kind, "step": step, "stage": stage, "due_at": due_at}


_STEP_OF_STAGE = {str(status): step for status, step in STEP_OF.items()}


def _history_entry(row: list[Any]) -> dict[str, Any]:
    *fields, extra = row
    entry = dict(zip(_HISTORY_ROW, fields, strict=True))
    entry["step"] = STEP_OF[Status(entry["to"])]
    if "commands" in extra:
        extra = {**extra, "commands": [{"command": n, "event_id": i} for n, i in extra["commands"]]}
    if isinstance(extra.get("timer"), list):
        extra = {**extra, "timer": _timer_of(*extra["timer"])}
    return {**entry, **extra}


def explanation_after(
    explanation: dict[str, Any] | None, loaded: SagaState | None, after: SagaState
) -> dict[str, Any]:
    """The explanation once `after` (decided from `loaded`, read from a slim record) is stored:
    the entries this event added, appended."""
    explanation = explanation or {}
    history_before = len(loaded.history) if loaded else 0
    rules_before = len(loaded.rules_fired) if loaded else 0
    new_rules = after.rules_fired[rules_before:]
    history = [
        *explanation.get("history", ()),
        *(_history_row(entry) for entry in after.history[history_before:]),
    ]
    rules = [
        *explanation.get("rules_fired", ()),
        *(rule for rule in new_rules if rule.get("step") not in RULE_STEPS_KEPT),
    ]
    dropped = explanation.get("history_dropped", 0) + max(0, len(history) - HISTORY_KEPT)
    return {
        "rules_fired": rules[-RULES_KEPT:],
        "history": history[-HISTORY_KEPT:],
        "history_dropped": dropped,
    }


def loaded_state(slim: dict[str, Any]) -> SagaState:
    """The state a step decides from (its explanation is not read; a record stored before
    the explanation was split off still has its history: it is left out)."""
    return SagaState.from_json({**slim, "history": (), **_inspection_and_refund(slim)})


def _inspection_and_refund(slim: dict[str, Any]) -> dict[str, Any]:
    """The two fields the slim record keeps compacted, as the state holds them."""
    inspection = _inspection_of(slim.get("inspection"))
    return {"inspection": inspection, "refund": _refund_of(slim, inspection)}


def shown_state(slim: dict[str, Any], explanation: dict[str, Any] | None = None) -> SagaState:
    """The whole state for the views: the slim record with its explanation (the one it
    holds, unless given) put back (the rules in the order they fired: the request's come
    first)."""
    explanation = explanation or explanation_in(slim) or {}
    history = [_history_entry(row) for row in explanation.get("history", ())]
    return SagaState.from_json(
        {
            **slim,
            **_inspection_and_refund(slim),
            "history": history or slim.get("history", ()),
            "rules_fired": [*explanation.get("rules_fired", ()), *slim.get("rules_fired", ())],
        }
    )
