"""Which payment providers refund which method, in order of preference (pure).

Configured as JSON, e.g. `{"CARD": ["psp", "psp-b"], "*": ["psp"]}` (`*`: every other
method). A method with two providers fails over to the second when the first cannot be
reached at all; once a refund's request has reached a provider (answered or not), that
provider is the refund's for good: asking another one could pay twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ANY_METHOD = "*"


class RoutingError(ValueError):
    """The routing configuration is unusable (says which part)."""


@dataclass(frozen=True)
class ProviderRoutes:
    routes: Mapping[str, tuple[str, ...]]

    @classmethod
    def parse(cls, text: str, known_providers: Sequence[str]) -> ProviderRoutes:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RoutingError(f"provider routes are not JSON: {exc}") from exc
        if not isinstance(data, dict) or not data:
            raise RoutingError("provider routes must be a non-empty JSON object")
        routes: dict[str, tuple[str, ...]] = {}
        for method, providers in data.items():
            if not isinstance(providers, list) or not providers:
                raise RoutingError(f"{method}: needs a non-empty list of providers")
            unknown = [p for p in providers if p not in known_providers]
            if unknown:
                raise RoutingError(f"{method}: unknown provider(s) {unknown}")
            if len(set(providers)) != len(providers):
                raise RoutingError(f"{method}: a provider is listed twice")
            routes[str(method)] = tuple(providers)
        if ANY_METHOD not in routes:
            raise RoutingError(f"provider routes need a {ANY_METHOD!r} entry for other methods")
        return cls(routes)

    @classmethod
    def single(cls, provider: str) -> ProviderRoutes:
        return cls({ANY_METHOD: (provider,)})

    def providers_for(self, method: str) -> tuple[str, ...]:
        return self.routes.get(method, self.routes[ANY_METHOD])


def providers_to_try(
    routes: ProviderRoutes, method: str, committed_to: str | None
) -> tuple[str, ...]:
    """The providers to ask, in order: only the one a request already reached, if any."""
    if committed_to:
        return (committed_to,)
    return routes.providers_for(method)
