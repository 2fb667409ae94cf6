"""Sellers' standings become policy layers in the front door: a seller on probation gets
the stricter layer at the next reload, a lifted one loses it, and a seller with a layer
written by hand keeps that one."""

from __future__ import annotations

import shutil

from services.decisions.policy.policy_rules import resolve_policy
from services.policy_files.generated_layers import generated_layers
from services.policy_files.loader import DEFAULT_POLICY_DIR
from services.policy_files.policy_book import PolicyBook


def standing(seller: str, standing: str, day: int, market: str = "DE") -> dict:
    return {"seller_id": seller, "market": market, "standing": standing, "day": day}


def book_with(tmp_path) -> PolicyBook:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    return PolicyBook(policies)


def test_a_flagged_seller_gets_its_layer_at_the_next_reload_and_loses_it_when_lifted(tmp_path):
    book = book_with(tmp_path)
    window = resolve_policy(book.current, "DE", "home", "S-bad").rules["return_window_days"]
    book.set_generated(generated_layers([standing("S-bad", "probation", 20_700)], book.files))
    assert book.reload_if_changed().changed
    tightened = resolve_policy(book.current, "DE", "home", "S-bad")
    assert tightened.rules["return_window_days"] == window + 14
    assert tightened.rules["return_shipping"]["payer"]["BUYER"] == "SELLER"
    assert resolve_policy(book.current, "DE", "home", "S-ok").rules["return_window_days"] == window
    assert not book.reload_if_changed().changed  # nothing new: nothing reloaded

    book.set_generated(generated_layers([standing("S-bad", "watch", 20_720)], book.files))
    assert book.reload_if_changed().changed  # a lighter layer, a higher version
    assert resolve_policy(book.current, "DE", "home", "S-bad").rules["return_window_days"] == (
        window + 7
    )
    book.set_generated(generated_layers([standing("S-bad", "good", 20_740)], book.files))
    assert book.reload_if_changed().changed
    lifted = resolve_policy(book.current, "DE", "home", "S-bad")
    assert lifted.rules["return_window_days"] == window


def test_a_hand_written_seller_layer_and_unknown_markets_are_left_alone(tmp_path):
    book = book_with(tmp_path)
    hand = tmp_path / "policies" / "DE" / "seller-S-hand.yaml"
    hand.write_text(
        "policy: return-policy/v1\nscope: {market: DE, seller: S-hand}\nversion: 1\n"
        "rules: {return_window_days: 60}\n"
    )
    assert book.reload_if_changed().changed
    texts = generated_layers(
        [standing("S-hand", "probation", 20_700), standing("S-x", "watch", 20_700, "ZZ")],
        book.files,
    )
    assert texts == []
