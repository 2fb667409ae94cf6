"""A buyer's personal data: masked in the coordinator's view, erased from a saga once its
return ended (ids kept), pseudonymised in the risk service; the front door's erasure route
asks every return of the buyer's."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from services.decisions.risk.return_features import address_key
from services.decisions.saga import decide
from services.decisions.saga.personal_data import ERASED, masked_request
from services.decisions.saga.views import status_view
from services.eventing.handler_contract import HttpRequest
from services.eventing.request_fields import ApiError
from services.returns import handlers
from tests.support.buyer_signin import bearer
from tests.support.return_events import event
from tests.unit.test_handlers_returns import NOW, create, ports
from tests.unit.test_saga import HAPPY_PATH

RID = "RMA-PII-1"
ACCOUNT = {"holder": "Erika Mustermann", "number": "DE89370400440532013000", "bank_code": "COBA"}


def test_the_view_shows_no_address_account_or_name_in_clear():
    request = {
        "buyer_id": "B-1",
        "pickup_address": "Musterstrasse 1, 10115 Berlin",
        "refund_account": ACCOUNT,
        "order": {"order_ref": "O-1", "pickup_address": "Musterstrasse 1, 10115 Berlin"},
    }
    shown = masked_request(request)
    assert shown["pickup_address"] == "•••, 10115 Berlin"
    assert shown["refund_account"]["number"] == "****3000"
    assert shown["refund_account"]["holder"] == "E•••"
    assert "Musterstrasse" not in str(shown) and "Mustermann" not in str(shown)
    assert shown["buyer_id"] == "B-1"


def run(names, clock):
    state = None
    for name in names:
        state = decide(state, name, event(name, RID), next(clock)).state
    return state


def erasure(clock, state):
    record = event("PersonalDataErasureRequested", RID, envelope={"event_id": "erase-1"})
    return decide(state, "PersonalDataErasureRequested", record, next(clock)).state


def test_an_erasure_asked_while_the_return_runs_applies_when_it_ends():
    clock = itertools.count(1_800_000_000_000, 10)
    names = [name for name, *_ in HAPPY_PATH]
    running = run(names[:3], clock)
    noted = erasure(clock, running)
    assert noted.request["erasure"]["requested_by"] == "buyer"
    assert "erased_at" not in noted.request["erasure"]
    assert noted.request["pickup_address"] != ERASED  # the pickup still needs it
    state = noted
    for name in names[3:]:
        state = decide(state, name, event(name, RID), next(clock)).state
    assert state.terminal
    assert state.request["pickup_address"] == ERASED and state.request["erasure"]["erased_at"]
    assert state.request["buyer_id"] and state.request["order_ref"]  # ids stay
    view = status_view(state)
    assert view["request"]["pickup_address"] == ERASED


def test_an_erasure_of_an_ended_return_applies_at_once():
    clock = itertools.count(1_800_000_000_000, 10)
    ended = run([name for name, *_ in HAPPY_PATH], clock)
    assert ended.terminal
    erased = erasure(clock, ended)
    assert erased.request["pickup_address"] == ERASED
    again = decide(
        erased,
        "PersonalDataErasureRequested",
        event("PersonalDataErasureRequested", RID, envelope={"event_id": "erase-1"}),
        next(clock),
    )
    assert again.duplicate


def test_risk_keeps_addresses_by_pseudonym_only():
    key = address_key("Musterstrasse 1, Berlin")
    assert key.startswith("addr:") and "muster" not in key
    assert key == address_key("MUSTERSTRASSE 1 berlin") == address_key(key)


def test_the_front_door_asks_every_return_of_the_buyer():
    wired = ports()
    first = create(wired, key="k-1").body["return_id"]
    second = create(wired, key="k-2", order_ref="ORD-2").body["return_id"]
    fresh = HttpRequest(b"", bearer("B-1", NOW))
    answer = asyncio.run(handlers.erase_buyer(wired, fresh, "B-1"))
    assert answer.body == {"buyer_id": "B-1", "returns": sorted([first, second]), "requested": 2}
    asked = [r for n, r, *_ in wired.publish.records if n == "PersonalDataErasureRequested"]
    assert {r["envelope"]["return_id"] for r in asked} == {first, second}
    stale = HttpRequest(b"", bearer("B-1", NOW, NOW - 600_000))
    with pytest.raises(ApiError) as refused:
        asyncio.run(handlers.erase_buyer(wired, stale, "B-1"))
    assert (refused.value.status, refused.value.code) == (401, "fresh_sign_in_required")
    other = HttpRequest(b"", bearer("B-2", NOW))
    with pytest.raises(ApiError) as forbidden:
        asyncio.run(handlers.erase_buyer(wired, other, "B-1"))
    assert forbidden.value.status == 403
    agent = HttpRequest(b"", bearer("AGENT-1", NOW, NOW - 86_400_000, role="support"))
    assert asyncio.run(handlers.erase_buyer(wired, agent, "B-1")).body["requested"] == 2
    merged = handlers.merged_erasures(
        [answer.body, {"buyer_id": "B-1", "returns": [], "requested": 0}]
    )
    assert merged == answer.body
