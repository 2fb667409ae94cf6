"""The README's Layout names every folder of services/ (two levels) and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def layout_lines() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```")[1]
    return [line.split()[0] for line in block.strip().splitlines() if line.strip()]


def test_every_services_folder_is_in_the_layout_and_every_layout_path_exists():
    folders = {
        str(path.relative_to(REPO)) + "/"
        for path in (REPO / "services").glob("*/")
        if path.is_dir() and not path.name.startswith(("_", "."))
    } | {
        str(path.relative_to(REPO)) + "/"
        for path in (REPO / "services").glob("*/*/")
        if path.is_dir() and not path.name.startswith(("_", "."))
    }
    listed = layout_lines()
    assert folders <= set(listed), sorted(folders - set(listed))
    missing = [p for p in listed if not re.search(r"[*{]", p) and not (REPO / p).exists()]
    assert missing == []
