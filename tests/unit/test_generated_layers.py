"""Sellers' standings become policy layers in the front door: a seller on probation gets
the stricter layer at the next reload, a lifted one loses it, and a seller with a layer
written by hand keeps that one."""

from __future__ import annotations

import shutil

from services.decisions.policy.policy_rules import resolve_policy
from services.policy_files.generated_layers import buyer_layers, generated_layers
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


def buyer_flag(buyer: str, day: int, until_day: int, market: str = "DE") -> dict:
    return {"buyer_id": buyer, "market": market, "day": day, "until_day": until_day}


def test_a_held_or_declined_buyer_gets_a_stricter_policy_until_the_flag_runs_out(tmp_path):
    book = book_with(tmp_path)
    before = resolve_policy(book.current, "DE", "home", "S-1", "B-risky")
    flags = [buyer_flag("B-risky", 20_700, 20_790), buyer_flag("bad id!", 20_700, 20_790)]
    book.set_generated(buyer_layers(flags, book.files, 20_701))
    assert book.reload_if_changed().changed
    tightened = resolve_policy(book.current, "DE", "home", "S-1", "B-risky")
    assert tightened.rules["return_window_days"] == min(14, before.rules["return_window_days"])
    assert all(r["photos_required"] >= 1 for r in tightened.rules["reasons"].values())
    assert tightened.rules["return_shipping"]["payer"]["BUYER"] == "BUYER"
    assert tightened.version.endswith("+DE/buyer:B-risky@v20700")
    assert resolve_policy(book.current, "DE", "home", "S-1", "B-other") == resolve_policy(
        book.current, "DE", "home", "S-1"
    )
    book.set_generated(buyer_layers(flags, book.files, 20_791))  # the flag ran out
    assert book.reload_if_changed().changed
    assert resolve_policy(book.current, "DE", "home", "S-1", "B-risky").rules == before.rules


def test_a_policy_file_cannot_scope_a_buyer_together_with_a_seller_or_category(tmp_path):
    from services.policy_files.loader import PolicyError, parse_layer

    text = (
        "policy: return-policy/v1\nscope: {market: DE, seller: S-1, buyer: B-1}\nversion: 1\n"
        "rules: {return_window_days: 10}\n"
    )
    try:
        parse_layer("x.yaml", text)
    except PolicyError as exc:
        assert "scope" in str(exc)
    else:
        raise AssertionError("a layer for a seller and a buyer at once was taken")
