"""Docs stay true: every test RELIABILITY.md names exists; the README keeps its two-command quickstart."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "entrasync_pipeline_tests").rglob("test_*.py"):
        names.update(re.findall(r"^def (test_\w+)", path.read_text(), flags=re.MULTILINE))
    return names


def test_reliability_names_only_existing_tests() -> None:
    named = set(re.findall(r"`(test_\w+)`", (REPO / "RELIABILITY.md").read_text()))
    assert named and not named - _defined_tests(), sorted(named - _defined_tests())


def test_readme_quickstart_is_make_demo_and_make_test() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```", 2)[1]
    assert block.strip().splitlines() == ["make demo", "make test"]
