"""A buyer's personal data in a saga (pure): what the status view shows of it, and its
erasure.

The view (GET /returns/{id}, and the archive kept of it) shows the bank account's last four
characters, the holder's initial and the address's last part (the town) only. A buyer's
erasure request (PersonalDataErasureRequested, one per return, from the front door) is
noted at once and applied as soon as the return has ended (a running return still needs
the address for its pickup and the account for its refund): the address, the account and
the buyer's notes become ERASED; ids (return, order, buyer, seller) stay, so the ledger's
and the audit's references still resolve.
"""

from __future__ import annotations

from typing import Any

from services.decisions.saga.state import SagaState, changed
from services.decisions.saga.step import Step

ERASED = "[erased]"
MASK = "•••"


def masked_request(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the view shows it."""
    shown = dict(request)
    account = request.get("refund_account")
    if account:
        number, holder = str(account.get("number", "")), str(account.get("holder", ""))
        shown["refund_account"] = {
            **account,
            "number": number if number == ERASED else f"****{number[-4:]}",
            "holder": holder if holder == ERASED else f"{holder[:1]}{MASK}",
        }
    address = request.get("pickup_address")
    if address and address != ERASED:
        town = str(address).rsplit(",", 1)[-1].strip() if "," in str(address) else ""
        shown["pickup_address"] = f"{MASK}, {town}" if town else MASK
    order = request.get("order")
    if isinstance(order, dict) and order.get("pickup_address"):
        shown["order"] = {**order, "pickup_address": MASK}
    return shown


def erasure_requested(step: Step) -> SagaState:
    """Note the request; erase now if the return has ended (else when it ends)."""
    record, state = step.record, step.state
    erasure = state.request.get("erasure") or {}
    if not erasure:
        erasure = {"requested_at": step.now_ms, "requested_by": record["requested_by"]}
        state = changed(state, request={**state.request, "erasure": erasure})
        step.notes.append(f"erasure of the buyer's personal data asked by {record['requested_by']}")
    return erased_if_ended(state, step.now_ms)


def erased_if_ended(state: SagaState, now_ms: int) -> SagaState:
    erasure = state.request.get("erasure")
    if not erasure or erasure.get("erased_at") or not state.terminal:
        return state
    return changed(
        state, request={**scrubbed(state.request), "erasure": {**erasure, "erased_at": now_ms}}
    )


def scrubbed(request: dict[str, Any]) -> dict[str, Any]:
    """The request without the buyer's personal data (ids kept)."""
    clean = dict(request)
    for name in ("pickup_address", "buyer_notes"):
        if clean.get(name):
            clean[name] = ERASED
    if clean.get("refund_account"):
        clean["refund_account"] = {key: ERASED for key in clean["refund_account"]}
    order = clean.get("order")
    if isinstance(order, dict) and order.get("pickup_address"):
        clean["order"] = {**order, "pickup_address": ERASED}
    return clean
