"""Moving a booked pickup to another window, or making it a drop-off (pure saga steps).

The buyer asks (PickupWindowRequested, from the front door): while the pickup is booked
and not collected, and fewer than `pickup_reschedule_limit` moves were asked, the saga
asks the pickup service to move it (PickupRescheduleRequested, the carrier's idempotency
key `{return_id}-pickup-reschedule-{n}`); one more ask is refused with a note. The carrier
may also propose a window itself after a missed attempt. Either way a PickupRescheduled
records the new window, and the collection deadline runs again from it. The buyer may
instead bring the parcel to a drop-off point (DropOffChosen): the booking becomes a
drop-off once (DropOffRequested → DropOffBooked with the code shown at the point), and the
carrier reports the parcel collected there as it would at the door.
"""

from __future__ import annotations

from services.decisions.saga.state import SagaState, Status, changed
from services.decisions.saga.step import Step, set_deadline


def window_requested(step: Step) -> SagaState:
    state, record = step.state, step.record
    pickup = state.pickup
    asked = int(pickup.get("reschedules_asked", 0))
    limit = step.config.pickup_reschedule_limit
    if state.status != Status.PICKUP_SCHEDULED or not pickup.get("booking_id"):
        step.notes.append("pickup reschedule refused: no booking to move yet")
        return state
    if asked >= limit:
        step.notes.append(f"pickup reschedule refused: {asked} of {limit} already asked")
        return changed(state, pickup={**pickup, "reschedules_refused": _refused(pickup) + 1})
    number = asked + 1
    step.command(
        "PickupRescheduleRequested",
        {
            "booking_id": pickup["booking_id"],
            "window_start": record["window_start"],
            "window_end": record["window_end"],
            "reschedule_no": number,
            "idempotency_key": f"{state.return_id}-pickup-reschedule-{number}",
        },
        "reschedule",
        str(number),
    )
    step.notes.append(f"pickup reschedule {number} of {limit} asked by {record['requested_by']}")
    return changed(state, pickup={**pickup, "reschedules_asked": number})


def _refused(pickup: dict) -> int:
    return int(pickup.get("reschedules_refused", 0))


def rescheduled(step: Step) -> SagaState:
    state, record = step.state, step.record
    if record["outcome"] != "rescheduled":
        step.notes.append(f"the carrier did not move the pickup: {record.get('detail') or ''}")
        return changed(
            state, pickup={**state.pickup, "reschedules_refused": _refused(state.pickup) + 1}
        )
    pickup = {
        **state.pickup,
        "window_start": record["window_start"],
        "window_end": record["window_end"],
        "reschedules": int(state.pickup.get("reschedules", 0)) + 1,
    }
    step.notes.append(f"pickup moved (proposed by the {record['proposed_by']})")
    state = changed(state, pickup=pickup)
    if state.status == Status.PICKUP_SCHEDULED:
        return set_deadline(step, state, step.config.collection_deadline_ms)
    return state


def drop_off_chosen(step: Step) -> SagaState:
    """The buyer brings the parcel to a point: the booked pickup becomes a drop-off (once;
    an ask before the booking, or a second one, is refused with a note)."""
    state, record = step.state, step.record
    pickup = state.pickup
    if state.status != Status.PICKUP_SCHEDULED or not pickup.get("booking_id"):
        step.notes.append("drop-off refused: no booking to turn into one yet")
        return state
    if pickup.get("drop_off_asked"):
        step.notes.append("drop-off refused: already asked")
        return state
    step.command(
        "DropOffRequested",
        {
            "booking_id": pickup["booking_id"],
            "point_id": record["point_id"],
            "idempotency_key": f"{state.return_id}-drop-off",
        },
        "drop-off",
    )
    step.notes.append(f"drop-off at {record['point_id']} asked by {record['requested_by']}")
    return changed(state, pickup={**pickup, "drop_off_asked": True})


def drop_off_booked(step: Step) -> SagaState:
    state, record = step.state, step.record
    if record["outcome"] != "booked":
        step.notes.append(f"the carrier did not make it a drop-off: {record.get('detail') or ''}")
        return changed(state, pickup={**state.pickup, "drop_off_refused": True})
    drop_off = {"point_id": record["point_id"], "code": record["drop_off_code"]}
    step.notes.append(f"drop-off at {record['point_id']} booked")
    state = changed(state, pickup={**state.pickup, "drop_off": drop_off})
    if state.status == Status.PICKUP_SCHEDULED:
        return set_deadline(step, state, step.config.collection_deadline_ms)
    return state
