"""What the coordinator shows and schedules from a saga: its status view and its due timer."""

from __future__ import annotations

from typing import Any

from services.decisions.saga.personal_data import masked_request
from services.decisions.saga.state import STEP_OF, SagaState


def due_timer(state: SagaState, now_ms: int) -> dict[str, Any] | None:
    """The timer that should fire now, if any (read by the coordinator's timer loop)."""
    if state.terminal or not state.timer or state.timer["due_at"] > now_ms:
        return None
    return state.timer


def status_view(state: SagaState) -> dict[str, Any]:
    """What `GET /returns/{return_id}` shows."""
    return {
        "return_id": state.return_id,
        "status": str(state.status),
        "step": STEP_OF[state.status],
        "terminal": state.terminal,
        "outcome": state.outcome or None,
        "policy_version": state.policy_version or None,
        "rules_fired": list(state.rules_fired),
        "liability": (state.refund or {}).get("liability")
        or (state.inspection.get("refund_plan") or {}).get("liability"),
        "request": masked_request(state.request) or None,
        "pickup": state.pickup or None,
        "inspection": state.inspection or None,
        "intake": state.intake or None,
        "refund": state.refund or None,
        "risk": state.risk or None,
        "timer": state.timer or None,
        "compensations_registered": list(state.compensations),
        "compensation": state.compensation or None,
        "dispute": state.dispute or None,
        "history": list(state.history),
        "created_at": state.created_at,
        "updated_at": state.updated_at,
    }
