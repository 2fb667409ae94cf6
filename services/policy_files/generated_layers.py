"""The policy layers sellers' standings generate (pure): for each seller on watch or
probation in a market (risk's SellerFlagged records), its `seller-<id>.yaml` layer as the
returns service loads it beside the files (decisions/risk/standing_policy.py says what it
tightens). Its version is the day it was judged, so a layer whose rules change always
carries a higher version. A seller with a layer written by hand keeps that one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from services.decisions.policy.policy_layers import PolicySet
from services.decisions.risk.seller_standing import Standing
from services.decisions.risk.standing_policy import standing_layer

GENERATED_DIR = "generated"


def generated_layers(
    standings: Iterable[Mapping[str, Any]], files: PolicySet
) -> list[tuple[str, str]]:
    """(name, text) of each layer to load with `files` (the layers read from the files)."""
    written = {layer.key for layer in files.layers if not layer.file.startswith(GENERATED_DIR)}
    texts = []
    for record in sorted(standings, key=lambda r: (r["market"], r["seller_id"])):
        market, seller = record["market"], record["seller_id"]
        market_layer = files.market_layer(market)
        if market_layer is None or (market, "", seller) in written:
            continue
        window = int(market_layer.rules["return_window_days"])
        layer = standing_layer(market, seller, Standing(record["standing"]), window)
        if layer is None:
            continue
        layer["version"] = int(record["day"])
        name = f"{GENERATED_DIR}/{market}/seller-{seller}.yaml"
        texts.append((name, yaml.safe_dump(layer, sort_keys=True)))
    return texts
