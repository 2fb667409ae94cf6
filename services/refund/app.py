"""Composition root of the refund service: the payment providers, their routes and webhook
secrets and the marketplace (from the environment), and the `refund-routes` and
`order-ledger` tables and the `refunds` view (folded from refund.events) wired to the
handlers (services/refund/handlers.py): one consumer for the refund commands, one for the
order refund ledger (keyed by order_ref), two routes."""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

from services.decisions.refunds.provider_routing import ProviderRoutes
from services.engine import worker as runtime
from services.engine.state_store import TopicView
from services.eventing.handler_contract import Route, Subscription, Wiring
from services.eventing.request_keys import path_parameter
from services.eventing.topics import ORDER_REFUND_LEDGER, REFUND_COMMANDS, REFUND_EVENTS
from services.refund import handlers
from services.refund.handlers import SERVICE, Partners, RefundPorts
from services.refund.marketplace_client import MarketplaceClient, marketplace_http
from services.refund.psp_client import PROVIDER, PspClient, psp_http

DEFAULT_PORT = 8087
DEFAULT_WEBHOOK_SECRET = "dev-psp-webhook-secret"


def wiring(ports: RefundPorts) -> Wiring:
    commands = Subscription(
        "refund-commands",
        (REFUND_COMMANDS.name,),
        partial(handlers.handle_refund_command, ports),
        on_exhausted=partial(handlers.partner_unreachable, ports),
    )
    ledger = Subscription(
        "order-ledger",
        (ORDER_REFUND_LEDGER.name,),
        partial(handlers.keep_order_ledger, ports),
        keyed_by_return=False,
    )
    order_refunds = Route(
        "GET",
        "/orders/{order_ref}/refunds",
        partial(handlers.order_refunds, ports),
        owner_key=path_parameter("order_ref"),  # the order ledger is keyed by order_ref
    )
    webhooks = Route("POST", "/webhooks/psp", partial(handlers.psp_webhook, ports))
    return Wiring((commands, ledger), (order_refunds, webhooks))


def build(settings: runtime.ServiceSettings, partners: Partners) -> runtime.ServiceParts:
    def wire(parts: runtime.ServiceParts) -> Wiring:
        return wiring(
            RefundPorts(
                refunds=parts.view(
                    "refunds", TopicView((REFUND_EVENTS.name,), handlers.fold_answers)
                ),
                routes=parts.table("refund-routes", expires=True),
                order_ledger=parts.table("order-ledger", expires=True),
                partners=partners,
                publish=parts.publish,
                clock_s=lambda: int(time.time()),
            )
        )

    return runtime.build_service(settings, wire, Path(__file__).with_name("openapi.json"))


def partners_from_env(env: dict[str, str] | os._Environ[str] = os.environ) -> Partners:
    """PSP_PROVIDERS (JSON name → URL; default {"psp": PSP_URL}), REFUND_PROVIDER_ROUTES (JSON
    method → provider names, "*" for the rest; default: the first provider for everything),
    PSP_WEBHOOK_SECRETS (JSON name → secret; default PSP_WEBHOOK_SECRET for every provider),
    MARKETPLACE_URL, PSP_TIMEOUT_S."""
    timeout = float(env.get("PSP_TIMEOUT_S", "5"))
    urls: dict[str, str] = json.loads(
        env.get("PSP_PROVIDERS")
        or json.dumps({PROVIDER: env.get("PSP_URL", "http://127.0.0.1:8092")})
    )
    providers = {name: PspClient(psp_http(url, timeout, name), name) for name, url in urls.items()}
    routes_text = env.get("REFUND_PROVIDER_ROUTES")
    routes = (
        ProviderRoutes.parse(routes_text, list(providers))
        if routes_text
        else ProviderRoutes.single(next(iter(providers)))
    )
    default_secret = env.get("PSP_WEBHOOK_SECRET", DEFAULT_WEBHOOK_SECRET)
    secrets = {name: default_secret for name in providers}
    secrets.update(json.loads(env.get("PSP_WEBHOOK_SECRETS") or "{}"))
    marketplace_url = env.get("MARKETPLACE_URL")
    return Partners(
        providers,
        routes,
        {name: secret.encode() for name, secret in secrets.items()},
        MarketplaceClient(marketplace_http(marketplace_url, timeout)) if marketplace_url else None,
    )


def main() -> int:
    partners = partners_from_env()

    def built(settings: runtime.ServiceSettings) -> runtime.ServiceParts:
        parts = build(settings, partners)
        for provider in partners.providers.values():
            parts.on_stop(provider.aclose)
        if partners.marketplace is not None:
            parts.on_stop(partners.marketplace.aclose)
        return parts

    return runtime.run_service(SERVICE, DEFAULT_PORT, built)
