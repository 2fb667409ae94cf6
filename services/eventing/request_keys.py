"""How a route names the key whose owner answers it (`Route.owner_key`): a path parameter or
a field of the JSON body. A request whose key cannot be read gives None: the instance it
reached answers it, and the handler refuses it with its own 4xx."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from services.eventing.handler_contract import HttpRequest, OwnerKey


def path_parameter(name: str) -> OwnerKey:
    def key(request: HttpRequest, params: Mapping[str, str]) -> str | None:
        return params.get(name) or None

    return key


def body_field(name: str) -> OwnerKey:
    def key(request: HttpRequest, params: Mapping[str, str]) -> str | None:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return None
        value = body.get(name) if isinstance(body, dict) else None
        return value if isinstance(value, str) and value else None

    return key
