"""The demo's risk world: abusers' returns the policies accept, with nothing in what is sent
that says who abuses (labels stay in the demo, to score), the history as the risk service
counts it, and the figures."""

from __future__ import annotations

import json
import random
from collections import Counter

from services.decisions.risk.count_records import add_increment, window_of
from services.decisions.risk.seller_governance import standings_due
from services.decisions.risk.seller_standing import GovernanceTerms
from services.tools.local_stack.demo_risk import (
    BAD_SELLERS,
    abusers_returns,
    draw_risk_world,
    history_increments,
    risk_figures,
    risk_passed,
)
from services.tools.local_stack.inspection_scans import scan_body
from services.tools.local_stack.risk_history import ABUSE_KINDS

NOW = 1_790_000_000_000


def test_abusers_returns_say_nothing_of_abuse_in_what_is_sent():
    world = draw_risk_world(7, NOW)
    tracked = abusers_returns(world, random.Random(7), "run1", 100, 4)
    assert Counter(t.abuse for t in tracked) == {kind: 4 for kind in ABUSE_KINDS}
    for t in tracked:
        t.return_id = f"RMA-{t.index}"
        sent = json.dumps([t.body, scan_body(t, random.Random(1))[1]]).lower()
        assert not any(
            kind in sent for kind in ("abuse", "serial-returner", "empty_box", "swap")
        ) or ("sn-other" in sent and t.abuse == "swap")
        assert t.abuse not in t.body["buyer_id"]
        assert t.expected_minor >= 0 and t.expected_method


def test_the_history_flags_exactly_the_bad_sellers():
    increments = history_increments(draw_risk_world(7, NOW), NOW, 7)
    entries: dict[str, dict] = {}
    for offset, inc in enumerate(increments):
        entries[inc.table_key] = (
            add_increment(entries.get(inc.table_key), inc, f"id-{offset}", "h:0", offset, NOW)
            or entries[inc.table_key]
        )
    windows = {key: window_of(entry, NOW) for key, entry in entries.items()}
    flagged = standings_due(windows, {}, NOW, GovernanceTerms())
    assert {r["seller_id"] for r in flagged} == set(BAD_SELLERS)


def test_the_figures_count_caught_abuse_false_holds_and_reviews():
    world = draw_risk_world(7, NOW)
    tracked = abusers_returns(world, random.Random(7), "run1", 0, 1)
    for n, t in enumerate(tracked):
        t.return_id, t.terminal = f"RMA-{n}", "ReturnCompleted"
    decisions = {t.return_id: {"outcome": "review"} for t in tracked[:-1]}
    figures = risk_figures(tracked, decisions, Counter(deny=2), {"S-GOV-BAD-1|DE": "watch"})
    assert (figures["abuse_injected"], figures["abuse_caught"]) == (6, 5)
    assert figures["reviewed"] == 2 and figures["sellers_flagged"] == 1
    assert figures["sellers_bad_not_flagged"] == 1
    assert not risk_passed(figures)
