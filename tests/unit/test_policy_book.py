"""The running services' policy book: a changed set replaces the active one only when it is
valid and every changed layer says so with a higher version."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from services.policy_files.policy_book import PolicyBook

POLICIES = Path(__file__).resolve().parents[2] / "deploy" / "policies"


def book_in(tmp_path: Path) -> tuple[PolicyBook, Path]:
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    return PolicyBook(directory), directory / "DE" / "market.yaml"


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    later = path.stat().st_mtime_ns + 1_000_000_000  # a stamp the book cannot miss
    os.utime(path, ns=(later, later))


def test_a_changed_layer_with_a_higher_version_becomes_active(tmp_path):
    book, market = book_in(tmp_path)
    text = market.read_text()
    rewrite(
        market, text.replace("version: 1", "version: 2").replace("fee_minor: 495", "fee_minor: 595")
    )
    outcome = book.reload_if_changed()
    assert outcome.changed and not outcome.problems
    assert book.current.market_layer("DE").version == 2


def test_changed_rules_under_the_same_version_are_refused_and_the_active_set_stays(tmp_path):
    book, market = book_in(tmp_path)
    active = book.current.digest
    rewrite(market, market.read_text().replace("fee_minor: 495", "fee_minor: 595"))
    outcome = book.reload_if_changed()
    assert not outcome.changed
    assert outcome.digest == active
    [problem] = outcome.problems
    assert problem.startswith("DE/market.yaml: version: the rules changed but the version is 1")


def test_a_description_only_edit_needs_no_new_version(tmp_path):
    book, market = book_in(tmp_path)
    rewrite(market, market.read_text() + "\n# a comment\n")
    outcome = book.reload_if_changed()
    assert not outcome.problems
