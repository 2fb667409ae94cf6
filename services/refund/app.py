"""Composition root of the refund service: the payment providers, their routes and webhook
secrets and the marketplace (from the environment), and the `refunds`, `refund-routes` and
`order-ledger` tables wired to the handlers (services/refund/handlers.py): one agent for the
refund commands, one for the order refund ledger (keyed by order_ref), two routes."""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from services.decisions.refunds.provider_routing import ProviderRoutes
from services.eventing.http_api import add_route
from services.eventing.openapi_docs import add_openapi_page
from services.eventing.service_runtime import (
    ServiceParts,
    ServiceSettings,
    add_health_page,
    build_parts,
    json_table,
    raw_topic,
    run_worker,
    while_tables_recover,
)
from services.eventing.topics import ORDER_REFUND_LEDGER, REFUND_COMMANDS
from services.refund import handlers
from services.refund.handlers import SERVICE, Partners, RefundPorts
from services.refund.marketplace_client import MarketplaceClient, marketplace_http
from services.refund.psp_client import PROVIDER, PspClient, psp_http

DEFAULT_PORT = 8087
DEFAULT_WEBHOOK_SECRET = "dev-psp-webhook-secret"


def build(settings: ServiceSettings, partners: Partners) -> ServiceParts:
    parts = build_parts(settings)
    app = parts.app
    ports = RefundPorts(
        refunds=json_table(app, "refunds"),
        routes=json_table(app, "refund-routes"),
        order_ledger=json_table(app, "order-ledger"),
        partners=partners,
        publish=parts.publisher.publish,
        clock_s=lambda: int(time.time()),
    )

    @app.agent(raw_topic(app, REFUND_COMMANDS.name), name="refund-commands", concurrency=1)
    async def refund_commands(stream: Any) -> None:
        await parts.consumer.run(
            stream,
            partial(handlers.handle_refund_command, ports),
            on_exhausted=partial(handlers.partner_unreachable, ports),
        )

    @app.agent(raw_topic(app, ORDER_REFUND_LEDGER.name), name="order-ledger", concurrency=1)
    async def order_ledger_commands(stream: Any) -> None:
        await parts.consumer.run(
            stream, partial(handlers.keep_order_ledger, ports), keyed_by_return=False
        )

    order_refunds = while_tables_recover(app, partial(handlers.order_refunds, ports))
    add_route(app, "GET", "/orders/{order_ref}/refunds", order_refunds)
    add_route(app, "POST", "/webhooks/psp", partial(handlers.psp_webhook, ports))
    add_health_page(app, SERVICE)
    add_openapi_page(app, Path(__file__).with_name("openapi.json"))
    return parts


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
    providers = {name: PspClient(psp_http(url, timeout), name) for name, url in urls.items()}
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
    settings = ServiceSettings.from_env(SERVICE, DEFAULT_PORT)
    return run_worker(build(settings, partners_from_env()).app, SERVICE)
