"""HMAC signatures on carrier callbacks (pure; no I/O).

The carrier signs `"{timestamp}." + body` with HMAC-SHA256 and a shared secret and sends
    X-Carrier-Timestamp: <unix seconds>
    X-Carrier-Signature: sha256=<hex digest>
A callback is accepted only if the signature matches (constant-time compare) and the
timestamp is within the tolerance of our clock, so a captured callback can't be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Carrier-Timestamp"
SIGNATURE_HEADER = "X-Carrier-Signature"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """Why a callback's signature was refused (missing, malformed, wrong, stale)."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now_s: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    if not timestamp_header or not signature_header:
        raise SignatureError("missing signature headers")
    try:
        timestamp = int(timestamp_header)
    except ValueError as exc:
        raise SignatureError("timestamp is not an integer") from exc
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(
            f"stale timestamp ({now_s - timestamp}s off, tolerance {tolerance_s}s)"
        )
    if not signature_header.isascii():
        raise SignatureError("signature header is not ASCII")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature_header):
        raise SignatureError("signature does not match the body")
