"""Composition root of the cases service: the terms (CASES_TERMS_FILE, deploy/cases/
terms.yaml), the `cases` view folded from the tickets and the case events, one consumer of
both, a timer escalating overdue cases (every CASES_SCAN_S, 5), the agents' routes (their
marketplace tokens checked as the front door checks buyers'), and the metrics."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import yaml

from services.cases import handlers
from services.cases.case_metrics import count_change, register_open_cases
from services.cases.handlers import SERVICE, CasesPorts
from services.decisions.cases.case_file import return_id_of
from services.decisions.cases.case_terms import CaseTerms, parse_case_terms
from services.engine import worker as runtime
from services.engine.due_timers import DueTimers
from services.engine.state_store import TopicView
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import HttpRequest, Route, Subscription, Wiring
from services.eventing.log_setup import get_logger
from services.eventing.marketplace_keys import BearerCheck, MarketplaceKeys
from services.eventing.marketplace_tokens import TokenTerms
from services.eventing.partner_http import PartnerHttp
from services.eventing.topics import CASE_EVENTS, SAGA_EVENTS, SUPPORT_TICKETS

DEFAULT_PORT = 8097
TERMS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "cases" / "terms.yaml"
log = get_logger(__name__)


def load_terms(path: Path | None = None) -> CaseTerms:
    chosen = path or Path(os.environ.get("CASES_TERMS_FILE") or TERMS_FILE)
    return parse_case_terms(yaml.safe_load(chosen.read_text(encoding="utf-8")))


def case_id_key(request: HttpRequest, params: Mapping[str, str]) -> str | None:
    """The owner of a case: the instance owning its return's partition."""
    return return_id_of(params.get("case_id", "")) or None


def wiring(ports: CasesPorts) -> Wiring:
    consumer = Subscription(
        "cases", (SUPPORT_TICKETS.name, CASE_EVENTS.name), partial(handlers.take, ports)
    )
    # a dispute the re-inspection decided closes its case
    disputes = Subscription(
        "disputes",
        (SAGA_EVENTS.name,),
        partial(handlers.dispute_decided, ports),
        accepts=frozenset({"DisputeDecided"}),
    )
    routes = (
        Route(
            "GET",
            "/cases",
            partial(handlers.list_cases, ports),
            reads_tables=True,
            merge=handlers.merged_lists,
        ),
        Route(
            "GET",
            "/cases/{case_id}",
            partial(handlers.show_case, ports),
            reads_tables=True,
            owner_key=case_id_key,
        ),
        Route(
            "POST",
            "/cases/{case_id}/assign",
            partial(handlers.assign_case, ports),
            reads_tables=True,
            owner_key=case_id_key,
        ),
        Route(
            "POST",
            "/cases/{case_id}/close",
            partial(handlers.close_case, ports),
            reads_tables=True,
            owner_key=case_id_key,
        ),
    )
    return Wiring((consumer, disputes), routes)


def build(settings: runtime.ServiceSettings) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        terms = load_terms()
        cases = parts.view(
            "cases",
            TopicView((SUPPORT_TICKETS.name, CASE_EVENTS.name), handlers.view_fold(terms)),
        )
        http = PartnerHttp(
            os.environ.get("MARKETPLACE_URL", "http://127.0.0.1:8093"), 3.0, partner="marketplace"
        )
        check = BearerCheck(MarketplaceKeys(http, time.monotonic), TokenTerms())
        parts.on_stop(http.aclose)
        ports = CasesPorts(
            cases,
            terms,
            parts.publish,
            now_ms,
            check,
            due=DueTimers(reloads=lambda: cases.reloads),
            on_change=count_change,
        )
        register_open_cases(cases, now_ms)

        async def escalate() -> None:
            if parts.ready and (due := handlers.due_escalations(ports)):
                log.info("cases escalated", count=len(due))
                await parts.publish_durably(due)

        parts.every(float(os.environ.get("CASES_SCAN_S", "5")), escalate)
        return wiring(ports)

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def main() -> int:
    return runtime.run_service(SERVICE, DEFAULT_PORT, build)
