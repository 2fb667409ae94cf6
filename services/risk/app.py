"""Composition root of the risk service: the rule sets (live, and shadow when configured),
the reviewers' tokens, the `returns`, `orders` and `windows` tables, the `cases` view and a
global table of the windows' changelog, wired to the handlers (services/risk/handlers.py).

Consumers: the return events and inspections (counted), the orders (counted), the
repartitioned counts (windows), the saga's risk checks (decided), the service's own
decisions and verdicts (the cases view) and sellers' standings (the standings view). A
timer judges the sellers. Routes: GET /reviews, GET /reviews/{return_id},
POST /reviews/{return_id}/verdict, GET /governance/sellers/{seller_id}.

Configuration: RISK_RULES_FILE (default deploy/risk/live.yaml), RISK_SHADOW_RULES_FILE
(none by default), RISK_REVIEWER_TOKENS (`name:token,…`, development tokens when unset),
RISK_REVIEW_HOURS (48), RISK_GOVERNANCE_INTERVAL_S (600: how often sellers are judged; each
seller and market once a day).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import yaml

from services.decisions.risk.return_features import HORIZON_DAYS
from services.decisions.risk.rule_sets import RuleSet, parse_rule_set
from services.engine import worker as runtime
from services.engine.global_table import GlobalTable
from services.engine.partition_owners import partition_for
from services.engine.state_store import TopicView
from services.engine.stored_value import value_of
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.log_setup import get_logger
from services.eventing.named_tokens import parse_named_tokens
from services.eventing.request_keys import path_parameter
from services.eventing.topics import (
    DAY_MS,
    INSPECTION_EVENTS,
    ORDER_RETENTION_DAYS,
    ORDERS,
    RETURNS_EVENTS,
    RISK_COMMANDS,
    RISK_COUNTS,
    RISK_EVENTS,
    RISK_SELLERS,
)
from services.risk import handlers, risk_metrics
from services.risk.handlers import SERVICE, RiskPorts
from services.tools.oncall.audit_trail import Operation, audit_event
from services.tools.oncall.audit_trail import record as record_audit

DEFAULT_PORT = 8089
REPO_ROOT = Path(__file__).resolve().parents[2]
LIVE_RULES = REPO_ROOT / "deploy" / "risk" / "live.yaml"
DEV_REVIEWER_TOKENS = "reviewer-1:dev-reviewer-token-0001,reviewer-2:dev-reviewer-token-0002"
# a key's window entry is forgotten this long after its last increment: every day it holds
# is then past the longest window a rule reads
WINDOW_RETENTION_MS = (HORIZON_DAYS + 1) * DAY_MS
# a decision reads the windows as caught up at most this long ago (decisions arriving
# together share one catch-up instead of each reading the changelog's end offsets)
WINDOWS_MAX_AGE_S = 0.25
# sellers are judged only with at most this many counts records not yet folded here (live
# traffic keeps a few in flight; at 1,000 a sweep during the demo's seeding judged the
# sellers on all but their last days and flagged an honest one, twice in four runs)
GOVERNANCE_MAX_BEHIND = 100
log = get_logger(__name__)


def rule_set_from(path: Path) -> RuleSet:
    return parse_rule_set(yaml.safe_load(path.read_text()), str(path))


def wiring(ports: RiskPorts) -> Wiring:
    facts = Subscription(
        "return-facts",
        (RETURNS_EVENTS.name, INSPECTION_EVENTS.name),
        partial(handlers.count_return_events, ports),
        accepts=frozenset({"ReturnRequested", "ReturnAccepted", "InspectionRecorded"}),
    )
    orders = Subscription(
        "orders",
        (ORDERS.name,),
        partial(handlers.count_orders, ports),
        accepts=frozenset({"OrderPlaced", "OrderDelivered"}),
        keyed_by_return=False,
    )
    windows = Subscription(
        "windows", (RISK_COUNTS.name,), partial(handlers.fold_counts, ports), keyed_by_return=False
    )
    checks = Subscription("checks", (RISK_COMMANDS.name,), partial(handlers.decide_return, ports))
    decisions = Subscription(
        "decisions", (RISK_EVENTS.name,), partial(handlers.follow_decisions, ports)
    )
    sellers = Subscription(
        "sellers",
        (RISK_SELLERS.name,),
        partial(handlers.follow_standings, ports),
        keyed_by_return=False,
    )
    by_return = path_parameter("return_id")
    routes = (
        Route("GET", "/reviews", partial(handlers.list_cases, ports), merge=handlers.merged_cases),
        Route(
            "GET",
            "/reviews/{return_id}",
            partial(handlers.show_case, ports),
            owner_key=by_return,
        ),
        Route(
            "POST",
            "/reviews/{return_id}/verdict",
            partial(handlers.give_verdict, ports),
            owner_key=by_return,
        ),
        Route(
            "GET",
            "/governance/sellers/{seller_id}",
            partial(handlers.seller_view, ports),
            merge=handlers.merged_seller_views,
        ),
    )
    return Wiring((checks, decisions, facts, orders, windows, sellers), routes)


def judged_here(parts: runtime.ServiceParts, seller_id: str, market: str) -> bool:
    """Whether this instance judges the seller in the market: it owns the partition of its
    standing's key (one instance does, whatever their number)."""
    owned = parts.loop.owned_partitions() if parts.loop else None
    partition = partition_for(handlers.standing_key(seller_id, market), RISK_SELLERS.partitions)
    return owned is not None and partition in owned


def build(
    settings: runtime.ServiceSettings,
    live: RuleSet,
    shadow: RuleSet | None,
    reviewer_tokens: dict[str, str],
    review_hours: int,
    governance_interval_s: float = 600.0,
) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        windows = parts.store.table(
            "windows",
            f"{parts.settings.group_id}-windows-changelog",
            retention_ms=WINDOW_RETENTION_MS,
        )
        every_key: GlobalTable[Any] = GlobalTable(
            parts.settings.bootstrap,
            windows.changelog,
            RISK_COUNTS.partitions,
            value_of,
            client_id=f"{parts.settings.group_id}-{parts.settings.instance_id}-windows",
            key_of=orjson.loads,  # a changelog's keys are JSON strings
        )
        parts.on_stop(every_key.stop)

        async def audit(event: dict[str, Any]) -> None:
            operation = Operation(
                event["operation"], event["reason"], event["operation_id"], event["actor"]
            )
            await record_audit(
                parts.settings.bootstrap,
                audit_event(
                    operation,
                    event["at_ms"],
                    "completed",
                    event["selection"],
                    None,
                    event["result"],
                ),
            )

        ports = RiskPorts(
            returns=parts.table("returns", expires=True),
            orders=parts.store.table(
                "orders",
                f"{parts.settings.group_id}-orders-changelog",
                retention_ms=ORDER_RETENTION_DAYS * DAY_MS,
            ),
            windows=windows,
            cases=parts.view("cases", TopicView((RISK_EVENTS.name,), handlers.fold_case)),
            all_windows=partial(every_key.caught_up, WINDOWS_MAX_AGE_S),
            live=live,
            shadow=shadow,
            reviewer_tokens=reviewer_tokens,
            publish=parts.publish_durably,
            audit=audit,
            clock_ms=now_ms,
            review_hours=review_hours,
            standings=parts.view(
                "standings", TopicView((RISK_SELLERS.name,), handlers.fold_standing)
            ),
            judges=partial(judged_here, parts),
        )

        risk_metrics.REVIEW_QUEUE.cases = lambda: ports.cases
        risk_metrics.REVIEW_QUEUE.status_of = lambda case: handlers.case_status(case, now_ms())

        async def judge_sellers() -> None:
            """Sellers are judged on counts folded to the end of the counts topic: judged
            on a part of them (a restart, a backfill), an honest seller stood out among
            the few peers counted so far, and a flag lasts."""
            if not parts.ready or parts.loop is None:
                return
            behind = await parts.loop.records_behind(RISK_COUNTS.name)
            if behind is None or behind > GOVERNANCE_MAX_BEHIND:
                log.info("sellers not judged: counts still being folded", behind=behind)
                return
            if due := await handlers.judge_sellers(ports):
                await parts.publish_durably(due)

        parts.every(governance_interval_s, judge_sellers)
        return wiring(ports)

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def main() -> int:
    live = rule_set_from(Path(os.environ.get("RISK_RULES_FILE") or LIVE_RULES))
    shadow_file = os.environ.get("RISK_SHADOW_RULES_FILE")
    shadow = rule_set_from(Path(shadow_file)) if shadow_file else None
    raw_tokens = os.environ.get("RISK_REVIEWER_TOKENS")
    if raw_tokens is None:
        log.warning("RISK_REVIEWER_TOKENS is not set: using development tokens")
        raw_tokens = DEV_REVIEWER_TOKENS
    tokens = parse_named_tokens(raw_tokens, "reviewer")
    review_hours = int(os.environ.get("RISK_REVIEW_HOURS") or 48)
    interval = float(os.environ.get("RISK_GOVERNANCE_INTERVAL_S") or 600)
    return runtime.run_service(
        SERVICE,
        DEFAULT_PORT,
        lambda settings: build(settings, live, shadow, tokens, review_hours, interval),
    )
