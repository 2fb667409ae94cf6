"""HMAC signatures on the payment providers' settlement webhooks (pure; no I/O).

The provider signs `"{timestamp}." + body` with HMAC-SHA256 and the webhook secret and sends
    X-Psp-Timestamp: <unix seconds>
    X-Psp-Signature: sha256=<hex digest>
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

TIMESTAMP_HEADER = "X-Psp-Timestamp"
SIGNATURE_HEADER = "X-Psp-Signature"
_PSP = WebhookSignature(TIMESTAMP_HEADER, SIGNATURE_HEADER)

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
    return _PSP.signature_headers(secret, timestamp, body)
