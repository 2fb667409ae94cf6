"""HMAC signatures on webhooks and partner callbacks (pure; no I/O).

The sender signs `"{timestamp}." + body` with HMAC-SHA256 and a shared secret and sends two
headers whose names each partner chooses (e.g. `X-Carrier-Timestamp` / `X-Carrier-Signature`):
    <timestamp header>: <unix seconds>
    <signature header>: sha256=<hex digest>
A request is accepted only if the signature matches (constant-time compare) and the
timestamp is within the tolerance of our clock, so a captured request can't be replayed later.
`CARRIER_SIGNATURE` and `PSP_SIGNATURE` bind the partners' header names (`WebhookSignature`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """Why a request's signature was refused (missing, malformed, wrong, stale)."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}." + body)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_headers(
    secret: bytes,
    timestamp: int,
    body: bytes,
    *,
    timestamp_header: str,
    signature_header: str,
) -> dict[str, str]:
    """The two headers a signed request carries, under the given header names."""
    return {timestamp_header: str(timestamp), signature_header: sign(secret, timestamp, body)}


def verify(
    secret: bytes,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now_s: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise SignatureError unless the headers' values sign `body` recently enough."""
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


@dataclass(frozen=True)
class WebhookSignature:
    """One partner's header names, bound to the generic functions above."""

    timestamp_header: str
    signature_header: str

    def signature_headers(self, secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
        return signature_headers(
            secret,
            timestamp,
            body,
            timestamp_header=self.timestamp_header,
            signature_header=self.signature_header,
        )

    def verify(
        self,
        secret: bytes,
        headers: Mapping[str, str],
        body: bytes,
        now_s: int,
        tolerance_s: int = DEFAULT_TOLERANCE_S,
    ) -> None:
        """Raise SignatureError unless this partner's headers sign `body` recently enough."""
        verify(
            secret,
            headers.get(self.timestamp_header),
            headers.get(self.signature_header),
            body,
            now_s,
            tolerance_s,
        )


# The partners' header names.
CARRIER_SIGNATURE = WebhookSignature("X-Carrier-Timestamp", "X-Carrier-Signature")
PSP_SIGNATURE = WebhookSignature("X-Psp-Timestamp", "X-Psp-Signature")
