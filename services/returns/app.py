"""Composition root of the returns front door: the policy (files under `policy_dir()`,
reloaded when they change) and the `answers` table wired to the handlers
(services/returns/handlers.py), one consumer keeping the answers, three POST routes and,
when it decides with the files, GET /policies (the files, and the layers risk's flags
generate: SellerFlagged, BuyerFlagged); admission control measuring the
pipeline's queues (pipeline_backlog.py)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from services.decisions.admission import Refusal, admission
from services.decisions.admission_pace import AdmissionPace
from services.decisions.caller_quota import CallerQuotas, QuotaTerms
from services.engine import worker as runtime
from services.engine.global_table import GlobalTable, GlobalTableUnavailable
from services.engine.state_store import TopicView
from services.eventing.avro_codec import CodecError
from services.eventing.envelope import now_ms
from services.eventing.handler_contract import HttpAnswer, HttpRequest, Route, Subscription, Wiring
from services.eventing.log_setup import get_logger
from services.eventing.marketplace_keys import BearerCheck, MarketplaceKeys
from services.eventing.marketplace_tokens import BUYER, SUPPORT, Caller, TokenTerms
from services.eventing.partner_http import PartnerHttp
from services.eventing.request_keys import path_parameter
from services.eventing.topics import (
    DAY_MS,
    RETURNS_EVENTS,
    RISK_BUYERS,
    RISK_SELLERS,
    TopicSpec,
)
from services.policy_files.generated_layers import buyer_layers, generated_layers
from services.policy_files.loader import policy_dir
from services.policy_files.policy_book import PolicyBook
from services.returns import handlers
from services.returns.admission_settings import admission_limits_from_env, pace_settings_from_env
from services.returns.handlers import SERVICE, ReturnsPorts
from services.returns.marketplace_orders import CacheTerms, MarketplaceOrders
from services.returns.order_facts import OrderSource
from services.returns.pipeline_backlog import REFRESH_S, PipelineBacklog
from services.returns.return_policy import PolicyFileRules, ReturnPolicy

DEFAULT_PORT = 8080
POLICY_RELOAD_S = 2.0
log = get_logger(__name__)


def wiring(ports: ReturnsPorts, *more_routes: Route) -> Wiring:
    answers = Subscription(
        "answers", (RETURNS_EVENTS.name,), partial(handlers.record_answers, ports)
    )
    routes = (
        # each answered by the instance owning the return's partition (its `answers`)
        Route(
            "POST",
            "/returns",
            partial(handlers.create_return, ports),
            owner_key=handlers.keyed_return_id,
            before_forwarding=ports.refused_before_forwarding,
        ),
        Route(
            "POST",
            "/returns/{return_id}/cancel",
            partial(handlers.cancel_return, ports),
            owner_key=path_parameter("return_id"),
        ),
        Route(
            "POST",
            "/returns/{return_id}/bank-account",
            partial(handlers.give_bank_account, ports),
            owner_key=path_parameter("return_id"),
        ),
        Route(
            "POST",
            "/buyers/{buyer_id}/erasure",
            partial(handlers.erase_buyer, ports),
            merge=handlers.merged_erasures,
        ),
        Route(
            "POST",
            "/returns/{return_id}/drop-off",
            partial(handlers.choose_drop_off, ports),
            owner_key=path_parameter("return_id"),
        ),
        Route(
            "POST",
            "/returns/{return_id}/pickup-window",
            partial(handlers.move_pickup, ports),
            owner_key=path_parameter("return_id"),
        ),
        Route(
            "POST",
            "/returns/{return_id}/disputes",
            partial(handlers.dispute_return, ports),
            owner_key=path_parameter("return_id"),
        ),
        *more_routes,
    )
    return Wiring((answers,), routes)


def marketplace_orders_from_env(env: Mapping[str, str] = os.environ) -> MarketplaceOrders:
    """The order system at MARKETPLACE_URL (the double's port by default), its answers
    within ORDER_TIMEOUT_S, delivered orders cached (ORDER_CACHE_SIZE, ORDER_CACHE_TTL_S)."""
    url = env.get("MARKETPLACE_URL", "http://127.0.0.1:8093")
    http = PartnerHttp(url, float(env.get("ORDER_TIMEOUT_S", "3")), partner="marketplace")
    return MarketplaceOrders(http, time.monotonic, CacheTerms.from_env(env))


def token_terms_from_env(env: Mapping[str, str] = os.environ) -> TokenTerms:
    defaults = TokenTerms()
    return TokenTerms(
        issuer=env.get("BUYER_TOKEN_ISSUER") or defaults.issuer,
        audience=env.get("BUYER_TOKEN_AUDIENCE") or defaults.audience,
        leeway_s=int(env.get("BUYER_TOKEN_LEEWAY_S", str(defaults.leeway_s))),
        fresh_sign_in_s=int(env.get("BUYER_FRESH_SIGN_IN_S", str(defaults.fresh_sign_in_s))),
    )


def quotas_from_env(env: Mapping[str, str] = os.environ) -> dict[str, CallerQuotas]:
    """Each role's quota: BUYER_REQUESTS_* and SUPPORT_REQUESTS_* (per minute, burst);
    BUYER_QUOTAS_KEPT callers kept per role."""
    kept = int(env.get("BUYER_QUOTAS_KEPT", str(QuotaTerms().callers_kept)))

    def terms(prefix: str, defaults: QuotaTerms) -> QuotaTerms:
        return QuotaTerms(
            per_minute=float(env.get(f"{prefix}_REQUESTS_PER_MINUTE", str(defaults.per_minute))),
            burst=float(env.get(f"{prefix}_REQUESTS_BURST", str(defaults.burst))),
            callers_kept=kept,
        )

    return {
        BUYER: CallerQuotas(terms("BUYER", QuotaTerms())),
        SUPPORT: CallerQuotas(terms("SUPPORT", handlers.SUPPORT_QUOTA)),
    }


def marketplace_sign_in_from_env(env: Mapping[str, str] = os.environ) -> BearerCheck:
    """Buyers' tokens checked with the keys of the marketplace at MARKETPLACE_URL, on the
    terms of BUYER_TOKEN_* (marketplace_tokens.TokenTerms)."""
    url = env.get("MARKETPLACE_URL", "http://127.0.0.1:8093")
    http = PartnerHttp(url, float(env.get("ORDER_TIMEOUT_S", "3")), partner="marketplace")
    return BearerCheck(MarketplaceKeys(http, time.monotonic), token_terms_from_env(env))


def build(
    settings: runtime.ServiceSettings,
    policy: ReturnPolicy | None = None,
    orders: OrderSource | None = None,
    authenticate: Callable[[str | None, int], Awaitable[Caller]] | None = None,
) -> runtime.ServiceParts:
    """Without `policy`, decides with the policy files of `policy_dir()` and reloads them
    when they change (a bad set is rejected; the previous one stays active); without
    `orders` and `authenticate`, reads orders and checks tokens with the marketplace
    (MARKETPLACE_URL)."""

    def wire(parts: runtime.ServiceParts) -> Wiring:
        answers = parts.view("answers", TopicView((RETURNS_EVENTS.name,), handlers.fold_answer))
        admit = admission_control(parts)
        order_source = orders
        if order_source is None:
            marketplace = marketplace_orders_from_env()
            parts.on_stop(marketplace.aclose)
            order_source = marketplace
        check = authenticate
        if check is None:
            sign_in = marketplace_sign_in_from_env()
            parts.on_stop(sign_in.key_set.aclose)
            check = sign_in
        shared = {
            "admit": admit,
            "quotas": quotas_from_env(),
            "token_terms": token_terms_from_env(),
        }
        if policy is not None:
            return wiring(
                ReturnsPorts(answers, policy, parts.publish, now_ms, order_source, check, **shared)
            )
        book = PolicyBook(policy_dir())
        ports = ReturnsPorts(
            answers, PolicyFileRules(book), parts.publish, now_ms, order_source, check, **shared
        )
        return wiring(ports, serve_policy_book(parts, book))

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def admission_control(parts: runtime.ServiceParts) -> Callable[[int], Refusal | None]:
    """New returns refused while a return taken now would wait too long in the pipeline's
    queues, the coordinator has not handled accepted ones for too long, or too many
    requests are in progress here (decisions/admission.py), or past the pace set from the
    wait (decisions/admission_pace.py); measured every REFRESH_S on the broker."""
    limits = admission_limits_from_env()
    backlog = PipelineBacklog(
        parts.settings.bootstrap, RETURNS_EVENTS.name, RETURNS_EVENTS.partitions
    )
    pace = AdmissionPace(pace_settings_from_env(limits=limits), now_ms())

    async def measure() -> None:
        await backlog.refresh()
        pace.adjust(now_ms(), backlog.reading.pipeline_wait_s)

    def admit(in_flight: int) -> Refusal | None:
        refusal = admission(backlog.reading, in_flight, limits, random.random())
        if refusal is None and not pace.take(now_ms()):
            return Refusal(f"taking {pace.rate:.0f} new returns/s here while the queues drain", 1)
        return refusal

    parts.every(REFRESH_S, measure)
    parts.on_stop(backlog.stop)
    parts.health_fields["admission"] = lambda: {
        **backlog.shown(),
        "pace_per_s": None if pace.rate is None else round(pace.rate),
    }
    return admit


def flags_table(
    parts: runtime.ServiceParts, topic: TopicSpec, name: str
) -> GlobalTable[dict[str, Any]]:
    """Risk's flags (sellers' standings, buyers held or declined; compacted), read whole:
    each generates a stricter policy layer for its returns."""
    codec = parts.codec

    def record_of(value: bytes) -> dict[str, Any]:
        try:
            return codec.decode(value).record
        except CodecError as exc:
            raise ValueError(str(exc)) from exc

    table: GlobalTable[dict[str, Any]] = GlobalTable(
        parts.settings.bootstrap,
        topic.name,
        topic.partitions,
        record_of,
        client_id=f"{parts.settings.group_id}-{parts.settings.instance_id}-{name}",
    )
    parts.on_stop(table.stop)
    return table


def serve_policy_book(parts: runtime.ServiceParts, book: PolicyBook) -> Route:
    """Reload the policy files when they change; the GET /policies route shows the active
    set and why a newer one was refused."""
    rejected: list[str] = []  # the problems of the last set that failed to load
    standings = flags_table(parts, RISK_SELLERS, "sellers")
    buyers = flags_table(parts, RISK_BUYERS, "buyers")

    async def reload_policies() -> None:
        try:
            sellers_flagged = await standings.caught_up()
            buyers_flagged = await buyers.caught_up()
        except GlobalTableUnavailable as exc:
            log.warning("risk's flags unreadable; generated layers kept", error=str(exc))
        else:
            today = now_ms() // DAY_MS
            book.set_generated(
                generated_layers(sellers_flagged.values(), book.files)
                + buyer_layers(buyers_flagged.values(), book.files, today)
            )
        outcome = book.reload_if_changed()
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

    parts.every(POLICY_RELOAD_S, reload_policies)

    async def active_policies(request: HttpRequest) -> HttpAnswer:
        return HttpAnswer(
            200,
            {
                "policy_set": book.current.digest,
                "directory": str(book.directory),
                "layers": sorted(layer.label for layer in book.current.layers),
                "rejected_problems": list(rejected),
            },
        )

    log.info("policies loaded", policy_set=book.current.digest, directory=str(book.directory))
    return Route("GET", "/policies", active_policies)


def main() -> int:
    return runtime.run_service(SERVICE, DEFAULT_PORT, build)
