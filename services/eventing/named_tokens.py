"""Bearer tokens that each name their holder (a scanner station, a reviewer), pure: parsed
from configuration, compared in constant time against every token.
"""

from __future__ import annotations

import hmac
import json

from services.eventing.request_fields import ApiError

MIN_TOKEN_LENGTH = 16


def parse_named_tokens(raw: str, holders: str) -> dict[str, str]:
    """`{"name": "token"}` as JSON, or `name:token,name:token`; every token at least 16
    characters (`holders` names them in the error, e.g. "station")."""
    raw = raw.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        tokens = json.loads(raw)
    else:
        tokens = dict(item.split(":", 1) for item in raw.split(",") if item.strip())
    tokens = {name.strip(): token.strip() for name, token in tokens.items()}
    weak = [name for name, token in tokens.items() if len(token) < MIN_TOKEN_LENGTH]
    if weak:
        raise ValueError(
            f"{holders} tokens must be at least {MIN_TOKEN_LENGTH} characters: {', '.join(weak)}"
        )
    return tokens


def token_holder(
    tokens: dict[str, str], authorization: str | None, holder: str, unknown: str = ""
) -> str:
    """Whose bearer token this is; ApiError(401) for none or an unknown one (`unknown`: its
    detail, "unknown <holder> token" by default)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "unauthenticated", f"send Authorization: Bearer <{holder} token>")
    presented = authorization.removeprefix("Bearer ").strip().encode()
    found = None
    for name, token in tokens.items():  # compare against every token: no early exit
        if hmac.compare_digest(presented, token.encode()):
            found = name
    if found is None:
        raise ApiError(401, "unauthenticated", unknown or f"unknown {holder} token")
    return found
