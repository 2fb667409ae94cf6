"""Liability, cell by cell against the table in services/decisions/policy/liability_table.md."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from services.decisions.policy.liability import (
    BuyerDamage,
    Grade,
    InspectionFacts,
    LiabilityTerms,
    ReasonFamily,
    RefundOutcome,
    decide_liability,
    provisional_liability,
)
from services.decisions.refunds.order_model import Liable

TABLE = (
    Path(__file__).resolve().parents[2] / "services" / "decisions" / "policy" / "liability_table.md"
)
COLUMNS = (
    "claimed",
    "grade",
    "matches",
    "weight ok",
    "packaging damaged",
    "noted at pickup",
    "buyer damage",
    "overturn on A",
)


def _rows() -> list[dict[str, str]]:
    lines = [line for line in TABLE.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[1:]
    ]


ROWS = _rows()
YES_NO = {True: "yes", False: "no"}
CELLS = list(
    itertools.product(
        list(ReasonFamily),
        list(Grade),
        [True, False],
        [True, False],
        [True, False],
        [True, False],
        list(BuyerDamage),
        [True, False],
    )
)


def _matches(pattern: str, value: str) -> bool:
    return pattern == "any" or value in pattern.split(",")


def _first_row(cell: tuple) -> dict[str, str]:
    values = [
        str(cell[0]),
        str(cell[1]),
        *(YES_NO[flag] for flag in cell[2:6]),
        str(cell[6]),
        YES_NO[cell[7]],
    ]
    for row in ROWS:
        if all(_matches(row[column], value) for column, value in zip(COLUMNS, values, strict=True)):
            return row
    raise AssertionError(f"no row of {TABLE.name} covers {values}")


def test_the_table_has_every_cell_and_every_row_is_reachable():
    assert len(CELLS) == 768
    used = {id(_first_row(cell)) for cell in CELLS}
    assert used == {id(row) for row in ROWS}


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: "-".join(str(v) for v in cell))
def test_every_cell_decides_as_the_table_says(cell):
    family, grade, matches, weight_ok, packaging, noted, buyer_damage, overturn = cell
    decision = decide_liability(
        family,
        noted,
        InspectionFacts(grade, matches, weight_ok, packaging),
        LiabilityTerms(buyer_damage, overturn),
    )
    row = _first_row(cell)
    assert (decision.liable, decision.refund) == (
        Liable(row["liable"]),
        RefundOutcome(row["refund"]),
    )
    [fired] = decision.rules_fired
    assert fired.rule_id == row["rule"]
    assert fired.facts["grade"] == str(grade)
    assert fired.effect


def test_an_overturned_claim_says_so_and_becomes_remorse():
    decision = decide_liability(ReasonFamily.SELLER_FAULT, False, InspectionFacts(Grade.A))
    assert decision.overturned and decision.family == ReasonFamily.BUYER_REMORSE


def test_before_inspection_the_claim_stands():
    decision = provisional_liability(ReasonFamily.PLATFORM_FAULT)
    assert decision.liable == Liable.PLATFORM and not decision.overturned
    assert decision.rules_fired[0].rule_id == "liability.claimed"
