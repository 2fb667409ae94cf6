"""HMAC signatures on carrier callbacks (pure; no I/O).

The carrier signs `"{timestamp}." + body` with HMAC-SHA256 and a shared secret and sends
    X-Carrier-Timestamp: <unix seconds>
    X-Carrier-Signature: sha256=<hex digest>
A callback is accepted only if the signature matches (constant-time compare) and the
timestamp is within the tolerance of our clock, so a captured callback can't be replayed later.
The scheme itself lives in `services.eventing.webhook_signature`; this module names the headers.
"""

from __future__ import annotations

from services.eventing.webhook_signature import (
    DEFAULT_TOLERANCE_S,
    SignatureError,
    WebhookSignature,
    sign,
    verify,
)

TIMESTAMP_HEADER = "X-Carrier-Timestamp"
SIGNATURE_HEADER = "X-Carrier-Signature"
_CARRIER = WebhookSignature(TIMESTAMP_HEADER, SIGNATURE_HEADER)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "SignatureError",
    "sign",
    "signature_headers",
    "verify",
]


def signature_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    return _CARRIER.signature_headers(secret, timestamp, body)
