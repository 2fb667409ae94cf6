"""Every request's path and query parameters checked against the operation's OpenAPI
document before its handler runs, so what a service takes is what its document says
(bodies are read field by field by each service's parser, `request_fields`).

- a path parameter that breaks its schema names nothing: 404 `not_found`;
- a query parameter that breaks its schema, or is given twice where one is documented:
  400 `invalid_parameter`, naming it (`query.format`);
- undocumented query parameters are ignored. Headers are the handlers' (a malformed
  signature or token is their 401, a malformed Idempotency-Key their 400, as documented).

Values arrive as text and are read the way the document types them (an integer
parameter's "7" is 7) before validation.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from services.eventing.request_fields import ApiError, FieldProblem

DOCUMENT_URI = "urn:boomerang:service-openapi"
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # path or query
    validator: Draft202012Validator
    kind: str  # the schema's type ("string" when it gives none)
    item_kind: str  # an array's items' type


def _resolved(document: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to `#/components/...` followed (parameters may be kept there)."""
    while "$ref" in value:
        target: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        value = target
    return value


def _python_patterns(value: Any) -> Any:
    """The document with its ECMA-262 patterns as Python reads them alike: a final `$` is
    the end of the text (Python's `$` also matches before a final newline, ECMA's does not:
    "DE\\n" must not pass `^[A-Z]{2}$`)."""
    if isinstance(value, dict):
        return {
            key: (
                item[:-1] + r"(?![\s\S])"
                if key == "pattern"
                and isinstance(item, str)
                and item.endswith("$")
                and not item.endswith("\\$")
                else _python_patterns(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_python_patterns(item) for item in value]
    return value


def _kind(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "string")
    return kind if isinstance(kind, str) else "string"


def _typed(text: str, kind: str) -> Any:
    """A parameter's text as the type its schema gives (unchanged when it is not one)."""
    if kind == "integer" and WHOLE_NUMBER.fullmatch(text):
        return int(text)
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text


class DocumentedParameters:
    """The parameters of every operation of one document, keyed by method and path
    template."""

    def __init__(self, document: dict[str, Any]) -> None:
        document = _python_patterns(document)
        registry = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))
        self.operations: dict[tuple[str, str], tuple[Parameter, ...]] = {}
        for path, item in document.get("paths", {}).items():
            shared = item.get("parameters", [])
            for method in METHODS:
                operation = item.get(method)
                if not isinstance(operation, dict):
                    continue
                found: dict[tuple[str, str], Parameter] = {}
                for index, raw in enumerate([*shared, *operation.get("parameters", [])]):
                    parameter = _resolved(document, raw)
                    if parameter.get("in") not in ("path", "query"):
                        continue
                    schema = _resolved(document, parameter.get("schema", {}))
                    pointer = self._pointer(path, method, raw, index, len(shared))
                    validator = Draft202012Validator(
                        {"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry
                    )
                    items = _resolved(document, schema.get("items", {}))
                    found[(parameter["in"], parameter["name"].lower())] = Parameter(
                        parameter["name"], parameter["in"], validator, _kind(schema), _kind(items)
                    )
                self.operations[(method.upper(), path)] = tuple(found.values())

    @staticmethod
    def _pointer(path: str, method: str, raw: dict[str, Any], index: int, shared: int) -> str:
        if "$ref" in raw:
            return f"{raw['$ref'].removeprefix('#')}/schema"
        escaped = path.replace("~", "~0").replace("/", "~1")
        if index < shared:
            return f"/paths/{escaped}/parameters/{index}/schema"
        return f"/paths/{escaped}/{method}/parameters/{index - shared}/schema"

    def refusal(
        self,
        method: str,
        template: str,
        path_values: Mapping[str, str],
        query: Any,
    ) -> ApiError | None:
        """Why the request breaks its operation's parameters, or None (also for an
        undocumented operation)."""
        parameters = self.operations.get((method, template))
        if not parameters:
            return None
        path_problems: list[FieldProblem] = []
        problems: list[FieldProblem] = []
        for parameter in parameters:
            where = f"{parameter.location}.{parameter.name}"
            if parameter.location == "path":
                value: Any = _typed(path_values.get(parameter.name, ""), parameter.kind)
                sink = path_problems
            else:
                given = query.getall(parameter.name, [])
                if not given:
                    continue
                if parameter.kind == "array":
                    value = [_typed(text, parameter.item_kind) for text in given]
                elif len(given) > 1:
                    problems.append(FieldProblem(where, "is given more than once"))
                    continue
                else:
                    value = _typed(given[0], parameter.kind)
                sink = problems
            error = next(iter(parameter.validator.iter_errors(value)), None)
            if error is not None:
                sink.append(FieldProblem(where, _problem_text(error.message)))
        if path_problems:
            detail = "; ".join(f"{p.field}: {p.problem}" for p in path_problems)
            return ApiError(404, "not_found", f"no such resource ({detail})", path_problems)
        if problems:
            detail = "; ".join(f"{p.field}: {p.problem}" for p in problems[:5])
            return ApiError(400, "invalid_parameter", detail, problems)
        return None


def _problem_text(message: str) -> str:
    """jsonschema's message without the (possibly huge, possibly binary) value it quotes."""
    for marker in (
        " does not match ",
        " is not one of ",
        " is not of type ",
        " is too long",
        " is too short",
        " is less than",
        " is greater than",
    ):
        _, found, tail = message.partition(marker)
        if found:
            return f"{found.strip()}{tail}"[:200]
    return message[:200]


def checked_parameters(
    document: dict[str, Any],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """An aiohttp middleware refusing requests whose parameters break `document`."""
    documented = DocumentedParameters(document)

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route
        resource = route.resource if route is not None else None
        if resource is not None:
            refusal = documented.refusal(
                request.method,
                resource.canonical,
                request.match_info,
                request.query,
            )
            if refusal is not None:
                return web.json_response(refusal.body(), status=refusal.status)
        return await handler(request)

    return check
