"""Who may read which statements: a seller with a token the marketplace issued for it sees
its own statements only; finance (a token from SETTLEMENT_FINANCE_TOKENS) sees all.

A seller token is `st1.<seller id, base64url>.<expiry ms>.<HMAC-SHA256, base64url>`, signed
with the secret the marketplace and settlement share (SELLER_TOKEN_SECRET): settlement checks
it without asking anyone. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

PREFIX = "st1"
FINANCE = "finance"


class AccessDenied(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def issue_seller_token(secret: str, seller_id: str, expires_ms: int) -> str:
    body = f"{PREFIX}.{_b64(seller_id.encode())}.{expires_ms}"
    return f"{body}.{_signature(secret, body)}"


def seller_of_token(secret: str, token: str, now_ms: int) -> str:
    """The seller a valid, unexpired token was issued for; AccessDenied(401) otherwise."""
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not secret:
        raise AccessDenied(401, "not a seller token")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3].encode(), _signature(secret, body).encode()):
        raise AccessDenied(401, "the token's signature is wrong")
    try:
        seller_id, expires_ms = _unb64(parts[1]).decode(), int(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise AccessDenied(401, "a malformed seller token") from None
    if expires_ms <= now_ms:
        raise AccessDenied(401, "the token has expired")
    return seller_id


@dataclass(frozen=True)
class Reader:
    """Who is asking: finance, or one seller."""

    seller_id: str | None  # None: finance

    @property
    def is_finance(self) -> bool:
        return self.seller_id is None

    def may_read(self, seller_id: str) -> bool:
        return self.is_finance or self.seller_id == seller_id


@dataclass(frozen=True)
class AccessSettings:
    seller_secret: str
    finance_tokens: tuple[str, ...]

    @classmethod
    def from_env(cls) -> AccessSettings:
        tokens = os.environ.get("SETTLEMENT_FINANCE_TOKENS", "")
        return cls(
            os.environ.get("SELLER_TOKEN_SECRET", ""),
            tuple(t.strip() for t in tokens.split(",") if t.strip()),
        )

    def reader(self, authorization: str | None, now_ms: int) -> Reader:
        """The reader a request's `Authorization: Bearer …` names; AccessDenied(401) when
        it names nobody."""
        if not authorization or not authorization.startswith("Bearer "):
            raise AccessDenied(401, "an Authorization: Bearer token is required")
        token = authorization.removeprefix("Bearer ").strip()
        if any(
            hmac.compare_digest(token.encode(), known.encode()) for known in self.finance_tokens
        ):
            return Reader(None)
        return Reader(seller_of_token(self.seller_secret, token, now_ms))
