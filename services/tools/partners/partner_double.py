"""The skeleton every partner double is built on (`carrier_server`, `psp_server`,
`marketplace_server`).

`PartnerDouble`: the aiohttp app (JSON errors, a log line per request, `/health`, every
`@route` handler), the fault plan with its admin endpoints and the faults it injects, and the
records its `Idempotency-Key`s created. `run_double`: settings from the environment, then
serving as its own process until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

from services.eventing.log_setup import configure_logging, get_logger
from services.tools.partners import http_support
from services.tools.partners.fault_injection import FaultPlan, FaultPlanError
from services.tools.partners.http_support import ApiError, RecordT

PlanT = TypeVar("PlanT", bound=FaultPlan)
HandlerT = TypeVar("HandlerT", bound=Callable[..., Awaitable[web.StreamResponse]])
_ROUTE = "partner_double_route"

log = get_logger(__name__)


def route(method: str, path: str) -> Callable[[HandlerT], HandlerT]:
    """Marks a `PartnerDouble` handler method as the one for `method path`."""

    def mark(handler: HandlerT) -> HandlerT:
        setattr(handler, _ROUTE, (method, path))
        return handler

    return mark


class PartnerDouble(Generic[PlanT, RecordT]):
    """What every double has: a fault plan, the records its `Idempotency-Key`s created, an app.

    `partner` names the double in the 503 detail ("the {partner} is temporarily unavailable").
    """

    def __init__(self, faults: PlanT, *, partner: str) -> None:
        self.faults = faults
        self.keys: http_support.IdempotencyKeys[RecordT] = http_support.IdempotencyKeys()
        self._partner = partner

    def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: what runs before the first request and after the last."""
        raise NotImplementedError

    def app(self) -> web.Application:
        """JSON errors and a log line per request, `/health`, then every `@route` handler: the
        fault plan's, then the double's own in the order they are defined."""
        app = web.Application(middlewares=[http_support.errors_and_request_log])
        app.cleanup_ctx.append(self.lifespan)
        app.router.add_get("/health", http_support.health)
        for cls in reversed(type(self).__mro__):
            for name, attribute in vars(cls).items():
                marked: tuple[str, str] | None = getattr(attribute, _ROUTE, None)
                if marked is not None:
                    method, path = marked
                    app.add_routes([web.route(method, path, getattr(self, name))])
        return app

    @route("GET", "/admin/faults")
    async def get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    @route("POST", "/admin/faults")
    async def set_faults(self, request: web.Request) -> web.Response:
        changes = await http_support.json_object(request)
        try:
            self.faults = self.faults.updated(changes)
        except FaultPlanError as exc:
            raise ApiError(400, "invalid_fault_plan", str(exc)) from exc
        log.info("fault plan changed", faults=self.faults.to_dict())
        return web.json_response(self.faults.to_dict())

    async def inject_faults(self) -> None:
        """Latency, then maybe a 503 before anything is done."""
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_s)
        if self.faults.should_error():
            log.warning("injected fault: answering 503 without doing anything")
            raise http_support.unavailable(self._partner)

    def ghost_if_planned(self, what: str) -> None:
        """Maybe answer 503 although the operation was done (the caller never hears)."""
        if self.faults.should_ghost():
            log.warning("injected ghost: operation done, answering 503", operation=what)
            raise http_support.unavailable(self._partner)


def faults_from_env(plan: type[PlanT], env: Mapping[str, str], name: str) -> PlanT:
    """The plan in the variable `name` (no faults if unset); ValueError names the variable."""
    try:
        return plan.from_json(env.get(name))
    except FaultPlanError as exc:
        raise ValueError(f"{name}: {exc}") from exc


class DoubleSettings(Protocol):
    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


SettingsT = TypeVar("SettingsT", bound=DoubleSettings)


def run_double(
    service: str,
    settings_from_env: Callable[[Mapping[str, str]], SettingsT],
    double: Callable[[SettingsT], PartnerDouble[Any, Any]],
) -> int:
    """Serve the double until SIGTERM/SIGINT; 2 if its settings are invalid, else 0."""
    configure_logging(service)
    try:
        settings = settings_from_env(os.environ)
    except ValueError as exc:
        log.error("invalid settings", error=str(exc))
        return 2
    # run_app turns SIGTERM/SIGINT into a graceful shutdown (cleanup contexts run)
    web.run_app(
        double(settings).app(),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
    )
    log.info(f"{service} double stopped")
    return 0
