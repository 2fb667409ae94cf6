"""The services' HTTP routes on Faust's web server: a route calls a handler of
`handler_contract` (`HttpRequest` in, `HttpAnswer` out) and turns its refusals into JSON.

Every refusal is `{"error": <code>, "detail": <human reason>, "fields": [...]}` with a 4xx
status (see `request_fields`); anything unexpected is a logged 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web_exceptions import HTTPException

from services.eventing.handler_contract import HttpRequest, RouteHandler
from services.eventing.log_setup import get_logger
from services.eventing.request_fields import ApiError

log = get_logger(__name__)


async def answer_request(
    web: Any, request: Any, handler: RouteHandler, params: dict[str, Any]
) -> Any:
    """Run `handler(HttpRequest, **params)` for one aiohttp request; its answer as JSON."""
    try:
        body = await request.read() if request.method in ("POST", "PUT") else b""
        incoming = HttpRequest(body, request.headers, request.query)
        answer = await handler(incoming, **params)
    except ApiError as exc:
        log.info("request refused", status=exc.status, error=exc.code, detail=exc.detail[:300])
        return web.json(exc.body(), status=exc.status)
    except HTTPException as exc:  # raised by aiohttp itself, e.g. a body over its limit
        code = "body_too_large" if exc.status == 413 else "http_error"
        log.info("request refused by the HTTP layer", status=exc.status, error=code)
        return web.json({"error": code, "detail": exc.reason}, status=exc.status)
    except Exception:
        log.exception("request failed")
        return web.json({"error": "internal", "detail": "unexpected error; see logs"}, status=500)
    return web.json(answer.body, status=answer.status, headers=answer.headers or None)


def add_route(app: Any, method: str, path: str, handler: RouteHandler) -> None:
    """Serve `handler` for `method` (GET or POST) on `path` ({name} path parameters are
    passed as keyword arguments)."""
    from faust.web import View as FaustView

    async def serve(view: Any, request: Any, **params: Any) -> Any:
        return await answer_request(view, request, handler, params)

    # one View class per route: Faust maps a path to a class
    name = "".join(part.title() for part in path.replace("{", "").replace("}", "").split("/"))
    app.page(path)(type(f"{method.title()}{name}View", (FaustView,), {method.lower(): serve}))
