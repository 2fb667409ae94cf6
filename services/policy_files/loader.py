"""Policy files: YAML (or JSON) layers validated on load, with errors that name the file, the
path inside it and the problem (pure apart from reading the files it is given).

A directory of layers becomes a `PolicySet`. Loading is all or nothing: one bad file and the
whole set is refused, so a running service keeps the set it had.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from services.decisions.money import CURRENCY_EXPONENTS
from services.decisions.policy.policy_layers import (
    PolicyError,
    PolicyLayer,
    PolicyProblem,
    PolicySet,
)

POLICY_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "policy"
SCHEMA_PATH = POLICY_SCHEMAS / "return-policy.schema.json"
POLICY_SUFFIXES = (".yaml", ".yml", ".json")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def parse_layer(name: str, text: str) -> PolicyLayer:
    """One file's text → a layer, or PolicyError naming `name`."""
    try:
        document = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise PolicyError([PolicyProblem(name, "", f"not valid YAML/JSON: {exc}")]) from exc
    problems = [
        PolicyProblem(name, ".".join(str(p) for p in error.absolute_path), error.message)
        for error in sorted(_validator().iter_errors(document), key=lambda e: list(e.path))
    ]
    if problems:
        raise PolicyError(problems)
    scope = document["scope"]
    currency = document.get("currency")
    is_market = not {"category", "seller", "buyer"} & set(scope)
    if is_market and currency is None:
        problems.append(PolicyProblem(name, "currency", "a market's policy names its currency"))
    if currency is not None and currency not in CURRENCY_EXPONENTS:
        problems.append(PolicyProblem(name, "currency", f"unknown currency {currency!r}"))
    if not is_market and currency is not None:
        problems.append(PolicyProblem(name, "currency", "only a market's policy sets a currency"))
    if problems:
        raise PolicyError(problems)
    return PolicyLayer(
        name,
        scope["market"],
        scope.get("category"),
        scope.get("seller"),
        document["version"],
        document["rules"],
        currency,
        document.get("description", ""),
        scope.get("buyer"),
    )


DEFAULT_POLICY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "policies"


def policy_dir(option: str | None = None) -> Path:
    """`option`, else $BOOMERANG_POLICY_DIR, else the repository's deploy/policies."""
    return Path(option or os.environ.get("BOOMERANG_POLICY_DIR") or DEFAULT_POLICY_DIR)


def policy_files(directory: Path) -> list[Path]:
    return sorted(
        path for path in directory.rglob("*") if path.is_file() and path.suffix in POLICY_SUFFIXES
    )


def load_policy_set(directory: Path) -> PolicySet:
    """Every layer under `directory`, checked one by one and together."""
    if not directory.is_dir():
        raise PolicyError([PolicyProblem(str(directory), "", "not a directory")])
    files = policy_files(directory)
    return build_policy_set(
        (str(path.relative_to(directory)), path.read_text(errors="replace")) for path in files
    )


def build_policy_set(named_texts: Iterable[tuple[str, str]]) -> PolicySet:
    problems: list[PolicyProblem] = []
    layers: list[PolicyLayer] = []
    digest = hashlib.sha256()
    for name, text in named_texts:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        try:
            layers.append(parse_layer(name, text))
        except PolicyError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str, str], str] = {}
    for layer in layers:
        if layer.key in seen:
            problems.append(PolicyProblem(layer.file, "scope", f"same scope as {seen[layer.key]}"))
        seen[layer.key] = layer.file
    markets = {layer.market for layer in layers if layer.kind == "market"}
    for layer in layers:
        if layer.kind != "market" and layer.market not in markets:
            problems.append(
                PolicyProblem(layer.file, "scope.market", f"no market policy for {layer.market}")
            )
    for layer in layers:
        if layer.kind == "market":
            problems.extend(_market_completeness(layer))
    if not layers and not problems:
        problems.append(PolicyProblem("(directory)", "", "no policy files"))
    if problems:
        raise PolicyError(problems)
    return PolicySet(tuple(layers), digest.hexdigest()[:16])


MARKET_REQUIRED = (
    "return_window_days",
    "reasons",
    "return_shipping",
    "buyer_damage",
    "refund_deadline_days",
    "cod_refund_to",
    "decline_fallback",
    "exchange_out_of_stock",
)


# where refunds go (COD and virtual accounts are refunded by one of these)
REFUND_METHODS = ("CARD", "EWALLET", "BNPL", "DIRECT_DEBIT", "BANK_TRANSFER", "STORE_CREDIT")


def _market_completeness(layer: PolicyLayer) -> list[PolicyProblem]:
    """A market layer is the base every return falls back on: it must say everything,
    including how many days a refund may take by each method it can go to."""
    problems = [
        PolicyProblem(layer.file, f"rules.{key}", "a market's policy must set it")
        for key in MARKET_REQUIRED
        if key not in layer.rules
    ]
    deadlines = layer.rules.get("refund_deadline_days")
    if isinstance(deadlines, dict):
        problems.extend(
            PolicyProblem(
                layer.file,
                f"rules.refund_deadline_days.{method}",
                "a market's policy must give the refund deadline of every refund method",
            )
            for method in REFUND_METHODS
            if method not in deadlines
        )
    return problems
