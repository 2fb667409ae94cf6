"""The refund service's metrics (docs/metrics.md): each refund attempt's outcome per method
and provider (the refund failure rate), counted when the provider answers; a command
answered before re-emits its stored answer and is not counted again."""

from __future__ import annotations

from prometheus_client import Counter

REFUND_ATTEMPTS = Counter(
    "boomerang_refund_attempts",
    "Refund attempts answered, by method, provider and outcome: issued (paid or pending at "
    "the provider), declined, provider_unavailable (every retry failed to reach it)",
    ["method", "provider", "outcome"],
)


def refund_answered(method: str, provider: str, accepted: bool) -> None:
    REFUND_ATTEMPTS.labels(method, provider, "issued" if accepted else "declined").inc()


def provider_unavailable(method: str, provider: str) -> None:
    REFUND_ATTEMPTS.labels(method, provider, "provider_unavailable").inc()
