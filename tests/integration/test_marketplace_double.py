"""The marketplace double as a real OS process: replacement orders placed once per key,
out-of-stock answers remembered, stock, validation, a ledger that survives a restart (and a
torn last line)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.test_partner_doubles import own_partner

STOCK = {"MARKETPLACE_STOCK": '{"SKU-SOLD-OUT": 0, "SKU-TWO": 2}'}


def order(client: httpx.Client, key: str, **changes) -> httpx.Response:
    body = {
        "return_id": "RMA-MP-1",
        "order_ref": "ORD-1",
        "buyer_id": "B-1",
        "sku": "SKU-TWO",
        "quantity": 1,
        "ship_to": "Musterstrasse 1, Berlin",
    } | changes
    return client.post("/replacement-orders", json=body, headers={"Idempotency-Key": key})


def test_an_order_is_placed_once_per_key_and_takes_stock_once(tmp_path: Path):
    with own_partner("marketplace_server", "MARKETPLACE_", STOCK, tmp_path) as (_, client):
        first = order(client, "k-1")
        again = order(client, "k-1")
        assert first.status_code == 201 and first.json()["status"] == "placed"
        assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["replacement_order_id"] == first.json()["replacement_order_id"]
        assert client.get("/stock/SKU-TWO").json()["available"] == 1


def test_out_of_stock_is_remembered_for_its_key_and_a_new_key_is_decided_again(tmp_path: Path):
    with own_partner("marketplace_server", "MARKETPLACE_", STOCK, tmp_path) as (_, client):
        sold_out = order(client, "k-1", sku="SKU-SOLD-OUT")
        assert sold_out.status_code == 409 and sold_out.json()["error"] == "out_of_stock"
        client.post("/admin/stock", json={"SKU-SOLD-OUT": 5}).raise_for_status()
        assert order(client, "k-1", sku="SKU-SOLD-OUT").status_code == 409
        assert order(client, "k-2", sku="SKU-SOLD-OUT").status_code == 201
        stats = client.get("/replacement-orders/stats").json()
        assert stats == {"placed": 1, "out_of_stock": 1, "duplicates": 0}


def test_wrong_bodies_are_refused_naming_the_field(tmp_path: Path):
    with own_partner("marketplace_server", "MARKETPLACE_", STOCK, tmp_path) as (_, client):
        for changes, field in (
            ({"sku": None}, "sku"),
            ({"quantity": 0}, "quantity"),
            ({"quantity": "2"}, "quantity"),
            ({"ship_to": 7}, "ship_to"),
        ):
            refused = order(client, f"k-{field}-{changes}", **changes)
            assert refused.status_code == 422, changes
            assert refused.json()["field"] == field
        order(client, "k-1").raise_for_status()
        assert order(client, "k-1", quantity=2).status_code == 409  # the key, another body


def test_orders_and_stock_survive_a_restart(tmp_path: Path):
    settings = {**STOCK, "MARKETPLACE_LEDGER_FILE": str(tmp_path / "ledger.jsonl")}
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path / "a") as (_, c):
        placed = order(c, "k-1", quantity=2).json()
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path / "b") as (_, c):
        assert order(c, "k-1", quantity=2).json() == placed
        assert c.get("/stock/SKU-TWO").json()["available"] == 0
        assert order(c, "k-2").status_code == 409


def test_a_torn_last_ledger_line_is_skipped_and_later_orders_still_survive(tmp_path: Path):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"op": "stock", "levels": {"SKU-TWO": 5}, "at": 1}\n{"op": "ord')
    settings = {**STOCK, "MARKETPLACE_LEDGER_FILE": str(ledger)}
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path / "a") as (_, c):
        placed = order(c, "k-1").json()
        assert placed["available"] == 4
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path / "b") as (_, c):
        assert order(c, "k-1").json() == placed
        assert c.get("/stock/SKU-TWO").json()["available"] == 4


def test_an_error_fault_answers_503_and_places_nothing(tmp_path: Path):
    settings = {**STOCK, "MARKETPLACE_FAULTS": '{"error_rate": 1.0}'}
    with own_partner("marketplace_server", "MARKETPLACE_", settings, tmp_path) as (_, client):
        assert order(client, "k-1").status_code == 503
        assert client.get("/replacement-orders").json()["replacement_orders"] == []
