"""The marketplace's token-signing keys (`GET /.well-known/jwks.json` at MARKETPLACE_URL),
and the check of a request's bearer token with them (marketplace_tokens.py).

The key set is fetched on first use and kept; a token naming a key the set lacks (the
marketplace rotated its keys) fetches it again, at most once every REFETCH_S, so a flood
of tokens with made-up key ids costs one call, not one each. No answer, or an unreadable
set, is `TokenKeysUnavailable`: the request is answered 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jwt

from services.eventing.marketplace_tokens import (
    Caller,
    TokenTerms,
    bearer_token,
    caller_of,
    key_id_of,
)
from services.eventing.partner_http import PartnerHttp, PartnerUnreachable

JWKS_PATH = "/.well-known/jwks.json"
REFETCH_S = 30.0
MAX_KEYS = 20


class TokenKeysUnavailable(Exception):
    """The marketplace's key set could not be read: nobody's token can be checked now."""


def signing_keys(jwks: Any) -> dict[str, Any]:
    """kid → public key of the RS256 signing keys of a JWKS document (others ignored)."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("not a JWKS document: no `keys` list")
    keys: dict[str, Any] = {}
    for entry in jwks["keys"][:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK.from_dict(entry, algorithm="RS256").key
        except jwt.PyJWKError as exc:
            raise ValueError(f"key {entry['kid'][:40]!r} is unreadable: {exc}") from exc
    return keys


class MarketplaceKeys:
    def __init__(self, http: PartnerHttp, clock_s: Callable[[], float]) -> None:
        self.http = http
        self.clock_s = clock_s
        self._keys: Mapping[str, Any] | None = None
        self._fetched_at = float("-inf")

    async def aclose(self) -> None:
        await self.http.aclose()

    async def keys(self, missing_key_id: str | None = None) -> Mapping[str, Any]:
        """The key set; fetched again when it lacks `missing_key_id` and the last fetch is
        older than REFETCH_S."""
        stale = missing_key_id is not None and self.clock_s() - self._fetched_at >= REFETCH_S
        if self._keys is None or stale:
            self._fetched_at = self.clock_s()
            self._keys = await self._fetch()
        return self._keys

    async def _fetch(self) -> Mapping[str, Any]:
        try:
            response = await self.http.request("GET", JWKS_PATH)
        except PartnerUnreachable as exc:
            raise TokenKeysUnavailable(f"no answer: {exc}") from exc
        if response.status_code != 200:
            raise TokenKeysUnavailable(f"HTTP {response.status_code}")
        try:
            return signing_keys(response.json())
        except ValueError as exc:
            raise TokenKeysUnavailable(f"an unreadable key set: {exc}") from exc


class BearerCheck:
    """`await check(authorization_header, now_s)` → the Caller, or TokenRefused."""

    def __init__(self, keys: MarketplaceKeys, terms: TokenTerms) -> None:
        self.key_set = keys
        self.terms = terms

    async def __call__(self, authorization: str | None, now_s: int) -> Caller:
        token = bearer_token(authorization)
        key_id = key_id_of(token)
        keys = await self.key_set.keys()
        if key_id not in keys:
            keys = await self.key_set.keys(missing_key_id=key_id)
        return caller_of(token, keys, self.terms, now_s)  # UnknownSigningKey is a 401 too
