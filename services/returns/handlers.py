"""The returns front door's handlers.

POST /returns validates the body, applies the policy and emits one record: ReturnAccepted or
ReturnRejected carrying the ReturnRequested it answers (`requested`, services/decisions/
folded_events.py); an accepted one names its effective policy by digest, and the policy
itself is published once per process (PolicySnapshotPublished, keyed by the digest) before
the first return that names it. With an `Idempotency-Key`, the return id is derived from
the key: the same key and body answer the same return again (nothing new is emitted), the
same key with another body is 409. What each key answered is kept in a table rebuilt from
the returns topic (`record_answers`), so the answer survives restarts. A buyer may cancel
(POST /returns/{id}/cancel) and give a bank account for a transfer refund
(POST /returns/{id}/bank-account).

Every call carries the marketplace's bearer token (marketplace_tokens.py): a buyer creates
returns of their own orders only and acts on their own returns only (403 otherwise); a
support agent may cancel any return; a bank account is given only by the return's buyer,
signed in within the last `fresh_sign_in_s` (else 401 with the step-up challenge of RFC
9470), and the event records who gave it with which token. Each caller has a request
quota (decisions/caller_quota.py: 429 with Retry-After).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.decisions.admission import Refusal
from services.decisions.caller_quota import CallerQuotas, QuotaTerms
from services.decisions.folded_events import unfolded
from services.eventing.envelope import deterministic_event_id, new_envelope
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Incoming, Outbound, Publish
from services.eventing.keyed_locks import KeyedLocks
from services.eventing.log_setup import event_context, get_logger
from services.eventing.marketplace_keys import TokenKeysUnavailable
from services.eventing.marketplace_tokens import BUYER, SUPPORT, Caller, TokenRefused, TokenTerms
from services.eventing.request_fields import ApiError, FieldProblem, invalid, parse_json_object
from services.returns.order_facts import OrderSource, OrderSystemUnavailable
from services.returns.order_facts import return_request as request_from_order
from services.returns.return_policy import PolicyDecision, ReturnPolicy
from services.returns.return_request import (
    ReturnRequest,
    check_idempotency_key,
    parse_cancellation,
    parse_dispute,
    parse_drop_off,
    parse_pickup_window,
    parse_refund_account,
    parse_return_claim,
)

SERVICE = "returns"
RECENT_ANSWERS = 10_000
ORDER_SYSTEM_RETRY_AFTER_S = 5
PUBLISHED_POLICIES_KEPT = 10_000
TOKEN_KEYS_RETRY_AFTER_S = 5
SUPPORT_QUOTA = QuotaTerms(per_minute=600, burst=100)
log = get_logger(__name__)

RETURN_ID_NAMESPACE = uuid.UUID("b7d7a0c4-0d0e-5a4e-8f57-3c6a4c1e2f90")


def return_id_for_key(key: str) -> str:
    return "RMA-" + uuid.uuid5(RETURN_ID_NAMESPACE, key).hex[:20].upper()


def keyed_return_id(request: HttpRequest, params: Mapping[str, str]) -> str | None:
    """The return id a POST /returns with an Idempotency-Key creates (None without one, or
    with a key the handler refuses: any instance answers those)."""
    try:
        key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    except ApiError:
        return None
    return return_id_for_key(key) if key else None


def new_return_id() -> str:
    return "RMA-" + uuid.uuid4().hex[:20].upper()


def decision_events(
    return_id: str,
    request: ReturnRequest,
    decision: PolicyDecision,
    key: str | None,
    at: int,
    request_hash: str | None = None,
) -> list[Outbound]:
    """ReturnRequested inside ReturnAccepted or ReturnRejected; `request_hash` is the
    body's (what a retry with the same Idempotency-Key is compared with; by default the
    request's own)."""
    requested_id = deterministic_event_id(return_id, "ReturnRequested")
    requested = {
        "envelope": new_envelope(
            "ReturnRequested", return_id, SERVICE, event_id=requested_id, occurred_at=at
        ),
        **request.event_fields(),
        "idempotency_key": key,
        "request_hash": request_hash or request.fingerprint(),
    }
    name = "ReturnAccepted" if decision.accepted else "ReturnRejected"
    body: dict[str, Any] = {
        "policy_version": decision.policy_version,
        "rules_fired": list(decision.rules_fired),
        "rules": decision.rule_records(),
    }
    if decision.accepted:  # the policy itself is on the snapshots topic (policy_snapshot)
        body |= {"policy_digest": decision.policy_digest, "reason_family": decision.reason_family}
    else:
        body |= {"rejection_code": decision.rejection_code, "detail": decision.detail}
    outcome = {
        "envelope": new_envelope(
            name,
            return_id,
            SERVICE,
            correlation_id=requested_id,
            causation_id=requested_id,
            event_id=deterministic_event_id(return_id, name),
            occurred_at=at,
        ),
        **body,
        "requested": requested,
    }
    return [(name, outcome)]


def policy_snapshot(return_id: str, decision: PolicyDecision, at: int) -> Outbound:
    """The effective policy an accepted return names by its digest, keyed by the digest."""
    digest = str(decision.policy_digest)
    record = {
        "envelope": new_envelope(
            "PolicySnapshotPublished",
            return_id,  # the return it was first published for
            SERVICE,
            event_id=deterministic_event_id(digest, "PolicySnapshotPublished"),
            occurred_at=at,
        ),
        "policy_digest": digest,
        "policy_version": decision.policy_version,
        "policy_json": decision.policy_json,
    }
    return "PolicySnapshotPublished", record, digest.encode()


def rules_view(decision_record: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"rule_id": r["rule_id"], "facts": json.loads(r["facts_json"]), "effect": r["effect"]}
        for r in decision_record.get("rules") or []
    ]


def answer_for(return_id: str, decision_record: dict[str, Any], accepted: bool) -> tuple[int, dict]:
    if accepted:
        return 202, {
            "return_id": return_id,
            "status": "accepted",
            "policy_version": decision_record["policy_version"],
            "rules_fired": decision_record["rules_fired"],
            "rules": rules_view(decision_record),
        }
    return 422, {
        "error": "policy_rejected",
        "return_id": return_id,
        "status": "rejected",
        "rejection_code": decision_record["rejection_code"],
        "detail": decision_record["detail"],
        "policy_version": decision_record["policy_version"],
        "rules_fired": decision_record["rules_fired"],
        "rules": rules_view(decision_record),
    }


@dataclass
class ReturnsPorts:
    answers: MutableMapping[str, Any]  # return_id -> {request_hash, status, body}
    policy: ReturnPolicy
    publish: Publish
    clock_ms: Callable[[], int]
    orders: OrderSource  # the marketplace's order system: the facts of every return
    # (Authorization header, now in seconds) -> the Caller its token proves, or TokenRefused
    authenticate: Callable[[str | None, int], Awaitable[Caller]]
    new_return_id: Callable[[], str] = new_return_id  # without an Idempotency-Key
    # digests of the policies this process has published (each before the first return
    # that names it; published again after a restart: the topic is compacted by digest)
    published_policies: set[str] = field(default_factory=set)
    # answers given by this process, not yet in the table (it learns them from the topic)
    recent: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    locks: KeyedLocks = field(default_factory=KeyedLocks)  # one POST per return id at a time
    # admission control (decisions/admission.py): given the requests in progress here, a
    # Refusal when a new return must wait (the composition root measures the backlog)
    admit: Callable[[int], Refusal | None] = lambda in_flight: None
    in_flight: int = 0  # POST /returns being answered
    # each role's quotas: a support agent works many buyers' returns
    quotas: Mapping[str, CallerQuotas] = field(
        default_factory=lambda: {BUYER: CallerQuotas(), SUPPORT: CallerQuotas(SUPPORT_QUOTA)}
    )
    token_terms: TokenTerms = field(default_factory=TokenTerms)

    def remember(self, return_id: str, entry: dict[str, Any]) -> None:
        self.recent[return_id] = entry
        self.recent.move_to_end(return_id)
        while len(self.recent) > RECENT_ANSWERS:
            self.recent.popitem(last=False)

    async def publish_policy_once(self, return_id: str, decision: PolicyDecision, at: int) -> None:
        """Publish the effective policy of an accepted return unless this process already
        did, and wait for the broker: a ReturnAccepted never names a policy not written."""
        digest = decision.policy_digest
        if digest is None or digest in self.published_policies:
            return
        await self.publish([policy_snapshot(return_id, decision, at)])
        if len(self.published_policies) >= PUBLISHED_POLICIES_KEPT:
            self.published_policies.clear()
        self.published_policies.add(digest)

    def refused_before_forwarding(self, request: HttpRequest) -> HttpAnswer | None:
        """Admission on the instance a new return landed on, before it is forwarded to the
        owner of its partition (every front door measures the same backlog): a refusal
        here costs no forward. The owner decides again (it replays a known answer first),
        so a forwarded return is refused with 1 − (1 − share)² instead of the share."""
        refusal = self.admit(self.in_flight)
        return None if refusal is None else overloaded(refusal)

    def knows(self, return_id: str) -> bool:
        return self.answers.get(return_id) is not None or return_id in self.recent

    def buyer_of(self, return_id: str) -> str | None:
        """The buyer of a return this front door answered (None: no such return)."""
        known = self.recent.get(return_id) or self.answers.get(return_id)
        return None if known is None else known.get("buyer_id")

    async def caller(self, request: HttpRequest) -> Caller:
        """Who sends `request` (401 without a valid token, 503 when the marketplace's keys
        cannot be read), within their quota (429)."""
        now_ms = self.clock_ms()
        try:
            caller = await self.authenticate(request.headers.get("Authorization"), now_ms // 1000)
        except TokenRefused as exc:
            challenge = f'Bearer error="invalid_token", error_description="{exc.reason}"'
            if exc.reason == "missing_token":
                challenge = "Bearer"
            raise ApiError(
                401, exc.reason, exc.detail, headers={"WWW-Authenticate": challenge}
            ) from exc
        except TokenKeysUnavailable as exc:
            log.warning("the marketplace's signing keys are unreadable", detail=str(exc)[:300])
            raise ApiError(
                503,
                "token_keys_unavailable",
                "the marketplace's signing keys could not be read; try again",
                headers={"Retry-After": str(TOKEN_KEYS_RETRY_AFTER_S)},
            ) from exc
        quotas = self.quotas[caller.role]
        over = quotas.take(caller.subject, now_ms / 1000)
        if over is not None:
            raise ApiError(
                429,
                "too_many_requests",
                f"over this caller's quota of {quotas.terms.per_minute:g} requests a minute",
                headers={"Retry-After": str(over.retry_after_s)},
            )
        return caller

    def require_fresh_sign_in(self, caller: Caller, what: str) -> None:
        """401 with RFC 9470's step-up challenge unless `caller` signed in lately."""
        fresh_s = self.token_terms.fresh_sign_in_s
        if not caller.signed_in_within(fresh_s, self.clock_ms() // 1000):
            raise ApiError(
                401,
                "fresh_sign_in_required",
                f"{what} needs a sign-in within the last {fresh_s} s",
                headers={
                    "WWW-Authenticate": (
                        'Bearer error="insufficient_user_authentication", '
                        f'error_description="sign in again", max_age="{fresh_s}"'
                    )
                },
            )

    def returns_of(self, buyer_id: str) -> list[str]:
        """The returns of `buyer_id` this instance answered (its partitions' share)."""
        known = {
            rid for rid, entry in self.answers.items() if (entry or {}).get("buyer_id") == buyer_id
        }
        known |= {rid for rid, entry in self.recent.items() if entry.get("buyer_id") == buyer_id}
        return sorted(known)

    def check_buyer(self, caller: Caller, return_id: str) -> None:
        """404 for a return nobody asked for; 403 when `caller` is a buyer and not its own."""
        if not self.knows(return_id):
            raise ApiError(404, "unknown_return", f"no return {return_id} is known")
        if caller.is_buyer and self.buyer_of(return_id) != caller.subject:
            raise ApiError(403, "not_your_return", "this return is another buyer's")


def fold_answer(answers: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    """What each return's POST answered (the `answers` view, folded from returns.events)."""
    for event_name, event in unfolded(name, record):
        _fold_one_answer(answers, event_name, event)


def _fold_one_answer(answers: MutableMapping[str, Any], name: str, record: dict[str, Any]) -> None:
    return_id = record["envelope"]["return_id"]
    if name == "ReturnRequested" and answers.get(return_id) is None:
        answers[return_id] = {
            "request_hash": record.get("request_hash"),
            "buyer_id": record.get("buyer_id"),
            "status": None,
        }
    elif name in ("ReturnAccepted", "ReturnRejected"):
        known = answers.get(return_id)
        if known is not None:
            status, body = answer_for(return_id, record, name == "ReturnAccepted")
            answers[return_id] = {**known, "status": status, "body": body}


async def record_answers(ports: ReturnsPorts, incoming: Incoming) -> list[Outbound]:
    fold_answer(ports.answers, incoming.name, incoming.record)
    return []


async def create_return(ports: ReturnsPorts, request: HttpRequest) -> HttpAnswer:
    ports.in_flight += 1
    try:
        return await _create_return(ports, request)
    finally:
        ports.in_flight -= 1


def overloaded(refusal: Refusal) -> HttpAnswer:
    """503 with Retry-After: nothing was recorded, the same request may be sent again."""
    return HttpAnswer(
        503,
        {"error": "overloaded", "detail": f"not taking new returns now: {refusal.reason}"},
        {"Retry-After": str(refusal.retry_after_s)},
    )


async def _create_return(ports: ReturnsPorts, request: HttpRequest) -> HttpAnswer:
    caller = await ports.caller(request)
    key = check_idempotency_key(request.headers.get("Idempotency-Key"))
    claim = parse_return_claim(parse_json_object(request.body))
    if not caller.is_buyer:
        raise ApiError(403, "buyers_only", "a return is asked for by the order's buyer")
    fingerprint = claim.fingerprint()  # the body's meaning: a replay needs no order lookup
    return_id = return_id_for_key(key) if key else ports.new_return_id()
    async with ports.locks.holding(return_id):
        with event_context(return_id=return_id):
            known = ports.recent.get(return_id) or (ports.answers.get(return_id) if key else None)
            if known is not None:
                if known.get("buyer_id") not in (None, caller.subject):
                    raise ApiError(403, "not_your_return", "this return is another buyer's")
                if known["request_hash"] != fingerprint:
                    raise ApiError(
                        409,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with a different body",
                        extra={"return_id": return_id},
                    )
                if known.get("status") is not None:
                    log.debug("idempotent replay", status=known["status"])
                    replayed = {"Idempotent-Replayed": "true"}
                    return HttpAnswer(known["status"], known["body"], replayed)
            if (refusal := ports.admit(ports.in_flight)) is not None:
                log.debug("return refused: overloaded", reason=refusal.reason)
                return overloaded(refusal)
            try:
                facts = await ports.orders.find(claim.order_ref)
            except OrderSystemUnavailable as exc:
                log.warning("order system unavailable", detail=str(exc)[:300])
                return HttpAnswer(
                    503,
                    {
                        "error": "order_system_unavailable",
                        "detail": "the marketplace's order system did not answer; try again",
                    },
                    {"Retry-After": str(ORDER_SYSTEM_RETRY_AFTER_S)},
                )
            if facts is None:
                raise invalid([FieldProblem("order_ref", "the marketplace has no such order")])
            if facts.buyer_id != caller.subject:
                raise ApiError(403, "not_your_order", "this order is another buyer's")
            return_request = request_from_order(claim, facts)
            now = ports.clock_ms()
            decision = ports.policy.decide(return_request, now)
            events = decision_events(return_id, return_request, decision, key, now, fingerprint)
            await ports.publish_policy_once(return_id, decision, now)
            await ports.publish(events)
            [(_, decided)] = events
            status, body = answer_for(return_id, decided, decision.accepted)
            ports.remember(
                return_id,
                {
                    "request_hash": fingerprint,
                    "buyer_id": facts.buyer_id,
                    "status": status,
                    "body": body,
                },
            )
            log.debug(
                "return requested",
                event_id=decided["requested"]["envelope"]["event_id"],
                accepted=decision.accepted,
                policy_version=decision.policy_version,
                rules_fired=[
                    {"rule_id": r.rule_id, "facts": r.facts, "effect": r.effect}
                    for r in decision.rules
                ],
            )
    return HttpAnswer(status, body)


async def cancel_return(ports: ReturnsPorts, request: HttpRequest, return_id: str) -> HttpAnswer:
    caller = await ports.caller(request)
    cancellation = parse_cancellation(parse_json_object(request.body or b"{}"), caller.role)
    ports.check_buyer(caller, return_id)
    event_id = deterministic_event_id(return_id, "ReturnCancelled")
    record = {
        "envelope": new_envelope(
            "ReturnCancelled", return_id, SERVICE, event_id=event_id, occurred_at=ports.clock_ms()
        ),
        "cancelled_by": cancellation["cancelled_by"],
        "reason": cancellation["reason"],
    }
    with event_context(record["envelope"]):
        await ports.publish([("ReturnCancelled", record)])
        log.info("cancellation requested", cancelled_by=cancellation["cancelled_by"])
    # the saga decides: before collection it cancels the pickup, after it refuses
    accepted = {"return_id": return_id, "status": "cancellation_requested", "event_id": event_id}
    return HttpAnswer(202, accepted)


async def give_bank_account(
    ports: ReturnsPorts, request: HttpRequest, return_id: str
) -> HttpAnswer:
    caller = await ports.caller(request)
    account = parse_refund_account(parse_json_object(request.body))
    if not caller.is_buyer:
        raise ApiError(403, "buyers_only", "only the return's buyer gives its bank account")
    ports.check_buyer(caller, return_id)
    ports.require_fresh_sign_in(caller, "changing the refund's bank account")
    # the same account given twice is one event; a corrected one is a new event
    account_hash = hashlib.sha256(json.dumps(account, sort_keys=True).encode()).hexdigest()
    event_id = deterministic_event_id(return_id, "BuyerDetailsProvided", account_hash[:16])
    record = {
        "envelope": new_envelope(
            "BuyerDetailsProvided",
            return_id,
            SERVICE,
            event_id=event_id,
            occurred_at=ports.clock_ms(),
        ),
        "refund_account": account,
        # the audit: who gave it, with which token, signed in when
        "given_by": caller.subject,
        "token_id": caller.token_id,
        "signed_in_at": caller.signed_in_at_s * 1000,
    }
    with event_context(record["envelope"]):
        await ports.publish([("BuyerDetailsProvided", record)])
        log.info("buyer gave a bank account", number_ends=account["number"][-4:])
    received = {"return_id": return_id, "status": "bank_account_received", "event_id": event_id}
    return HttpAnswer(202, received)


async def move_pickup(ports: ReturnsPorts, request: HttpRequest, return_id: str) -> HttpAnswer:
    """POST /returns/{id}/pickup-window: the buyer (or support) asks for another pickup
    window; the saga moves the booking while the reschedules allowed last (its outcome is
    PickupRescheduled, and the buyer is notified)."""
    caller = await ports.caller(request)
    start, end = parse_pickup_window(parse_json_object(request.body), ports.clock_ms())
    ports.check_buyer(caller, return_id)
    body = {"window_start": start, "window_end": end, "requested_by": caller.role}
    return await publish_asked(
        ports, return_id, "PickupWindowRequested", body, f"{start}-{end}", "pickup_window_requested"
    )


async def erase_buyer(ports: ReturnsPorts, request: HttpRequest, buyer_id: str) -> HttpAnswer:
    """POST /buyers/{buyer_id}/erasure: the buyer (signed in lately) or support asks to erase
    the buyer's personal data: one PersonalDataErasureRequested per return of theirs (this
    instance's part; the route gathers every instance's, `merged_erasures`). Each saga
    erases the address, account and notes once its return has ended; ids stay."""
    caller = await ports.caller(request)
    if caller.is_buyer:
        if caller.subject != buyer_id:
            raise ApiError(403, "not_your_account", "a buyer erases their own data only")
        ports.require_fresh_sign_in(caller, "erasing your personal data")
    returns = ports.returns_of(buyer_id)
    at = ports.clock_ms()
    events = []
    for return_id in returns:
        event_id = deterministic_event_id(return_id, "PersonalDataErasureRequested")
        envelope = new_envelope(
            "PersonalDataErasureRequested", return_id, SERVICE, event_id=event_id, occurred_at=at
        )
        events.append(
            (
                "PersonalDataErasureRequested",
                {"envelope": envelope, "buyer_id": buyer_id, "requested_by": caller.role},
            )
        )
    if events:
        await ports.publish(events)
    log.info("erasure asked", returns=len(returns), requested_by=caller.role)
    return HttpAnswer(200, {"buyer_id": buyer_id, "returns": returns, "requested": len(returns)})


def merged_erasures(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    returns = sorted({rid for part in parts for rid in part["returns"]})
    return {"buyer_id": parts[0]["buyer_id"], "returns": returns, "requested": len(returns)}


async def choose_drop_off(ports: ReturnsPorts, request: HttpRequest, return_id: str) -> HttpAnswer:
    """POST /returns/{id}/drop-off: the buyer (or support) will bring the parcel to a
    carrier's point instead of waiting for the courier (DropOffChosen; the saga turns the
    booking into a drop-off, the buyer is told the code)."""
    caller = await ports.caller(request)
    point = parse_drop_off(parse_json_object(request.body))
    ports.check_buyer(caller, return_id)
    body = {"point_id": point, "requested_by": caller.role}
    return await publish_asked(ports, return_id, "DropOffChosen", body, point, "drop_off_requested")


async def dispute_return(ports: ReturnsPorts, request: HttpRequest, return_id: str) -> HttpAnswer:
    """POST /returns/{id}/disputes: the buyer (or support) disputes how the return was
    decided (DisputeRequested; asked again with the same body, one event). The saga opens
    the dispute if the return may be disputed (rejected at inspection, or refunded with
    something kept, within the dispute window), else notes why not on the return's view:
    re-inspection at another station or an agent's ruling, then any difference refunded."""
    caller = await ports.caller(request)
    dispute = parse_dispute(parse_json_object(request.body))
    ports.check_buyer(caller, return_id)
    body = {**dispute, "requested_by": caller.role}
    digest = hashlib.sha256(json.dumps(dispute, sort_keys=True).encode()).hexdigest()[:16]
    return await publish_asked(
        ports, return_id, "DisputeRequested", body, digest, "dispute_requested"
    )


async def publish_asked(
    ports: ReturnsPorts,
    return_id: str,
    name: str,
    body: dict[str, Any],
    id_part: str,
    status: str,
) -> HttpAnswer:
    """Publish the buyer's (or support's) ask about a return as one event, its id from the
    return and `id_part` (the same ask twice is one event); 202 with `status`."""
    event_id = deterministic_event_id(return_id, name, id_part)
    envelope = new_envelope(
        name, return_id, SERVICE, event_id=event_id, occurred_at=ports.clock_ms()
    )
    record = {"envelope": envelope, **body}
    with event_context(envelope):
        await ports.publish([(name, record)])
        log.info("asked", event_type=name, requested_by=body.get("requested_by"))
    return HttpAnswer(202, {"return_id": return_id, "status": status, "event_id": event_id})
