"""Scanner authentication (pure): one bearer token per station, compared in constant time.

No or an unknown token → 401. A valid token used for another station's `station_id` → 403.
"""

from __future__ import annotations

import hmac
import json

from services.eventing.request_fields import ApiError


def parse_station_tokens(raw: str) -> dict[str, str]:
    """`{"ST-1": "token"}` as JSON, or `ST-1:token,ST-2:token`."""
    raw = raw.strip()
    if not raw:
        return {}
    if raw.startswith("{"):
        tokens = json.loads(raw)
    else:
        tokens = dict(item.split(":", 1) for item in raw.split(",") if item.strip())
    tokens = {station.strip(): token.strip() for station, token in tokens.items()}
    weak = [station for station, token in tokens.items() if len(token) < 16]
    if weak:
        raise ValueError(f"station tokens must be at least 16 characters: {', '.join(weak)}")
    return tokens


def authenticate(tokens: dict[str, str], authorization: str | None) -> str:
    """The station a bearer token belongs to; ApiError(401) otherwise."""
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <station token>")
    presented = authorization.removeprefix("Bearer ").strip().encode()
    station_found = None
    for station, token in tokens.items():  # compare against every token: no early exit
        if hmac.compare_digest(presented, token.encode()):
            station_found = station
    if station_found is None:
        raise ApiError(401, "unauthenticated", "unknown scanner token")
    return station_found


def authorize_station(authenticated_station: str, claimed_station: str) -> None:
    if not hmac.compare_digest(authenticated_station.encode(), claimed_station.encode()):
        raise ApiError(
            403, "wrong_station", f"this token belongs to another station than {claimed_station!r}"
        )
