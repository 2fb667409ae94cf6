"""What one saga transition adds to the after-sales figures (pure, no I/O): a return
started, a pickup resolved (collected at the first attempt, after a failed one, or not at
all), money paid back to the buyer (request → money and pickup → money, on the providers'
clocks), a compensation begun, an end reached.

The coordinator records these in its metrics (coordinator/saga_metrics.py); a duplicate
event changes no state, so it adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.decisions.saga.state import SagaState, Status

# request → money and pickup → money: seconds to 30 days (the refund deadlines of bank
# transfers and store credit run in days; the loop itself in seconds)
MONEY_TIME_BUCKETS_S = (
    *(0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0),  # the loop itself
    *(120.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 12 * 3600.0),  # a step waits
    *(d * 86400.0 for d in (1, 2, 3, 5, 7, 10, 14, 21, 30)),  # deadlines run in days
)
UNKNOWN = "unknown"  # a label for a field the request did not carry
NO_MONEY_METHODS = frozenset({"EXCHANGE"})  # completed without paying the buyer back
DISPUTE_STATUSES = frozenset({Status.DISPUTED, Status.DISPUTE_REFUND_PENDING})


@dataclass(frozen=True)
class SagaFigures:
    market: str
    category: str
    started: bool = False
    # "first_attempt" | "after_failed_attempt" | "not_collected" when the pickup step ended
    pickup: str | None = None
    compensation_started: bool = False
    finished: str | None = None  # the terminal status reached
    refund_method: str | None = None  # set with the money times below
    request_to_money_s: float | None = None
    pickup_to_money_s: float | None = None
    dispute_opened: bool = False
    # (decision, "reinspection" | "agent") when a dispute was decided
    dispute_decided: tuple[str, str] | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.started
            or self.dispute_opened
            or self.dispute_decided
            or self.pickup
            or self.compensation_started
            or self.finished
            or self.request_to_money_s is not None
        )


def saga_figures(before: SagaState | None, after: SagaState) -> SagaFigures:
    """The figures the step from `before` (None: no saga yet) to `after` adds."""
    request = after.request or {}
    market = str(request.get("market") or UNKNOWN)
    category = str(request.get("category") or UNKNOWN)
    was = before.status if before is not None else Status.NEW
    was_requested = before is not None and bool(before.request)
    started = bool(after.request) and not was_requested
    # a disputed return ends again: counted once, when it first ended
    ended_before = before is not None and (before.terminal or before.status in DISPUTE_STATUSES)
    finished = str(after.status) if after.terminal and not ended_before else None
    dispute_opened = after.status == Status.DISPUTED and was != Status.DISPUTED
    return SagaFigures(
        market=market,
        category=category,
        started=started,
        pickup=_pickup_resolved(before, after),
        compensation_started=after.status == Status.COMPENSATING and was != Status.COMPENSATING,
        finished=finished,
        **(_money(after) if finished == Status.COMPLETED else {}),
        dispute_opened=dispute_opened,
        dispute_decided=_dispute_decided(before, after),
    )


def _dispute_decided(before: SagaState | None, after: SagaState) -> tuple[str, str] | None:
    dispute = after.dispute or {}
    if dispute.get("status") != "DECIDED":
        return None
    if before is not None and (before.dispute or {}).get("status") == "DECIDED":
        return None
    by = str(dispute.get("decided_by") or UNKNOWN)
    return str(dispute.get("decision") or UNKNOWN), "agent" if by.startswith("agent:") else by


def _pickup_resolved(before: SagaState | None, after: SagaState) -> str | None:
    collected_before = bool(before is not None and before.pickup.get("collected_at"))
    if after.pickup.get("collected_at") and not collected_before:
        return "after_failed_attempt" if after.pickup.get("failed_attempts") else "first_attempt"
    if collected_before or not after.pickup.get("failed_attempts"):
        return None
    # failed attempts, then the saga left the pickup without the parcel (cancelled, or
    # compensated for running out of attempts)
    gave_up = after.status in (Status.CANCELLING, Status.COMPENSATING) or after.terminal
    was_waiting = before is not None and not (
        before.status in (Status.CANCELLING, Status.COMPENSATING) or before.terminal
    )
    return "not_collected" if gave_up and was_waiting else None


def _money(after: SagaState) -> dict[str, object]:
    """Request → money and pickup → money of a completed saga that paid the buyer back (the
    provider's time of paying: its settlement of a pending refund, else its answer)."""
    refund = after.refund or {}
    method = str(refund.get("method") or UNKNOWN)
    amount = (refund.get("amount") or {}).get("amount_minor", 0)
    paid_at = refund.get("settled_at") or refund.get("issued_at")
    requested_at = (after.request or {}).get("requested_at")
    if method in NO_MONEY_METHODS or not amount or not paid_at or not requested_at:
        return {}
    collected_at = after.pickup.get("collected_at")
    return {
        "refund_method": method,
        "request_to_money_s": max(0, paid_at - requested_at) / 1000,
        "pickup_to_money_s": max(0, paid_at - collected_at) / 1000 if collected_at else None,
    }
