"""The notifier's metrics (docs/metrics.md): messages the provider took, failed sends and
notices given up, by milestone and recipient (declared sets), and how long a notice took
from its event to the provider."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS_SENT = Counter(
    "boomerang_notifications_sent",
    "Messages the notification provider took, by milestone, recipient role and language",
    ["milestone", "recipient", "language"],
)
NOTIFICATION_SEND_FAILURES = Counter(
    "boomerang_notification_send_failures",
    "Sends that failed, by milestone and whether they are tried again",
    ["milestone", "retryable"],
)
NOTIFICATIONS_GIVEN_UP = Counter(
    "boomerang_notifications_given_up",
    "Notices abandoned (attempts ran out, or the provider refused them), by milestone",
    ["milestone"],
)
NOTIFICATION_DELAY_SECONDS = Histogram(
    "boomerang_notification_delay_seconds",
    "From a milestone's event to the provider taking its message",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
