"""The marketplace's catalog, in its double: which skus are variants of one product, and
each variant's unit price (minor units of the order's currency).

Products come from `MARKETPLACE_CATALOG` (JSON: product_id → {sku: unit_price_minor}) and
`POST /admin/catalog` at run time. A sku the catalog does not list is a product of its own
whose variants are its sizes (`{base}-S`, `-M`, `-L`, `-XL`, where the base is the sku
without a size at its end), each at the price the order paid for it. The order system's
`GET /orders/{order_ref}` shows each line's product and variants: the front door lets a
buyer exchange only to one of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.decisions.money import MAX_ORDER_AMOUNT_MINOR

SIZES = ("S", "M", "L", "XL")


def parse_catalog(text: str, name: str) -> dict[str, dict[str, int]]:
    """product_id → {sku: unit price}; ValueError names what is wrong."""
    try:
        products = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON: {exc}") from exc
    if not isinstance(products, dict):
        raise ValueError(f"{name} must be a JSON object of product_id → {{sku: price}}")
    parsed: dict[str, dict[str, int]] = {}
    for product_id, variants in products.items():
        if not isinstance(variants, dict) or not variants:
            raise ValueError(f"{name}.{product_id} must be an object of sku → unit price")
        for sku, price in variants.items():
            whole = isinstance(price, int) and not isinstance(price, bool)
            if not sku or not whole or not 0 <= price <= MAX_ORDER_AMOUNT_MINOR:
                raise ValueError(f"{name}.{product_id}.{sku} must be a price in minor units")
        parsed[str(product_id)] = {str(sku): int(price) for sku, price in variants.items()}
    return parsed


class Catalog:
    def __init__(self, products: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.products: dict[str, dict[str, int]] = {}
        self.product_of: dict[str, str] = {}
        self.add(products or {})

    def add(self, products: Mapping[str, Mapping[str, int]]) -> None:
        for product_id, variants in products.items():
            self.products[product_id] = dict(variants)
            for sku in variants:
                self.product_of[sku] = product_id

    def line_with_variants(self, line: Mapping[str, Any]) -> dict[str, Any]:
        """An order line as the order system shows it: with its product and variants."""
        sku = str(line["sku"])
        product_id = self.product_of.get(sku)
        if product_id is None:
            price = int(line["unit_price_minor"])
            base = sku.rsplit("-", 1)[0] if sku.rsplit("-", 1)[-1] in SIZES else sku
            variants = {sku: price, **{f"{base}-{size}": price for size in SIZES}}
            product_id = f"P-{base}"
        else:
            variants = self.products[product_id]
        listed = [{"sku": s, "unit_price_minor": p} for s, p in sorted(variants.items())]
        return {**line, "product_id": product_id, "variants": listed}
