"""The services' HTTP routes on aiohttp: a route calls a handler of `handler_contract`
(`HttpRequest` in, `HttpAnswer` out) and turns its refusals into JSON.

Every refusal is `{"error": <code>, "detail": <human reason>, "fields": [...]}` with a 4xx
status (see `request_fields`); anything unexpected is a logged 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import REGISTRY, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from services.engine.documented_parameters import checked_parameters
from services.eventing.handler_contract import HttpAnswer, HttpRequest, RouteHandler
from services.eventing.log_setup import get_logger
from services.eventing.openapi_docs import load_openapi_document
from services.eventing.request_fields import ApiError

log = get_logger(__name__)

HTTP_SECONDS = Histogram(
    "boomerang_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNMATCHED_ROUTE = "unmatched"  # a path no route serves: one label, whatever was asked


def route_template(request: web.Request) -> str:
    """The route's template ("/returns/{return_id}"), never the path asked (ids are not
    labels)."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def timed_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request's time into HTTP_SECONDS (a refusal raised by aiohttp, 404 and 405
    included, with its own status)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        HTTP_SECONDS.labels(request.method, route_template(request), str(status)).observe(
            time.perf_counter() - started
        )


def new_web_app(*middlewares: Any, **options: Any) -> web.Application:
    """An aiohttp application with every request timed for /metrics (its own `middlewares`
    run inside the timing, so the time and status are those of the answer sent)."""
    return web.Application(middlewares=[timed_requests, *middlewares], **options)


def add_metrics_page(app: web.Application) -> None:
    """GET /metrics: the process's metrics, as Prometheus text or, when the scraper asks
    for it, OpenMetrics (which carries the exemplars)."""

    disable_created_metrics()  # no `_created` series beside every counter and histogram

    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(REGISTRY), headers={"Content-Type": content_type})

    app.router.add_get("/metrics", metrics)


def json_answer(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


async def answer_request(request: web.Request, handler: RouteHandler) -> web.Response:
    """Run `handler(HttpRequest, **path parameters)` for one request; its answer as JSON."""
    try:
        body = await request.read() if request.method in ("POST", "PUT") else b""
        incoming = HttpRequest(body, request.headers, request.query)
        answer: HttpAnswer = await handler(incoming, **request.match_info)
    except ApiError as exc:
        log.info("request refused", status=exc.status, error=exc.code, detail=exc.detail[:300])
        return json_answer(exc.body(), exc.status, exc.headers or None)
    except web.HTTPException as exc:  # raised by aiohttp itself, e.g. a body over its limit
        code = "body_too_large" if exc.status == 413 else "http_error"
        log.info("request refused by the HTTP layer", status=exc.status, error=code)
        return json_answer({"error": code, "detail": exc.reason}, exc.status)
    except Exception:
        log.exception("request failed")
        return json_answer({"error": "internal", "detail": "unexpected error; see logs"}, 500)
    return json_answer(answer.body, answer.status, answer.headers or None)


def add_route(app: web.Application, method: str, path: str, handler: RouteHandler) -> None:
    """Serve `handler` for `method` on `path` ({name} path parameters are passed as keyword
    arguments)."""

    async def serve(request: web.Request) -> web.Response:
        return await answer_request(request, handler)

    app.router.add_route(method, path, serve)


def add_openapi_page(app: web.Application, path: Path) -> None:
    """GET /openapi.json: the document at `path`, read now (a bad one stops the start); every
    request's parameters are checked against it from then on (`documented_parameters`)."""
    document = load_openapi_document(path)
    app.middlewares.append(checked_parameters(document))

    async def openapi(request: web.Request) -> web.Response:
        return json_answer(document)

    app.router.add_get("/openapi.json", openapi)


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[asyncio.Event]:
    """`app` served on host:port until the block ends; the event it gives is set on SIGTERM
    or SIGINT (for a process whose only loop is its web server, or its own consumer)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(number, stop.set)
    log.info("serving", host=host, port=port)
    try:
        yield stop
    finally:
        await runner.cleanup()
