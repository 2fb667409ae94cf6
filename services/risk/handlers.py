"""The risk service's handlers around the pure risk core (services/decisions/risk).

- **Counting** (`count_return_events`, `count_orders`): each order, accepted return and
  inspection the saga rejects becomes increments, one `RiskCounted` per `subject:key`,
  published keyed by that key (repartitioned).
- **Windows** (`fold_counts`): the owner of a key's partition adds its increments to the
  key's rolling counts (`windows` table; a re-published increment counts once).
- **Deciding** (`decide_return`): the saga's `RiskCheckRequested` is decided over the
  windows of the return's buyer, seller, address and order (every key, read through a
  global table of the windows' changelog) by the live rule set, and by the shadow set beside
  it (recorded, never acted on); the answer is `RiskDecided`, then the inspection is counted.
  A check asked again gets the first answer again.
- **Reviews** (`cases` view, folded from the service's own `risk.events`): the HTTP API lists
  and shows the cases and takes reviewers' verdicts (`RiskReviewDecided`), authenticated,
  audited and idempotent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from services.decisions.folded_events import unfolded
from services.decisions.risk.count_records import (
    Increment,
    add_increment,
    inspection_increments,
    order_increments,
    return_increments,
    window_of,
)
from services.decisions.risk.return_features import address_key
from services.decisions.risk.review_cases import (
    MAX_REASON,
    MIN_REASON,
    VerdictRefused,
    reason_is_given,
    verdict_is_new,
)
from services.decisions.risk.risk_check import (
    REQUEST_FIELDS,
    counted_after,
    decide_check,
    decided_body,
    request_of,
    windows_needed,
)
from services.decisions.risk.rolling_counts import day_of
from services.decisions.risk.rule_sets import RuleSet
from services.decisions.risk.seller_governance import (
    SEGMENT_PREFIX,
    SELLER_PREFIX,
    peers_of,
    segments,
    standings_due,
)
from services.decisions.risk.seller_standing import GovernanceTerms
from services.decisions.risk.standing_policy import BUYER_TIGHTENED_DAYS
from services.decisions.saga.forward import inspection_problem
from services.eventing.envelope import deterministic_event_id, new_envelope
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound, Publish
from services.eventing.keyed_locks import KeyedLocks
from services.eventing.log_setup import event_context, get_logger
from services.eventing.named_tokens import token_holder
from services.eventing.request_fields import ApiError, parse_json_object
from services.risk import risk_metrics

SERVICE = "risk"
REQUEST_KEPT = (*REQUEST_FIELDS, "lines")  # what counting a return reads
CASES_LISTED = 500
VERDICTS_REMEMBERED = 10_000
log = get_logger(__name__)

AuditWriter = Callable[[dict[str, Any]], Awaitable[None]]


def pseudonymous(request: dict[str, Any]) -> dict[str, Any]:
    """A request as the risk service keeps it: the pickup address by its pseudonym only
    (address_key), as it counts it."""
    if not request.get("pickup_address"):
        return request
    return {**request, "pickup_address": address_key(str(request["pickup_address"]))}


@dataclass
class RiskPorts:
    returns: MutableMapping[str, Any]  # table: return_id → its request, what was counted
    orders: MutableMapping[str, Any]  # table: order_ref → counted
    windows: MutableMapping[str, Any]  # table: subject:key → rolling counts and stamps
    cases: MutableMapping[str, Any]  # view: return_id → decision, shadow, verdict
    all_windows: Callable[[], Awaitable[Mapping[str, Any]]]  # every key's entry, caught up
    live: RuleSet
    shadow: RuleSet | None
    reviewer_tokens: dict[str, str]
    publish: Publish
    audit: AuditWriter
    clock_ms: Callable[[], int]
    review_hours: int = 48
    standings: MutableMapping[str, Any] = field(default_factory=dict)  # view: seller|market
    judges: Callable[[str, str], bool] = lambda seller_id, market: True  # this instance?
    terms: GovernanceTerms = field(default_factory=GovernanceTerms)
    # verdicts published by this instance, not yet folded back into `cases`
    verdicts_sent: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)
    locks: KeyedLocks = field(default_factory=KeyedLocks)


# ------------------------------------------------------------------------------ counting


def _counted(
    increments: Sequence[Increment], incoming: Incoming, counted_as: str, source_id: str
) -> list[Outbound]:
    """One RiskCounted per key, its id derived from what was counted (`counted_as`, e.g.
    `return-accepted`, and the return or order id): the same event counted again has the
    same ids."""
    source = f"{incoming.topic}:{incoming.partition}"
    return [
        (
            "RiskCounted",
            counted_record(
                inc,
                source_id,
                deterministic_event_id(source_id, "risk-counted", counted_as, inc.table_key),
                source,
                incoming.offset,
            ),
            inc.table_key.encode(),
        )
        for inc in increments
    ]


def counted_record(
    increment: Increment, source_id: str, event_id: str, source: str, source_offset: int
) -> dict[str, Any]:
    """The RiskCounted record of one increment (`source_id`: the return or order it came
    from, `source` and `source_offset`: the input record, its stamp)."""
    return {
        "envelope": new_envelope(
            "RiskCounted",
            source_id,
            SERVICE,
            event_id=event_id,
            correlation_id=source_id,
            occurred_at=increment.at_ms,
        ),
        "subject": increment.subject,
        "key": increment.key,
        "at": increment.at_ms,
        "counts": increment.counts,
        "members": increment.members,
        "source": source,
        "source_offset": source_offset,
    }


def _first_count(returns: MutableMapping[str, Any], return_id: str, what: str) -> bool:
    """Note that `what` of the return is counted; False when it was before."""
    entry = returns.get(return_id)
    if entry is None or what in entry["counted"]:
        return False
    returns[return_id] = {**entry, "counted": [*entry["counted"], what]}
    return True


async def count_return_events(ports: RiskPorts, incoming: Incoming) -> list[Outbound]:
    """Accepted returns, and inspections the saga rejects (no risk check follows them); each
    counted once per return, however often its events are delivered."""
    return_id = incoming.return_id
    outbound: list[Outbound] = []
    for name, event in unfolded(incoming.name, incoming.record):
        if name == "ReturnRequested":
            kept = pseudonymous({key: event[key] for key in REQUEST_KEPT})
            entry = ports.returns.get(return_id)
            if entry is None:
                ports.returns[return_id] = {"request": kept, "counted": []}
            elif "lines" not in entry["request"]:
                # its risk check was decided first (the return facts behind, e.g. while a
                # backlog of counts is folded): the check kept no lines; the request has them
                ports.returns[return_id] = {**entry, "request": {**entry["request"], **kept}}
            continue
        entry = ports.returns.get(return_id)
        if entry is None:
            continue  # requested before the risk service started: nothing to count it by
        request = entry["request"]
        if "lines" not in request:
            log.warning("return not counted: its request was never read", event_type=name)
            continue
        if name == "ReturnAccepted" and _first_count(ports.returns, return_id, "accepted"):
            at = int(event["envelope"]["occurred_at"])
            increments = return_increments(request, at)
            outbound += _counted(increments, incoming, "return-accepted", return_id)
        elif (
            name == "InspectionRecorded"
            and inspection_problem(event["items"])
            and _first_count(ports.returns, return_id, "inspection")
        ):
            at = int(event["inspected_at"])
            increments = inspection_increments(request, event["items"], at)
            outbound += _counted(increments, incoming, "inspection", return_id)
    return outbound


async def count_orders(ports: RiskPorts, incoming: Incoming) -> list[Outbound]:
    order = incoming.record["order"]
    ref = order["order_ref"]
    if incoming.name == "OrderDelivered":
        known = ports.orders.get(ref) or {"counted_at": int(order["placed_at"])}
        if not known.get("delivered"):  # once per order
            ports.orders[ref] = {**known, "delivered": True}
            risk_metrics.order_delivered(str(order["market"]))
        return []
    if incoming.name != "OrderPlaced":
        return []
    if ref in ports.orders:
        return []  # counted before (the order re-published, or the topic replayed)
    ports.orders[ref] = {"counted_at": int(order["placed_at"])}
    return _counted(order_increments(order), incoming, "order-placed", ref)


async def fold_counts(ports: RiskPorts, incoming: Incoming) -> list[Outbound]:
    """A key's increment added to its window (once, whatever is published twice)."""
    record = incoming.record
    increment = Increment(
        record["subject"],
        record["key"],
        int(record["at"]),
        {name: int(amount) for name, amount in record["counts"].items()},
        {name: list(members) for name, members in record["members"].items()},
    )
    entry = add_increment(
        ports.windows.get(increment.table_key),
        increment,
        record["envelope"]["event_id"],
        record["source"],
        int(record["source_offset"]),
        ports.clock_ms(),
    )
    if entry is not None:
        ports.windows[increment.table_key] = entry
    return []


# ------------------------------------------------------------------------------ deciding


def decided_event_id(return_id: str, decision_id: str) -> str:
    return deterministic_event_id(return_id, "risk-decided", decision_id)


async def decide_return(ports: RiskPorts, incoming: Incoming) -> list[Outbound]:
    check = incoming.record
    return_id = incoming.return_id
    with event_context(return_id=return_id, event_id=incoming.event_id):
        known = ports.cases.get(return_id)
        if known and known["decided"]["decision_id"] == check["decision_id"]:
            log.info("risk check asked again: the first answer is sent again")
            return [("RiskDecided", known["decided"])]
        every_key = await ports.all_windows()
        now = ports.clock_ms()
        windows = {}
        for pair, key in windows_needed(check).items():
            window = window_of(every_key.get(key), now)
            if window is not None:
                windows[pair] = window
        result = decide_check(check, windows, ports.live, ports.shadow, ports.review_hours)
        record = {
            "envelope": new_envelope(
                "RiskDecided",
                return_id,
                SERVICE,
                event_id=decided_event_id(return_id, check["decision_id"]),
                correlation_id=check["envelope"]["correlation_id"],
                causation_id=incoming.event_id,
                occurred_at=now,
            ),
            **decided_body(check, result, now),
        }
        fold_case(ports.cases, "RiskDecided", record)
        counts: list[Outbound] = []
        if return_id not in ports.returns:
            ports.returns[return_id] = {"request": pseudonymous(request_of(check)), "counted": []}
        if _first_count(ports.returns, return_id, "inspection"):
            counts = _counted(counted_after(check, result), incoming, "inspection", return_id)
        if record["outcome"] in ("hold", "decline"):
            counts.append(buyer_flagged(check, record, now))
        risk_metrics.decided(str(check["market"]), record["outcome"])
        log.debug(  # one per return: the hot path logs at DEBUG (RiskDecided says it all)
            "risk decided",
            outcome=record["outcome"],
            score=record["score"],
            rules=[rule["rule_id"] for rule in record["rules"]],
            shadow=record["shadow_outcome"],
        )
        return [("RiskDecided", record), *counts]


def buyer_flagged(check: Mapping[str, Any], decided: Mapping[str, Any], now_ms: int) -> Outbound:
    """The buyer of a held or declined return: their policy in the market is tightened for
    BUYER_TIGHTENED_DAYS (the front door loads the layer it generates)."""
    key = f"{check['buyer_id']}|{check['market']}"
    today = day_of(now_ms)
    record = {
        "envelope": new_envelope(
            "BuyerFlagged",
            key,
            SERVICE,
            event_id=deterministic_event_id(check["envelope"]["return_id"], "buyer-flagged"),
            correlation_id=check["envelope"]["correlation_id"],
            occurred_at=now_ms,
        ),
        "buyer_id": check["buyer_id"],
        "market": check["market"],
        "outcome": decided["outcome"],
        "rules": [rule["rule_id"] for rule in decided["rules"]],
        "day": today,
        "until_day": today + BUYER_TIGHTENED_DAYS,
        "flagged_at": now_ms,
    }
    return ("BuyerFlagged", record, key.encode())


# ------------------------------------------------------------------------------ review cases


def fold_case(cases: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    """The `cases` view (folded from risk.events): each return's decision and the first
    verdict on it (a later, different one was refused before it was published, or lost a
    race: the saga acted on the first too, the verdict's event id being the case's)."""
    return_id = record["envelope"]["return_id"]
    known = cases.get(return_id)
    if name == "RiskDecided":
        if known is None:
            cases[return_id] = {"decided": record, "verdict": None}
    elif name == "RiskReviewDecided" and known is not None and known["verdict"] is None:
        cases[return_id] = {
            **known,
            "verdict": {k: v for k, v in record.items() if k != "envelope"},
        }


async def follow_decisions(ports: RiskPorts, incoming: Incoming) -> list[Outbound]:
    fold_case(ports.cases, incoming.name, incoming.record)
    return []


def case_status(case: Mapping[str, Any], now_ms: int) -> str:
    decided = case["decided"]
    verdict = case["verdict"]
    if verdict is not None:
        return "approved" if verdict["verdict"] == "approve" else "denied"
    if decided["outcome"] not in ("hold", "review"):
        return "none"  # approved or declined by the rules: no person needed
    deadline = decided.get("review_deadline_at")
    return "escalated" if deadline and now_ms >= deadline else "open"


def case_view(
    return_id: str, case: Mapping[str, Any], now_ms: int, counted: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A case as reviewers see it (`counted`: the return's entry in `returns`, for its
    buyer and seller when the case was rebuilt from the topic)."""
    decided = case["decided"]
    request = (counted or {}).get("request") or {}
    return {
        "return_id": return_id,
        "case_id": decided.get("case_id"),
        "status": case_status(case, now_ms),
        "held": decided["outcome"] == "hold",
        "outcome": decided["outcome"],
        "score": decided["score"],
        "rule_set": decided["rule_set"],
        "rule_set_version": decided["rule_set_version"],
        "rules": [
            {
                "rule_id": rule["rule_id"],
                "score": rule["score"],
                "inputs": orjson.loads(rule["inputs_json"]),
            }
            for rule in decided["rules"]
        ],
        "missing": decided["missing"],
        "reason": decided["reason"],
        "decided_at": decided["decided_at"],
        "review_deadline_at": decided.get("review_deadline_at"),
        "shadow": shadow_beside(decided),
        "buyer_id": request.get("buyer_id"),
        "seller_id": request.get("seller_id"),
        "verdict": case["verdict"],
    }


def shadow_beside(decided: Mapping[str, Any]) -> dict[str, Any] | None:
    """The shadow rule set's decision as recorded beside the live one (None: no shadow)."""
    if not decided.get("shadow_outcome"):
        return None
    live_rules = {rule["rule_id"] for rule in decided["rules"]}
    shadow_rules = set(decided["shadow_rules"])
    return {
        "live": decided["outcome"],
        "shadow": decided["shadow_outcome"],
        "shadow_version": decided["shadow_rule_set_version"],
        "agrees": decided["outcome"] == decided["shadow_outcome"],
        "only_live": sorted(live_rules - shadow_rules),
        "only_shadow": sorted(shadow_rules - live_rules),
    }


def _reviewer(ports: RiskPorts, request: HttpRequest) -> str:
    return token_holder(ports.reviewer_tokens, request.headers.get("Authorization"), "reviewer")


async def list_cases(ports: RiskPorts, request: HttpRequest) -> HttpAnswer:
    """GET /reviews[?status=open|escalated|approved|denied|waiting|all]: the cases this
    instance owns, held ones first, oldest first (waiting: open or escalated, the default)."""
    _reviewer(ports, request)
    wanted = request.query.get("status", "waiting")
    allowed = {"open", "escalated", "approved", "denied", "waiting", "all"}
    if wanted not in allowed:
        raise ApiError(400, "bad_status", f"status is one of {sorted(allowed)}")
    now = ports.clock_ms()
    shown = []
    for return_id, case in ports.cases.items():
        status = case_status(case, now)
        if status == "none":
            continue
        if (
            wanted == "all"
            or status == wanted
            or (wanted == "waiting" and status in ("open", "escalated"))
        ):
            shown.append(case_view(return_id, case, now, ports.returns.get(return_id)))
    shown.sort(key=lambda c: (not c["held"], c["decided_at"], c["return_id"]))
    return HttpAnswer(200, {"cases": shown[:CASES_LISTED], "total": len(shown)})


def merged_cases(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    cases = sorted(
        (case for part in parts for case in part["cases"]),
        key=lambda c: (not c["held"], c["decided_at"], c["return_id"]),
    )
    return {"cases": cases[:CASES_LISTED], "total": sum(part["total"] for part in parts)}


async def show_case(ports: RiskPorts, request: HttpRequest, return_id: str) -> HttpAnswer:
    _reviewer(ports, request)
    case = ports.cases.get(return_id)
    if case is None:
        raise ApiError(404, "unknown_case", f"no risk decision on return {return_id}")
    return HttpAnswer(
        200, case_view(return_id, case, ports.clock_ms(), ports.returns.get(return_id))
    )


def _verdict_fields(body: Mapping[str, Any]) -> tuple[bool, str]:
    verdict = body.get("verdict")
    if verdict not in ("approve", "deny"):
        raise ApiError(422, "bad_verdict", "verdict is approve or deny")
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason_is_given(reason):
        raise ApiError(
            422,
            "reason_required",
            f"a verdict says why: reason, {MIN_REASON} to {MAX_REASON} characters, not only blanks",
        )
    return verdict == "approve", reason


async def give_verdict(ports: RiskPorts, request: HttpRequest, return_id: str) -> HttpAnswer:
    """POST /reviews/{return_id}/verdict {"verdict": "approve"|"deny", "reason": "…"}:
    the reviewer is whoever the token belongs to. The same verdict again answers as the
    first did; a different verdict on a decided case is 409."""
    reviewer = _reviewer(ports, request)
    approve, reason = _verdict_fields(parse_json_object(request.body))
    async with ports.locks.holding(return_id):
        case = ports.cases.get(return_id)
        if case is None:
            raise ApiError(404, "unknown_case", f"no risk decision on return {return_id}")
        decided = case["decided"]
        case_id = decided.get("case_id")
        if not case_id:
            raise ApiError(
                409, "nothing_to_review", f"return {return_id} was {decided['outcome']}d by rules"
            )
        given = case["verdict"]
        earlier = ports.verdicts_sent.get(case_id)
        if given is not None:
            earlier = ("approved" if given["verdict"] == "approve" else "denied", given["reviewer"])
        try:
            new = verdict_is_new(earlier, approve, reviewer, reason)
        except VerdictRefused as exc:
            raise ApiError(409, "verdict_refused", str(exc)) from exc
        verdict = "approve" if approve else "deny"
        if not new:
            return HttpAnswer(
                200,
                {"return_id": return_id, "case_id": case_id, "verdict": verdict, "repeated": True},
                {"Idempotent-Replayed": "true"},
            )
        now = ports.clock_ms()
        record = {
            "envelope": new_envelope(
                "RiskReviewDecided",
                return_id,
                SERVICE,
                event_id=deterministic_event_id(return_id, "risk-verdict", case_id),
                correlation_id=decided["envelope"]["correlation_id"],
                occurred_at=now,
            ),
            "case_id": case_id,
            "verdict": verdict,
            "reviewer": reviewer,
            "reason": reason.strip(),
            "held": decided["outcome"] == "hold",
            "decided_at": now,
        }
        try:
            await _record_verdict(ports, record, reviewer, reason, return_id)
        except (KafkaError, OSError) as exc:
            log.warning("verdict not recorded: broker unavailable", error=repr(exc))
            raise ApiError(
                503, "unavailable", "the verdict could not be recorded; send it again"
            ) from exc
        ports.verdicts_sent[case_id] = ("approved" if approve else "denied", reviewer)
        waited = now - int(decided.get("decided_at") or now)
        risk_metrics.verdict_given(verdict, record["held"], waited, return_id)
        while len(ports.verdicts_sent) > VERDICTS_REMEMBERED:
            ports.verdicts_sent.popitem(last=False)
        with event_context(return_id=return_id, event_id=record["envelope"]["event_id"]):
            log.info("review verdict", verdict=verdict, reviewer=reviewer, case_id=case_id)
        return HttpAnswer(
            200, {"return_id": return_id, "case_id": case_id, "verdict": verdict, "repeated": False}
        )


async def _record_verdict(
    ports: RiskPorts, record: dict[str, Any], reviewer: str, reason: str, return_id: str
) -> None:
    """On the audit trail first, then to the saga (a verdict sent again after a failure
    has the same event id: the saga takes it once)."""
    await ports.audit(
        {
            "operation_id": record["envelope"]["event_id"],
            "operation": f"review {record['verdict']}",
            "actor": reviewer,
            "reason": reason.strip(),
            "at_ms": record["decided_at"],
            "selection": {"return_id": return_id, "case_id": record["case_id"]},
            "result": {"verdict": record["verdict"], "held": record["held"]},
        }
    )
    await ports.publish([("RiskReviewDecided", record)])


# ------------------------------------------------------------------------------ sellers


def standing_key(seller_id: str, market: str) -> str:
    return f"{seller_id}|{market}"


def fold_standing(standings: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    """The `standings` view (folded from risk.sellers): each seller's latest standing per
    market."""
    if name == "SellerFlagged":
        key = standing_key(record["seller_id"], record["market"])
        known = standings.get(key)
        if known is None or known["day"] <= record["day"]:
            standings[key] = {k: v for k, v in record.items() if k != "envelope"}


async def follow_standings(ports: RiskPorts, incoming: Incoming) -> list[Outbound]:
    fold_standing(ports.standings, incoming.name, incoming.record)
    return []


def governed_windows(every_key: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The sellers' and their segments' windows, expired as of now."""
    windows = {}
    for key, entry in every_key.items():
        if key.startswith((SEGMENT_PREFIX, SELLER_PREFIX)):
            window = window_of(entry, now_ms)
            if window is not None:
                windows[key] = window
    return windows


async def judge_sellers(ports: RiskPorts) -> list[Outbound]:
    """Today's standings of the sellers this instance judges (those whose standing's key is
    on a partition it owns), as SellerFlagged records where something changed."""
    now = ports.clock_ms()
    windows = governed_windows(await ports.all_windows(), now)
    previous = dict(ports.standings)  # the latest standing per seller|market
    outbound: list[Outbound] = []
    for record in standings_due(windows, previous, now, ports.terms, ports.judges):
        key = standing_key(record["seller_id"], record["market"])
        body = {
            "envelope": new_envelope(
                "SellerFlagged",
                key,
                SERVICE,
                event_id=deterministic_event_id(key, "seller-standing", str(record["day"])),
                correlation_id=key,
                occurred_at=now,
            ),
            **{k: record[k] for k in ("seller_id", "market", "standing", "previous")},
            "calm_days": record["calm_days"],
            "day": record["day"],
            "reasons": record["reasons"],
            "rates_json": orjson.dumps(record["rates"], option=orjson.OPT_SORT_KEYS).decode(),
            "judged_at": now,
        }
        outbound.append(("SellerFlagged", body, key.encode()))
        log.info(
            "seller standing",
            seller_id=record["seller_id"],
            market=record["market"],
            standing=record["standing"],
            previous=record["previous"],
            calm_days=record["calm_days"],
        )
    return outbound


async def seller_view(ports: RiskPorts, request: HttpRequest, seller_id: str) -> HttpAnswer:
    """GET /governance/sellers/{seller_id}: the seller's standings per market (this
    instance's part), with its current rates per category and why it stands there."""
    _reviewer(ports, request)
    now = ports.clock_ms()
    shown = [
        {**record, "rates": orjson.loads(record["rates_json"])}
        for key, record in sorted(ports.standings.items())
        if record["seller_id"] == seller_id
    ]
    for record in shown:
        del record["rates_json"]
    figures = []
    if ports.judges(seller_id, ""):  # the figures once, from the instance judging market ""
        windows = governed_windows(await ports.all_windows(), now)
        found = segments(windows, now)
        peers = peers_of(found, ports.terms)
        for segment in found:
            if segment.seller_id != seller_id:
                continue
            medians = {
                name: peer.median()
                for name, peer in peers.get((segment.market, segment.category), {}).items()
            }
            figures.append(
                {
                    "market": segment.market,
                    "category": segment.category,
                    "returns_90d": segment.rates.returns,
                    "rates": {n: round(r, 4) for n, r in segment.rates.rates.items()},
                    "peer_medians": medians,
                    "peers": max(
                        (
                            p.sellers
                            for p in peers.get((segment.market, segment.category), {}).values()
                        ),
                        default=0,
                    ),
                }
            )
    return HttpAnswer(200, {"seller_id": seller_id, "standings": shown, "figures": figures})


def merged_seller_views(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "seller_id": parts[0]["seller_id"] if parts else "",
        "standings": sorted(
            (s for part in parts for s in part["standings"]), key=lambda s: s["market"]
        ),
        "figures": sorted(
            (f for part in parts for f in part["figures"]),
            key=lambda f: (f["market"], f["category"]),
        ),
    }
