"""Scanner authentication: station tokens, 401 for no/unknown token, 403 for another station."""

from __future__ import annotations

import pytest

from services.eventing.request_fields import ApiError
from services.inspection.station_auth import (
    authenticate,
    authorize_station,
    parse_station_tokens,
)

TOKEN_1 = "station-one-token-0001"
TOKEN_2 = "station-two-token-0002"
TOKENS = {"ST-1": TOKEN_1, "ST-2": TOKEN_2}


def refused(tokens: dict[str, str], authorization: str | None) -> ApiError:
    with pytest.raises(ApiError) as info:
        authenticate(tokens, authorization)
    return info.value


# ------------------------------------------------------------------ parse_station_tokens


def test_comma_separated_tokens_are_parsed() -> None:
    assert parse_station_tokens(f"ST-1:{TOKEN_1},ST-2:{TOKEN_2}") == TOKENS


def test_json_tokens_are_parsed() -> None:
    assert parse_station_tokens(f'{{"ST-1": "{TOKEN_1}", "ST-2": "{TOKEN_2}"}}') == TOKENS


def test_whitespace_around_stations_and_tokens_is_stripped() -> None:
    assert parse_station_tokens(f"  ST-1 : {TOKEN_1} ,\n ST-2:{TOKEN_2}  ") == TOKENS


def test_whitespace_in_json_values_is_stripped() -> None:
    assert parse_station_tokens(f'  {{" ST-1 ": " {TOKEN_1} "}}') == {"ST-1": TOKEN_1}


def test_empty_items_between_commas_are_skipped() -> None:
    assert parse_station_tokens(f"ST-1:{TOKEN_1},, ,ST-2:{TOKEN_2},") == TOKENS


def test_token_may_contain_colons() -> None:
    assert parse_station_tokens("ST-1:abc:def:ghi:jklmnopq") == {"ST-1": "abc:def:ghi:jklmnopq"}


@pytest.mark.parametrize("raw", ["", "   ", "\n"])
def test_empty_configuration_gives_no_tokens(raw: str) -> None:
    assert parse_station_tokens(raw) == {}


def test_sixteen_character_token_is_accepted() -> None:
    assert parse_station_tokens("ST-1:" + "x" * 16) == {"ST-1": "x" * 16}


def test_short_token_is_refused_naming_its_station() -> None:
    with pytest.raises(ValueError, match="ST-2"):
        parse_station_tokens(f"ST-1:{TOKEN_1},ST-2:" + "x" * 15)


def test_short_token_in_json_is_refused() -> None:
    with pytest.raises(ValueError, match="ST-1"):
        parse_station_tokens('{"ST-1": "short"}')


def test_token_padded_to_sixteen_with_whitespace_is_refused() -> None:
    with pytest.raises(ValueError, match="ST-1"):
        parse_station_tokens("ST-1:   short-token    ")


def test_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="ST-1"):
        parse_station_tokens("ST-1:")


def test_malformed_json_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_station_tokens('{"ST-1": ')


def test_item_without_a_colon_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_station_tokens(f"ST-1:{TOKEN_1},ST-2")


def test_the_development_tokens_parse() -> None:
    tokens = parse_station_tokens("ST-1:dev-station-token-0001,ST-2:dev-station-token-0002")
    assert set(tokens) == {"ST-1", "ST-2"}


# ------------------------------------------------------------------ authenticate


def test_right_token_authenticates_its_station() -> None:
    assert authenticate(TOKENS, f"Bearer {TOKEN_1}") == "ST-1"
    assert authenticate(TOKENS, f"Bearer {TOKEN_2}") == "ST-2"


def test_whitespace_after_the_token_is_ignored() -> None:
    assert authenticate(TOKENS, f"Bearer  {TOKEN_1} ") == "ST-1"


@pytest.mark.parametrize("authorization", [None, ""])
def test_missing_authorization_is_401(authorization: str | None) -> None:
    error = refused(TOKENS, authorization)
    assert error.status == 401
    assert error.code == "unauthenticated"


@pytest.mark.parametrize(
    "authorization",
    [TOKEN_1, f"Basic {TOKEN_1}", f"bearer {TOKEN_1}", f"BEARER {TOKEN_1}", f"Bearer{TOKEN_1}"],
    ids=["bare-token", "basic", "lowercase-bearer", "uppercase-bearer", "no-space"],
)
def test_authorization_that_is_not_bearer_is_401(authorization: str) -> None:
    error = refused(TOKENS, authorization)
    assert error.status == 401
    assert "Bearer" in error.detail


@pytest.mark.parametrize(
    "presented",
    [
        "unknown-token-000000",
        TOKEN_1[:-1],
        TOKEN_1 + "x",
        TOKEN_1.upper(),
        "",
        "ST-1",
        "tökén-with-ümlauts-0001",
    ],
    ids=["unknown", "prefix", "longer", "case", "empty", "station-name", "non-ascii"],
)
def test_unknown_token_is_401(presented: str) -> None:
    error = refused(TOKENS, f"Bearer {presented}")
    assert error.status == 401
    assert error.detail == "unknown scanner token"


def test_no_configured_tokens_refuse_everyone() -> None:
    assert refused({}, f"Bearer {TOKEN_1}").status == 401


# ------------------------------------------------------------------ authorize_station


def test_token_of_the_claimed_station_is_authorized() -> None:
    authorize_station(authenticate(TOKENS, f"Bearer {TOKEN_1}"), "ST-1")


def test_token_of_another_station_is_403() -> None:
    station = authenticate(TOKENS, f"Bearer {TOKEN_2}")
    with pytest.raises(ApiError) as info:
        authorize_station(station, "ST-1")
    assert info.value.status == 403
    assert info.value.code == "wrong_station"
    assert "ST-1" in info.value.detail


@pytest.mark.parametrize("claimed", ["st-1", "ST-1 ", "ST-10", "", "ST-é"])
def test_station_ids_must_match_exactly(claimed: str) -> None:
    with pytest.raises(ApiError) as info:
        authorize_station("ST-1", claimed)
    assert info.value.status == 403
