"""Which instance answers a request about one key: the pure decision, the partition a key
goes to, and the owners map read from a group description (no broker, no HTTP)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.coordinator.handlers import merged_listings
from services.engine.owner_routing import (
    COVERED_PARTITIONS,
    FORWARDED_BY,
    AnswerHere,
    ForwardTo,
    NotNow,
    OwnerForwarding,
    gathered_from_owners,
    merged_if_complete,
    routed_to_owner,
    where_to_answer,
)
from services.engine.partition_owners import (
    advertising_assignor,
    owners_from_members,
    partition_for,
)
from services.eventing.handler_contract import HttpAnswer, HttpRequest
from services.eventing.request_keys import body_field, path_parameter
from services.returns.handlers import keyed_return_id, return_id_for_key
from services.warehouse_intake.handlers import merged_ledgers

ME, OTHER = "http://10.0.0.1:8083", "http://10.0.0.2:8083"


def test_the_partition_of_a_key_is_the_java_clients():
    # Kafka's UtilsTest: murmur2("21") == -973932308, murmur2("foobar") == -790332482
    assert partition_for("21", 12) == (-973932308 & 0x7FFFFFFF) % 12
    assert partition_for("foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7


@given(st.text(min_size=1, max_size=40), st.integers(1, 64))
def test_the_partition_of_a_key_is_where_the_producer_writes_it(key: str, partitions: int):
    numbers = list(range(partitions))
    assert partition_for(key, partitions) == DefaultPartitioner()(key.encode(), numbers, numbers)


def test_while_partitions_move_the_answer_is_a_503_with_a_reason():
    where = where_to_answer(3, None, OTHER, ME, forwarded=False)
    assert isinstance(where, NotNow) and where.reason == "rebalancing"


def test_the_owner_answers_itself():
    assert where_to_answer(3, frozenset({1, 3}), None, ME, forwarded=False) == AnswerHere()
    assert where_to_answer(3, frozenset({3}), None, ME, forwarded=True) == AnswerHere()


def test_a_non_owner_forwards_to_the_owner_once():
    assert where_to_answer(3, frozenset({1}), OTHER, ME, forwarded=False) == ForwardTo(OTHER)
    again = where_to_answer(3, frozenset({1}), OTHER, ME, forwarded=True)
    assert isinstance(again, NotNow) and again.reason == "not_owner"


def test_an_unknown_owner_or_a_map_naming_this_instance_is_a_503():
    for owner in (None, ME):
        where = where_to_answer(3, frozenset({1}), owner, ME, forwarded=False)
        assert isinstance(where, NotNow) and where.reason == "owner_unknown"


@given(
    st.integers(0, 11),
    st.none() | st.frozensets(st.integers(0, 11)),
    st.none() | st.sampled_from([ME, OTHER]),
    st.booleans(),
)
def test_a_request_is_answered_here_only_by_the_owner(
    partition: int, owned: frozenset[int] | None, owner: str | None, forwarded: bool
):
    where = where_to_answer(partition, owned, owner, ME, forwarded)
    assert isinstance(where, AnswerHere) == (owned is not None and partition in owned)
    if isinstance(where, ForwardTo):
        assert where.url == OTHER and not forwarded


def member(url: str | None, assignment: dict[str, list[int]]) -> tuple[Any, ...]:
    metadata = (
        advertising_assignor(url).metadata(["t"])
        if url
        else ConsumerProtocolMemberMetadata(0, ["t"], b"")
    )
    assigned = ConsumerProtocolMemberAssignment(0, sorted(assignment.items()), b"")
    return ("member-1", "client-1", "/10.0.0.1", metadata.encode(), assigned.encode())


def test_owners_are_read_from_the_members_advertised_addresses():
    members = [
        member(ME, {"t": [0, 1, 2], "other": [0, 1, 2]}),
        member(OTHER, {"t": [3, 4, 5], "other": [3, 4, 5]}),
        member(None, {"t": [6]}),  # an older build advertises nothing
        ("m", "c", "h", b"\x00garbage", b"\x00"),  # bytes that do not decode
    ]
    owners = owners_from_members(members, "t")
    assert owners == {0: ME, 1: ME, 2: ME, 3: OTHER, 4: OTHER, 5: OTHER}


def test_the_advertising_assignor_is_still_the_range_assignor():
    assert advertising_assignor(ME).name == "range"


def test_owner_keys_come_from_the_path_or_the_body():
    request = HttpRequest(b'{"return_id": "RMA-1"}')
    assert path_parameter("return_id")(request, {"return_id": "RMA-2"}) == "RMA-2"
    assert body_field("return_id")(request, {}) == "RMA-1"
    for bad in (b"", b"[1]", b'{"return_id": 5}', b"{"):
        assert body_field("return_id")(HttpRequest(bad), {}) is None


def test_a_new_return_is_owned_by_its_idempotency_keys_return_id():
    request = HttpRequest(b"{}", {"Idempotency-Key": "order-9"})
    assert keyed_return_id(request, {}) == return_id_for_key("order-9")
    assert keyed_return_id(HttpRequest(b"{}"), {}) is None
    assert keyed_return_id(HttpRequest(b"{}", {"Idempotency-Key": ""}), {}) is None


class RecordingForwarding(OwnerForwarding):
    def __init__(self) -> None:
        super().__init__(ME)
        self.sent: list[tuple[str, str, str, HttpRequest]] = []

    async def forward(self, owner_url, method, path, request):  # type: ignore[override]
        self.sent.append((owner_url, method, path, request))
        return HttpAnswer(201, {"forwarded": True})


def routed(
    owned: frozenset[int] | None, forwarding: OwnerForwarding, before_forwarding: Any = None
) -> Any:
    async def handler(request: HttpRequest, **params: str) -> HttpAnswer:
        return HttpAnswer(200, {"here": params})

    async def owner_of(partition: int) -> str | None:
        return OTHER

    return routed_to_owner(
        handler,
        path_parameter("return_id"),
        "POST",
        "/returns/{return_id}/cancel",
        owned=lambda: owned,
        partitions=lambda: 4,
        owner_of=owner_of,
        partition_of=lambda key, count: 3,
        forwarding=forwarding,
        before_forwarding=before_forwarding,
    )


def test_a_routed_handler_answers_forwards_or_refuses():
    forwarding = RecordingForwarding()
    request = HttpRequest(b"{}", {"X": "1"})
    here = asyncio.run(routed(frozenset({3}), forwarding)(request, return_id="RMA 1"))
    assert here.status == 200
    there = asyncio.run(routed(frozenset({1}), forwarding)(request, return_id="RMA 1"))
    assert there.status == 201
    assert forwarding.sent == [(OTHER, "POST", "/returns/RMA%201/cancel", request)]
    bounced = HttpRequest(b"{}", {FORWARDED_BY.lower(): OTHER})
    again = asyncio.run(routed(frozenset({1}), forwarding)(bounced, return_id="RMA-1"))
    assert again.status == 503 and again.headers["Retry-After"] == "1"
    moving = asyncio.run(routed(None, forwarding)(request, return_id="RMA-1"))
    assert moving.status == 503 and moving.body["error"] == "rebalancing"


def part(status: int, body: dict[str, Any], partitions: str | None) -> HttpAnswer:
    headers = {COVERED_PARTITIONS: partitions} if partitions is not None else {}
    return HttpAnswer(status, body, headers)


def test_gathered_parts_are_merged_only_when_they_cover_every_partition_once():
    def added(bodies):
        return {"n": sum(b["n"] for b in bodies)}

    whole = merged_if_complete([part(200, {"n": 1}, "0,1"), part(200, {"n": 2}, "2,3")], 4, added)
    assert (whole.status, whole.body) == (200, {"n": 3})
    for parts in (
        [part(200, {"n": 1}, "0,1"), part(200, {"n": 2}, "1,2,3")],  # partition 1 twice
        [part(200, {"n": 1}, "0,1"), part(200, {"n": 2}, "3")],  # partition 2 missing
        [part(200, {"n": 1}, "0,1,2,3"), part(200, {"n": 2}, None)],  # a part not saying
    ):
        refused = merged_if_complete(parts, 4, added)
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
    failed = part(503, {"error": "recovering"}, None)
    assert merged_if_complete([part(200, {"n": 1}, "0,1"), failed], 4, added) is failed


def gathered(owned: frozenset[int] | None, owners: dict[int, str], forwarding: Any) -> Any:
    async def handler(request: HttpRequest) -> HttpAnswer:
        return HttpAnswer(200, {"counts": {"COMPLETED": 2}, "return_ids": ["RMA-B"]})

    async def all_owners() -> dict[int, str]:
        return owners

    return gathered_from_owners(
        handler,
        merged_listings,
        "GET",
        "/returns",
        owned=lambda: owned,
        partitions=lambda: 4,
        all_owners=all_owners,
        forwarding=forwarding,
    )


class PartForwarding(OwnerForwarding):
    async def forward(self, owner_url, method, path, request):  # type: ignore[override]
        assert path == "/returns"
        body = {"counts": {"COMPLETED": 1, "FAILED": 1}, "return_ids": ["RMA-A"]}
        return part(200, body, "2,3")


def test_a_listing_is_gathered_from_every_owner():
    forwarding = PartForwarding(ME)
    owners = {0: ME, 1: ME, 2: OTHER, 3: OTHER}
    whole = asyncio.run(gathered(frozenset({0, 1}), owners, forwarding)(HttpRequest()))
    assert whole.status == 200
    assert whole.body == {"counts": {"COMPLETED": 3, "FAILED": 1}, "return_ids": ["RMA-A", "RMA-B"]}
    unowned = asyncio.run(gathered(frozenset({0, 1}), {2: OTHER}, forwarding)(HttpRequest()))
    assert unowned.status == 503 and unowned.body["error"] == "owner_unknown"
    alone = asyncio.run(gathered(frozenset({0, 1, 2, 3}), {}, forwarding)(HttpRequest()))
    assert alone.body["counts"] == {"COMPLETED": 2}
    asked = HttpRequest(b"", {FORWARDED_BY: OTHER})
    mine = asyncio.run(gathered(frozenset({0, 1}), owners, forwarding)(asked))
    assert mine.headers[COVERED_PARTITIONS] == "0,1"
    moving = asyncio.run(gathered(None, owners, forwarding)(HttpRequest()))
    assert moving.status == 503


def test_ledgers_of_every_instance_merge_into_one():
    first = {
        "entries": [{"sku": "B", "location": "WH-1/STOCK", "on_hand": 2}],
        "movements_applied": 3,
        "duplicates_ignored": 1,
        "units_on_hand": 2,
    }
    second = {
        "entries": [{"sku": "A", "location": "WH-1/STOCK", "on_hand": 1}],
        "movements_applied": 1,
        "duplicates_ignored": 0,
        "units_on_hand": 1,
    }
    whole = merged_ledgers([first, second])
    assert [row["sku"] for row in whole["entries"]] == ["A", "B"]
    assert (whole["movements_applied"], whole["duplicates_ignored"], whole["units_on_hand"]) == (
        4,
        1,
        3,
    )


def test_an_instance_owning_every_partition_answers_without_reading_the_key():
    def unread_key(request: HttpRequest, params: Any) -> str | None:
        raise AssertionError("the key was read")

    async def handler(request: HttpRequest) -> HttpAnswer:
        return HttpAnswer(202, {"here": True})

    async def owner_of(partition: int) -> str | None:
        return None

    answer = routed_to_owner(
        handler,
        unread_key,
        "POST",
        "/inspections",
        owned=lambda: frozenset(range(4)),
        partitions=lambda: 4,
        owner_of=owner_of,
        forwarding=RecordingForwarding(),
    )
    assert asyncio.run(answer(HttpRequest(b"{}"))).status == 202


def test_a_request_to_forward_may_be_answered_where_it_landed_instead():
    """Admission refuses a new return on the instance it landed on: no forward is paid."""
    forwarding = RecordingForwarding()
    refused = HttpAnswer(503, {"error": "overloaded"}, {"Retry-After": "1"})
    gate_saw: list[HttpRequest] = []

    def before_forwarding(request: HttpRequest) -> HttpAnswer | None:
        gate_saw.append(request)
        return refused

    request = HttpRequest(b"{}")
    answer = asyncio.run(
        routed(frozenset({1}), forwarding, before_forwarding)(request, return_id="R")
    )
    assert answer is refused and forwarding.sent == [] and gate_saw == [request]
    owner = asyncio.run(
        routed(frozenset({3}), forwarding, before_forwarding)(request, return_id="R")
    )
    assert owner.status == 200 and len(gate_saw) == 1  # the owner's handler decides itself
