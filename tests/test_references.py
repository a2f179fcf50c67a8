"""Everything a reader is pointed to ships with the course: no citation of the developers'
private notes (their source tags, "reference notes §…", "performance notes §…"), and every
relative link in the notebooks, the README, the glossary and the package's docstrings resolves
to a file of the repository. The paper is cited by its equation numbers (arXiv A-eq k)."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Phrases that point to documents the course does not ship.
UNSHIPPED = [
    (re.compile(r"reference notes", re.IGNORECASE), "the developers' reference notes"),
    (re.compile(r"performance notes", re.IGNORECASE), "the developers' performance notes"),
    (re.compile(r"\breference §", re.IGNORECASE), "a section of the reference notes"),
    (re.compile(r"§\s*\d+ item \d+"), "an item of the reference notes' list of mistakes"),
    (re.compile(r"\[(?:KMC|AX[^\]]*|LUC|TIT|NIPS[^\]]*|4D|M3-tex)\]"),
     "a source tag of the reference notes"),
    (re.compile(r"(?:course-architecture|nested-learning-math|performance-and-benchmarks|"
                r"notebook-practice)\.md"), "a file of the reference notes"),
    (re.compile(r"/work/|shared/reference"), "a path outside the course"),
]

#: [text](target) and ![alt](target) in markdown (and in notebook markdown cells).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _reader_files() -> list[Path]:
    files = sorted((ROOT / "notebooks").glob("*.py")) + sorted((ROOT / "notebooks").glob("*.md"))
    files += sorted((ROOT / "nlbook").rglob("*.py"))
    files += [path for path in (ROOT / "README.md", ROOT / "notebooks" / "GLOSSARY.md")
              if path.is_file()]
    return sorted(set(files))


FILES = _reader_files()


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_there_are_files_to_check():
    names = {_relative(path) for path in FILES}
    assert "README.md" in names and "notebooks/GLOSSARY.md" in names
    assert any(name.startswith("notebooks/0") for name in names)


@pytest.mark.parametrize("path", FILES, ids=_relative)
def test_no_reference_to_a_document_that_does_not_ship(path: Path):
    text = path.read_text(encoding="utf-8")
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        for pattern, what in UNSHIPPED:
            match = pattern.search(line)
            if match:
                problems.append(f"{_relative(path)}:{number}: {match.group(0)!r} ({what})")
    assert not problems, "cite the paper (arXiv A-eq k) or put the content in the course:\n" \
        + "\n".join(problems)


def _markdown(path: Path) -> str:
    """The markdown a reader sees: a .md file, or the markdown cells of a notebook source."""
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    notebook = jupytext.read(path)
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


MARKDOWN = [path for path in FILES if path.suffix == ".md" or path.parent.name == "notebooks"]


@pytest.mark.parametrize("path", MARKDOWN, ids=_relative)
def test_every_relative_link_resolves(path: Path):
    text = _markdown(path)
    broken = []
    for match in LINK.finditer(text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a web address, or an anchor in the same page
        file_part = target.split("#", 1)[0]
        if not (path.parent / file_part).exists():
            broken.append(f"{_relative(path)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_every_chapter_links_to_the_glossary():
    for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py")):
        opening = source.read_text(encoding="utf-8").split("# %%\n", 1)[0]
        assert "(GLOSSARY.md)" in opening, f"{source.name}: its opening must link the glossary"


def test_the_checks_catch_what_they_are_for(tmp_path):
    samples = {"see reference notes §7.1": True, "as [KMC] does": True, "[AX8] says": True,
               "performance notes §3.2": True, "(reference §3.2)": True, "§8 item 9": True,
               "arXiv A-eq 57": False, "the reference loop": False}
    for text, caught in samples.items():
        assert any(pattern.search(text) for pattern, _ in UNSHIPPED) is caught, text
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [bad](missing.md) [web](https://example.org) [a](#x)")
    targets = [match.group(1) for match in LINK.finditer(page.read_text())]
    missing = [target for target in targets if not target.startswith(("https:", "#"))
               and not (tmp_path / target).exists()]
    assert missing == ["missing.md"]
