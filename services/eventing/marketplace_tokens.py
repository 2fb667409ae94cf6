"""Who is calling the front door: a bearer token the marketplace signed (an RS256 JWT whose
key is in the marketplace's JWKS), read into a Caller.

A buyer's token names the buyer (`sub`) and when they signed in (`auth_time`, seconds, as
OpenID Connect has it); a support agent's carries `role: "support"`. The issuer and the
audience must be the ones configured (TokenTerms), the token not expired (a small leeway
for clocks), signed by a key of the set given. No I/O here: the keys are fetched by the
adapter (marketplace_keys.py) and passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jwt

BUYER = "buyer"
SUPPORT = "support"
ROLES = (BUYER, SUPPORT)
ALGORITHM = "RS256"
MAX_TOKEN_BYTES = 8_192
MAX_SUBJECT_LEN = 64

Role = Literal["buyer", "support"]


@dataclass(frozen=True)
class TokenTerms:
    issuer: str = "https://marketplace.local"
    audience: str = "boomerang-returns"
    leeway_s: int = 30
    fresh_sign_in_s: int = 300  # a bank account is changed only this soon after signing in


@dataclass(frozen=True)
class Caller:
    subject: str  # the buyer's id, or the support agent's
    role: Role
    signed_in_at_s: int
    token_id: str

    def signed_in_within(self, seconds: int, now_s: int) -> bool:
        return now_s - self.signed_in_at_s <= seconds

    @property
    def is_buyer(self) -> bool:
        return self.role == BUYER


class TokenRefused(Exception):
    """401: no token, or one that does not prove who is calling (`reason` is the code)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class UnknownSigningKey(TokenRefused):
    """The token names a key id the key set lacks: the caller may fetch the set again."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            "invalid_token", f"the token's key {key_id[:40]!r} is not the marketplace's"
        )
        self.key_id = key_id


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header."""
    if not authorization:
        raise TokenRefused(
            "missing_token", "send Authorization: Bearer <token from the marketplace>"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRefused("invalid_token", "the Authorization header is not `Bearer <token>`")
    token = token.strip()
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenRefused("invalid_token", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
    return token


def key_id_of(token: str) -> str:
    """The `kid` the token's header names (which key of the set verifies it)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRefused("invalid_token", f"not a signed token: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenRefused("invalid_token", f"the token is not signed with {ALGORITHM}")
    key_id = header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise TokenRefused("invalid_token", "the token's header names no key (kid)")
    return key_id


def caller_of(token: str, keys: Mapping[str, Any], terms: TokenTerms, now_s: int) -> Caller:
    """The caller a token proves, with `keys` (kid → public key) from the marketplace's
    JWKS. UnknownSigningKey when the key is not in the set; TokenRefused otherwise."""
    key_id = key_id_of(token)
    key = keys.get(key_id)
    if key is None:
        raise UnknownSigningKey(key_id)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=terms.audience,
            issuer=terms.issuer,
            leeway=terms.leeway_s,
            # the times are checked against `now_s` below, not the machine's clock
            options={
                "require": ["exp", "iat", "sub", "auth_time", "jti"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidTokenError as exc:
        raise TokenRefused("invalid_token", f"the token is refused: {exc}") from exc
    return _caller(claims, terms, now_s)


def _caller(claims: Mapping[str, Any], terms: TokenTerms, now_s: int) -> Caller:
    subject, auth_time, token_id = claims["sub"], claims["auth_time"], claims["jti"]
    expires = claims["exp"]
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise TokenRefused("invalid_token", "the token's exp is not a number of seconds")
    if expires + terms.leeway_s <= now_s:
        raise TokenRefused("token_expired", "the token has expired; sign in again")
    role = claims.get("role", BUYER)
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LEN:
        raise TokenRefused("invalid_token", "the token's subject is not an id")
    if role not in ROLES:
        raise TokenRefused("invalid_token", f"the token's role is not one of {list(ROLES)}")
    if isinstance(auth_time, bool) or not isinstance(auth_time, int):
        raise TokenRefused("invalid_token", "the token's auth_time is not a number of seconds")
    if auth_time > now_s + terms.leeway_s:
        raise TokenRefused("invalid_token", "the token says its holder signed in in the future")
    if not isinstance(token_id, str) or not 0 < len(token_id) <= 128:
        raise TokenRefused("invalid_token", "the token's jti is not an id")
    return Caller(subject, role, auth_time, token_id)
