"""RESULTS.md's measured tables are written from the results files under data/ by
tools/results_tables.py: a block that disagrees with its files fails here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("results_tables",
                                                  ROOT / "tools" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_results_block_equals_its_files():
    tool = _tool()
    for page in ("RESULTS.md", "README.md"):
        text = (ROOT / page).read_text(encoding="utf-8")
        names = [match.group("name") for match in tool.BLOCK.finditer(text)]
        assert names, f"{page} has no results block"
        for match in tool.BLOCK.finditer(text):
            assert match.group("body") == tool.render(match.group("name")), (
                f"{page} block {match.group('name')!r} is out of date: run "
                f"python tools/results_tables.py")


def test_the_readme_and_the_results_page_carry_the_claims_verdicts():
    tool = _tool()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {match.group("name") for match in tool.BLOCK.finditer(readme)}
    assert {"claims-verdicts", "claims-protocol-time"} <= names
    results = (ROOT / "RESULTS.md").read_text(encoding="utf-8")
    assert "claims-map" in {match.group("name") for match in tool.BLOCK.finditer(results)}


def test_a_number_changed_by_hand_is_caught():
    tool = _tool()
    text = (ROOT / "RESULTS.md").read_text(encoding="utf-8")
    match = next(tool.BLOCK.finditer(text))
    body = match.group("body")
    number = re.search(r"\d+\.\d", body)
    assert number is not None
    planted = body[:number.start()] + ("1" if number.group()[0] != "1" else "2") + \
        body[number.start() + 1:]
    assert planted != tool.render(match.group("name"))
