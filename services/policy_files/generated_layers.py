"""The policy layers risk's flags generate (pure): for each seller on watch or probation in
a market (SellerFlagged), its `seller-<id>.yaml` layer, and for each buyer whose return was
held or declined (BuyerFlagged, until its day), a `buyer-<id>.yaml` layer, as the returns
service loads them beside the files (decisions/risk/standing_policy.py says what they
tighten). A layer's version is the day it was flagged, so a layer whose rules change always
carries a higher version. A seller or buyer with a layer written by hand keeps that one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from services.decisions.policy.policy_layers import PolicySet
from services.decisions.risk.seller_standing import Standing
from services.decisions.risk.standing_policy import buyer_layer, standing_layer

GENERATED_DIR = "generated"
# the ids a layer's scope can name (return-policy.schema.json): another id gets no layer,
# rather than a set the loader refuses (which would keep every other change out too)
SCOPE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def generated_layers(
    standings: Iterable[Mapping[str, Any]], files: PolicySet
) -> list[tuple[str, str]]:
    """(name, text) of each layer to load with `files` (the layers read from the files)."""
    written = _hand_written_scopes(files)
    texts = []
    for record in sorted(standings, key=lambda r: (r["market"], r["seller_id"])):
        market, seller = record["market"], record["seller_id"]
        market_layer = files.market_layer(market)
        if market_layer is None or (market, "", seller, "") in written:
            continue
        if not SCOPE_ID.match(seller):
            continue
        window = int(market_layer.rules["return_window_days"])
        layer = standing_layer(market, seller, Standing(record["standing"]), window)
        if layer is None:
            continue
        layer["version"] = int(record["day"])
        name = f"{GENERATED_DIR}/{market}/seller-{seller}.yaml"
        texts.append((name, yaml.safe_dump(layer, sort_keys=True)))
    return texts


def buyer_layers(
    flags: Iterable[Mapping[str, Any]], files: PolicySet, today: int
) -> list[tuple[str, str]]:
    """(name, text) of each flagged buyer's layer still in force `today` (a UTC day)."""
    written = _hand_written_scopes(files)
    texts = []
    for record in sorted(flags, key=lambda r: (r["market"], r["buyer_id"])):
        market, buyer = record["market"], record["buyer_id"]
        market_layer = files.market_layer(market)
        if record["until_day"] < today or market_layer is None:
            continue
        if (market, "", "", buyer) in written or not SCOPE_ID.match(buyer):
            continue
        layer = buyer_layer(market, buyer, market_layer.rules, int(record["day"]))
        name = f"{GENERATED_DIR}/{market}/buyer-{buyer}.yaml"
        texts.append((name, yaml.safe_dump(layer, sort_keys=True)))
    return texts


def _hand_written_scopes(files: PolicySet) -> set[tuple[str, str, str, str]]:
    """The scopes a policy file names: a generated layer never replaces one."""
    return {layer.key for layer in files.layers if not layer.file.startswith(GENERATED_DIR)}
