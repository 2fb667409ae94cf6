"""Composition root of the returns front door.

POST /returns validates the body, applies the policy and emits ReturnRequested followed by
ReturnAccepted or ReturnRejected. With an `Idempotency-Key`, the return id is derived from
the key: the same key and body answer the same return again (nothing new is emitted), the
same key with another body is 409. What each key answered is kept in a table rebuilt from
the returns topic, so the answer survives restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from services.eventing.avro_codec import Decoded
from services.eventing.envelope import deterministic_event_id, new_envelope, now_ms
from services.eventing.http_api import ApiError, json_endpoint, parse_json_object, post_page
from services.eventing.log_setup import event_context, get_logger
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.service_runtime import (
    Outbound,
    ServiceParts,
    ServiceSettings,
    add_health_page,
    build_parts,
    json_table,
    raw_topic,
    run_worker,
)
from services.eventing.topics import RETURNS_EVENTS
from services.policy_files.loader import policy_dir
from services.policy_files.policy_book import PolicyBook
from services.returns.return_policy import PolicyDecision, PolicyFileRules, ReturnPolicy
from services.returns.return_request import (
    ReturnRequest,
    check_idempotency_key,
    parse_cancellation,
    parse_refund_account,
    parse_return_request,
)

SERVICE = "returns"
DEFAULT_PORT = 8080
RECENT_ANSWERS = 10_000
POLICY_RELOAD_S = 2.0
log = get_logger(__name__)

RETURN_ID_NAMESPACE = uuid.UUID("b7d7a0c4-0d0e-5a4e-8f57-3c6a4c1e2f90")


def return_id_for_key(key: str) -> str:
    return "RMA-" + uuid.uuid5(RETURN_ID_NAMESPACE, key).hex[:20].upper()


def new_return_id() -> str:
    return "RMA-" + uuid.uuid4().hex[:20].upper()


def decision_events(
    return_id: str, request: ReturnRequest, decision: PolicyDecision, key: str | None, at: int
) -> list[Outbound]:
    requested_id = deterministic_event_id(return_id, "ReturnRequested")
    requested = {
        "envelope": new_envelope(
            "ReturnRequested", return_id, SERVICE, event_id=requested_id, occurred_at=at
        ),
        **request.event_fields(),
        "idempotency_key": key,
        "request_hash": request.fingerprint(),
    }
    name = "ReturnAccepted" if decision.accepted else "ReturnRejected"
    body: dict[str, Any] = {
        "policy_version": decision.policy_version,
        "rules_fired": list(decision.rules_fired),
        "rules": decision.rule_records(),
    }
    if decision.accepted:
        body |= {"policy_json": decision.policy_json, "reason_family": decision.reason_family}
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
    }
    return [("ReturnRequested", requested), (name, outcome)]


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


def build(settings: ServiceSettings, policy: ReturnPolicy | None = None) -> ServiceParts:
    """Without `policy`, decides with the policy files of `policy_dir()` and reloads them
    when they change (a bad set is rejected; the previous one stays active)."""
    book: PolicyBook | None = None
    if policy is None:
        book = PolicyBook(policy_dir())
        policy = PolicyFileRules(book)
    parts = build_parts(settings)
    app = parts.app

    if book is not None:
        loaded = book
        rejected: list[str] = []  # the problems of the last set that failed to load

        @app.timer(POLICY_RELOAD_S)
        async def reload_policies() -> None:
            outcome = loaded.reload_if_changed()
            if outcome.changed:
                rejected.clear()
                log.info("policies reloaded", policy_set=outcome.digest)
            elif outcome.problems:
                rejected[:] = outcome.problems
                log.error(
                    "policy files rejected; the previous set stays active",
                    policy_set=outcome.digest,
                    problems=list(outcome.problems),
                )

        @app.page("/policies")
        async def active_policies(web: Any, request: Any) -> Any:
            """Which policy set decides new returns, and why a newer one was refused."""
            return web.json(
                {
                    "policy_set": loaded.current.digest,
                    "directory": str(loaded.directory),
                    "layers": sorted(layer.label for layer in loaded.current.layers),
                    "rejected_problems": list(rejected),
                }
            )

        log.info("policies loaded", policy_set=book.current.digest, directory=str(book.directory))

    answers = json_table(app, "answers")  # return_id -> {request_hash, status, body}
    recent: OrderedDict[str, dict[str, Any]] = OrderedDict()  # answers not yet in the table
    locks: dict[str, asyncio.Lock] = {}

    def remember(return_id: str, entry: dict[str, Any]) -> None:
        recent[return_id] = entry
        recent.move_to_end(return_id)
        while len(recent) > RECENT_ANSWERS:
            recent.popitem(last=False)

    async def record_answers(decoded: Decoded, message: Any) -> list[Outbound]:
        record, return_id = decoded.record, decoded.record["envelope"]["return_id"]
        if decoded.name == "ReturnRequested" and answers.get(return_id) is None:
            answers[return_id] = {"request_hash": record.get("request_hash"), "status": None}
        elif decoded.name in ("ReturnAccepted", "ReturnRejected"):
            known = answers.get(return_id)
            if known is not None:
                status, body = answer_for(return_id, record, decoded.name == "ReturnAccepted")
                answers[return_id] = {**known, "status": status, "body": body}
        return []

    @app.agent(raw_topic(app, RETURNS_EVENTS.name), name="answers", concurrency=1)
    async def keep_answers(stream: Any) -> None:
        await parts.consumer.run(stream, record_answers)

    @json_endpoint
    async def create_return(web: Any, request: Any) -> Any:
        key = check_idempotency_key(request.headers.get("Idempotency-Key"))
        return_request = parse_return_request(parse_json_object(await request.read()))
        fingerprint = return_request.fingerprint()
        return_id = return_id_for_key(key) if key else new_return_id()
        lock = locks.setdefault(return_id, asyncio.Lock())
        async with lock:
            with event_context(return_id=return_id):
                known = recent.get(return_id) or (answers.get(return_id) if key else None)
                if known is not None:
                    if known["request_hash"] != fingerprint:
                        raise ApiError(
                            409,
                            "idempotency_key_reused",
                            "this Idempotency-Key was used with a different body",
                            extra={"return_id": return_id},
                        )
                    if known.get("status") is not None:
                        log.info("idempotent replay", status=known["status"])
                        return web.json(
                            known["body"],
                            status=known["status"],
                            headers={"Idempotent-Replayed": "true"},
                        )
                decision = policy.decide(return_request, now_ms())
                events = decision_events(return_id, return_request, decision, key, now_ms())
                await parts.publisher.publish(events)
                status, body = answer_for(return_id, events[1][1], decision.accepted)
                remember(return_id, {"request_hash": fingerprint, "status": status, "body": body})
                log.info(
                    "return requested",
                    event_id=events[0][1]["envelope"]["event_id"],
                    accepted=decision.accepted,
                    policy_version=decision.policy_version,
                    rules_fired=[
                        {"rule_id": r.rule_id, "facts": r.facts, "effect": r.effect}
                        for r in decision.rules
                    ],
                )
        locks.pop(return_id, None)
        return web.json(body, status=status)

    @json_endpoint
    async def cancel_return(web: Any, request: Any, return_id: str) -> Any:
        body = parse_json_object(await request.read() or b"{}")
        cancellation = parse_cancellation(body)
        if answers.get(return_id) is None and return_id not in recent:
            raise ApiError(404, "unknown_return", f"no return {return_id} is known")
        event_id = deterministic_event_id(return_id, "ReturnCancelled")
        record = {
            "envelope": new_envelope("ReturnCancelled", return_id, SERVICE, event_id=event_id),
            "cancelled_by": cancellation["cancelled_by"],
            "reason": cancellation["reason"],
        }
        with event_context(record["envelope"]):
            await parts.publisher.publish([("ReturnCancelled", record)])
            log.info("cancellation requested", cancelled_by=cancellation["cancelled_by"])
        # the saga decides: before collection it cancels the pickup, after it refuses
        return web.json(
            {"return_id": return_id, "status": "cancellation_requested", "event_id": event_id},
            status=202,
        )

    @json_endpoint
    async def give_bank_account(web: Any, request: Any, return_id: str) -> Any:
        account = parse_refund_account(parse_json_object(await request.read()))
        if answers.get(return_id) is None and return_id not in recent:
            raise ApiError(404, "unknown_return", f"no return {return_id} is known")
        # the same account given twice is one event; a corrected one is a new event
        account_hash = hashlib.sha256(json.dumps(account, sort_keys=True).encode()).hexdigest()
        event_id = deterministic_event_id(return_id, "BuyerDetailsProvided", account_hash[:16])
        record = {
            "envelope": new_envelope("BuyerDetailsProvided", return_id, SERVICE, event_id=event_id),
            "refund_account": account,
        }
        with event_context(record["envelope"]):
            await parts.publisher.publish([("BuyerDetailsProvided", record)])
            log.info("buyer gave a bank account", number_ends=account["number"][-4:])
        return web.json(
            {"return_id": return_id, "status": "bank_account_received", "event_id": event_id},
            status=202,
        )

    post_page(app, "/returns", create_return)
    post_page(app, "/returns/{return_id}/cancel", cancel_return)
    post_page(app, "/returns/{return_id}/bank-account", give_bank_account)
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


def main() -> int:
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    return run_worker(build(settings).app, SERVICE)
