"""The return saga as a pure transition function: (state, event) -> (new state, commands).

No I/O, no clock: the caller passes `now_ms` and a `SagaConfig`. Every command gets a
deterministic event id derived from the return, the step and the try, so re-emitting it
after a crash yields the same id and downstream consumers deduplicate it. Every event id the
saga has seen is stored with the state it changed; a redelivered event changes nothing, and a
redelivery of the *last* event re-emits that event's commands (the outbox) in case they were
lost in a crash between saving the state and publishing.

Forward path:
  ReturnRequested → REQUESTED
  ReturnAccepted → PICKUP_PENDING            + PickupRequested     (registers: cancel pickup)
  PickupScheduled → PICKUP_SCHEDULED
  PickupCompleted → AWAITING_INSPECTION
  InspectionRecorded → INTAKE_PENDING        + IntakeRequested     (registers: reverse intake)
  IntakeCompleted → RESERVING_REFUND        + RefundReservationRequested
                                                       (registers: release reservation)
  RefundReserved → REFUND_PENDING            + RefundRequested     (registers: void refund)
  RefundIssued → COMPLETED                   + ReturnCompleted     (the pivot: no way back)
    (a PENDING refund waits for RefundSettled, the provider's webhook, before completing)

The order refund ledger (keyed by order_ref) works each return's refund out after every
other live return of the same order, so partial returns of one order add up to exactly what
was paid; units other returns already hold are refused there (a person decides). A return
whose order came without a snapshot goes there with its returned lines: the ledger learns such
an order line by line, so its units are never refunded twice either.

Refund routes:
- A bank-transfer refund without the buyer's account waits in AWAITING_BUYER_DETAILS
  (+ BuyerDetailsRequested) for BuyerDetailsProvided; past the deadline the policy's
  fallback (store credit) pays, or a person does.
- A decline's next action: RETRY asks again with a new idempotency key after a backoff,
  FALLBACK pays by the policy's `decline_fallback` (store credit; recorded as a fallback),
  NEEDS_ATTENTION opens a ticket. A refund that cannot be paid any way compensates.
- An exchange (resolution EXCHANGE) asks for a replacement order after intake instead
  (EXCHANGE_PENDING + ReplacementOrderRequested); out of stock → the policy's
  `exchange_out_of_stock` decides: REFUND (as planned) or STORE_CREDIT. An item the buyer
  damaged (refund REDUCED by the policy) gets no replacement: the reduced refund is paid.

Failures:
- Terminal states carry a reason: COMPLETED, REJECTED (policy or inspection), CANCELLED
  (by the buyer before pickup, or the pickup failed), COMPENSATED (a step failed for good and
  the earlier steps were undone), NEEDS_ATTENTION (a TicketOpened says what a person needs).
- Transient failures (a retryable failure event or a missed deadline) are retried with
  exponential backoff and jitter, at most `max_tries` per step; permanent ones are not.
- Durable timers: the state holds one timer (deadline or retry); the coordinator's timer
  loop turns a due timer into a SagaStepTimedOut event, which is handled here like any event.
- A compensation is registered before its step runs; compensations run in reverse order,
  one at a time, each confirmed by an event and recorded in the history. A refund that has
  succeeded is the pivot: it cannot be compensated, only completed.

Kafka orders a return's events within one topic, not across topics: an event of a later step
that arrives early is parked and applied once the saga reaches its step.
"""

from services.decisions.saga.forward import inspection_problem
from services.decisions.saga.refund_routes import ATTEMPT_ONLY
from services.decisions.saga.state import (
    DEFAULT_CONFIG,
    EVENT_RANK,
    NOT_CANCELLED_PREFIX,
    PARKING_RANK,
    STATUS_RANK,
    STEP_OF,
    TERMINAL,
    Command,
    SagaConfig,
    SagaState,
    Status,
    Transition,
    changed,
)
from services.decisions.saga.step import backoff_ms
from services.decisions.saga.transitions import CONSUMED_EVENTS, decide
from services.decisions.saga.views import due_timer, status_view

__all__ = [
    "ATTEMPT_ONLY",
    "CONSUMED_EVENTS",
    "DEFAULT_CONFIG",
    "EVENT_RANK",
    "NOT_CANCELLED_PREFIX",
    "PARKING_RANK",
    "STATUS_RANK",
    "STEP_OF",
    "TERMINAL",
    "Command",
    "SagaConfig",
    "SagaState",
    "Status",
    "Transition",
    "backoff_ms",
    "changed",
    "decide",
    "due_timer",
    "inspection_problem",
    "status_view",
]
