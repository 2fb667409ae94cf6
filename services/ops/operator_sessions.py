"""Operators sign in with their token (named, like the reviewers': `name:token,...`) and get
a session cookie: `name.expiry.signature`, HMAC-SHA256 under the service's session secret,
HttpOnly and SameSite=Strict, valid for OPS_SESSION_HOURS. A script may send the token as
`Authorization: Bearer` instead. Nothing a buyer can see is served without one of them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

COOKIE = "boomerang_ops_session"


@dataclass(frozen=True)
class OperatorSessions:
    tokens: Mapping[str, str]  # operator name → token
    secret: bytes
    lifetime_ms: int

    def holder_of_token(self, token: str) -> str | None:
        """Whose token this is (compared in constant time against every one), or None."""
        found = None
        for name, known in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                found = name
        return found

    def cookie_for(self, operator: str, now_ms: int) -> str:
        expires = now_ms + self.lifetime_ms
        body = f"{_encoded(operator)}.{expires}"
        return f"{body}.{self._signature(body)}"

    def operator_of_cookie(self, cookie: str | None, now_ms: int) -> str | None:
        """The signed-in operator, or None for no cookie, a forged one or an expired one (or
        one of an operator whose token was since removed)."""
        if not cookie or cookie.count(".") != 2:
            return None
        name, expires, signature = cookie.split(".")
        body = f"{name}.{expires}"
        if not hmac.compare_digest(signature.encode(), self._signature(body).encode()):
            return None
        if not expires.isdigit() or int(expires) <= now_ms:
            return None
        operator = _decoded(name)
        return operator if operator in self.tokens else None

    def operator_of(self, cookie: str | None, authorization: str | None, now_ms: int) -> str | None:
        if authorization and authorization.startswith("Bearer "):
            return self.holder_of_token(authorization.removeprefix("Bearer "))
        return self.operator_of_cookie(cookie, now_ms)

    def _signature(self, body: str) -> str:
        digest = hmac.new(self.secret, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decoded(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""
