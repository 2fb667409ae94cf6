"""Scanner authentication (pure): one bearer token per station, compared in constant time.

No or an unknown token → 401. A valid token used for another station's `station_id` → 403.
"""

from __future__ import annotations

import hmac

from services.eventing.named_tokens import parse_named_tokens, token_holder
from services.eventing.request_fields import ApiError


def parse_station_tokens(raw: str) -> dict[str, str]:
    """`{"ST-1": "token"}` as JSON, or `ST-1:token,ST-2:token`."""
    return parse_named_tokens(raw, "station")


def authenticate(tokens: dict[str, str], authorization: str | None) -> str:
    """The station a bearer token belongs to; ApiError(401) otherwise."""
    return token_holder(tokens, authorization, "station", "unknown scanner token")


def authorize_station(authenticated_station: str, claimed_station: str) -> None:
    if not hmac.compare_digest(authenticated_station.encode(), claimed_station.encode()):
        raise ApiError(
            403, "wrong_station", f"this token belongs to another station than {claimed_station!r}"
        )
