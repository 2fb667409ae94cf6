"""Buyers and support agents signed in for the front door's tests without the marketplace:
tokens signed by one key made for the test session, checked as the service checks them
(the same `caller_of`, with the key set as the marketplace's JWKS would give it)."""

from __future__ import annotations

from functools import cache

from services.eventing.marketplace_keys import signing_keys
from services.eventing.marketplace_tokens import Caller, TokenTerms, bearer_token, caller_of
from services.tools.partners.buyer_token_issuer import BuyerTokenIssuer, signing_key

TERMS = TokenTerms()


@cache
def issuer() -> BuyerTokenIssuer:
    return BuyerTokenIssuer(signing_key(None))


@cache
def _keys() -> dict:
    return signing_keys(issuer().jwks())


async def authenticate(authorization: str | None, now_s: int) -> Caller:
    """ReturnsPorts.authenticate with the test session's key."""
    return caller_of(bearer_token(authorization), _keys(), TERMS, now_s)


def bearer(
    subject: str, now_ms: int, signed_in_at_ms: int | None = None, role: str = "buyer"
) -> dict[str, str]:
    """The Authorization header of `subject`, signed in at `signed_in_at_ms` (now)."""
    signed_in_s = None if signed_in_at_ms is None else signed_in_at_ms // 1000
    token = issuer().issue(subject, role, signed_in_s, now_s=now_ms // 1000)
    return {"Authorization": f"Bearer {token}"}
