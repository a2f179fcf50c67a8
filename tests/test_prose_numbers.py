"""Numbers that cannot drift: a notebook's prose never types a number that a cell measures.

A measured number (a loss, an accuracy, a time, a count that a run produces) changes when the
code, the seed or the size changes; typed into a markdown cell it silently goes stale. So a
chapter's markdown may hold a decimal number or a percentage only when it is

- **set in code**: the same number, as written, appears in one of the notebook's code cells (a
  learning rate, a decay, a size: the prose then describes the setting, which the code fixes;
  a number after "≈" is a measurement and never counts as set), or
- **reviewed** in :data:`ALLOWED` below, with the reason (a number quoted from the paper, a
  mathematical constant, a value fixed by the definition of the task).

A number the notebook measures is written by its cell instead (``IPython.display.Markdown``
built from the computed values), or the prose speaks without it. The check is static (it
needs no execution), so it holds at every size: smoke runs and full runs print different
numbers, and neither belongs in the prose.

What counts as a number: a decimal (``2.29``, ``0.060``), a percentage (``93 %``, ``99%``), and
an integer with a unit of time (``40 s``, ``3 minutes``) or after "≈". Integers alone are sizes,
counts of a definition, chapter and equation numbers; references (``eq. 5.3``, ``Python 3.11``,
``arXiv 2512.24695``), section numbers in headings, the choices of a predict-then-run question
(the learner predicts them; the cell measures the answer) and the study-time estimate under
"**Time:**" are skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.py"))
EXCLUDED: set[str] = set()

#: Reviewed numbers a chapter's prose may hold although no code cell sets them:
#: {notebook: {number as written: why it is not a measurement of this notebook}}.
ALLOWED: dict[str, dict[str, str]] = {
    "*": {},
    "02_nested_optimizers.py": {
        "3": "0.9¹⁰⁰ ≈ 3·10⁻⁵: arithmetic on the momentum 0.9, not a measurement",
    },
    "02b_muon_m3.py": {
        "3.4445": "torch.optim.Muon's quintic Newton–Schulz coefficients (a definition)",
        "4.7750": "torch.optim.Muon's quintic Newton–Schulz coefficients (a definition)",
        "2.0315": "torch.optim.Muon's quintic Newton–Schulz coefficients (a definition)",
        "1.5": "the cubic Newton–Schulz step 1.5 X − 0.5 X Xᵀ X (a definition)",
        "0.5": "the cubic Newton–Schulz step 1.5 X − 0.5 X Xᵀ X (a definition)",
    },
    "05_hope_block.py": {
        "0.01": "HopeBlock's default in-context rate of CMS block 1: a setting of nlbook.hope",
    },
    "07_what_memory_buys.py": {
        "12.24": "the paper's Table 6: HOPE's perplexity (quoted from the paper)",
        "13.41": "the paper's Table 6: without DGD (quoted from the paper)",
        "13.04": "the paper's Table 6: without the CMS (quoted from the paper)",
        "13.6": "the paper's Table 6: without momentum, about (quoted from the paper)",
        "13.7": "the paper's Table 6: without weight decay, about (quoted from the paper)",
        "95 %": "the protocol's level: a 95 % interval, and the LSTM control's threshold "
                "(nlbook.claims.protocol, declared before any run)",
        "1.3": "the paper's largest language model, 1.3B parameters (quoted from the paper)",
    },
    "06_tiny_shakespeare.py": {
        "4.17": "ln 65, the loss of the uniform model over 65 characters (arithmetic)",
        "1.3": "the paper's largest language model, 1.3B parameters (quoted from the paper)",
    },
}

# A decimal or an integer, optionally a percentage or a time.
NUMBER = re.compile(
    r"(?<![\w.])(?P<value>\d+(?:[.,]\d{3})*(?:\.\d+)?)"
    r"(?P<unit>\s?%|\s?(?:s|seconds?|min|minutes?|h|hours?)\b)?(?![\w.]*\d)")
# What stands just before a number that is a reference, not a quantity.
REFERENCE = re.compile(
    r"(?:eqs?\.|equations?|section|sections|§|table|figure|fig\.|appendix|def\.|definition|"
    r"algorithm|alg\.|chapter|python|version|numpy|torch|matplotlib|arxiv|v|step|steps|"
    r"lines?|cell)\s*\(?$", re.IGNORECASE)

# Lines that hold no measurement: a heading's section number ("### 3.1 ·"), the choices of a
# predict-then-run question ("(a) about 1.5 · (b) ..."), the chapter's study-time estimate.
SKIPPED_LINE = re.compile(r"^\s*#+\s+\d|^\s*\(a\)\s|\s·\s\([b-e]\)\s|^\s*\*\*Time:\*\*")


def _prose(source: Path) -> list[tuple[int, str]]:
    """(cell index, text) of every markdown cell."""
    notebook = jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent")
    return [(index, cell.source) for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "markdown"]


def _code_numbers(source: Path) -> set[str]:
    """Every number written in the notebook's code cells (literals, also inside strings), as
    written: the prose must spell a setting as the code does ("0.1" is not "0.10")."""
    notebook = jupytext.reads(source.read_text(encoding="utf-8"), fmt="py:percent")
    written: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            written.update(re.findall(r"(?<![\w.])\d+(?:\.\d+)?", cell.source))
    return written


def _percent_as_fraction(written: str) -> set[str]:
    """"99" of "99 %" as the fractions a code cell may write: "0.99"."""
    fraction = float(written) / 100
    return {f"{fraction:g}", repr(fraction)}


def measured_numbers(source: Path, allowed: dict[str, str] | None = None
                     ) -> list[tuple[int, str, str]]:
    """(markdown cell index, the number as written, its line) for every number in the prose
    of ``source`` that no code cell sets and that is not allowed."""
    allowed = {**ALLOWED["*"], **ALLOWED.get(source.name, {}), **(allowed or {})}
    code = _code_numbers(source)
    found = []
    for index, text in _prose(source):
        for line in text.splitlines():
            if SKIPPED_LINE.search(line):
                continue
            for match in NUMBER.finditer(line):
                written, unit = match.group("value"), match.group("unit")
                before = line[:match.start()]
                if REFERENCE.search(before):
                    continue
                approximate = re.search(r"(?:≈|~)\s*$", before) is not None
                if "." not in written and not unit and (not approximate or float(written) < 2):
                    continue  # an integer: a size, a count, a name (see the module docstring)
                if written in allowed or match.group().strip() in allowed:
                    continue
                if not approximate and (written in code or (
                        unit and unit.strip() == "%" and _percent_as_fraction(written) & code)):
                    continue
                found.append((index, match.group().strip(), line.strip()))
    return found


def _describe(problems: list[tuple[int, str, str]], name: str) -> str:
    lines = [f"{name}: markdown cell {index} types {number!r}, which no code cell sets: "
             f"{line!r}" for index, number, line in problems]
    return ("\n".join(lines) + "\nA number the notebook measures is written by its cell "
            "(IPython.display.Markdown from the computed value) or left out of the prose; a "
            "number quoted from the paper goes into ALLOWED in tests/test_prose_numbers.py "
            "with the reason.")


@pytest.mark.parametrize("source", [path for path in NOTEBOOKS if path.name not in EXCLUDED],
                         ids=lambda path: path.name)
def test_prose_types_no_measured_number(source: Path):
    problems = measured_numbers(source)
    assert not problems, _describe(problems, source.name)


def test_every_allowed_number_is_still_in_its_prose():
    """The allow-list stays short: an entry whose number left the prose is removed."""
    for name, entries in ALLOWED.items():
        if name == "*":
            continue
        source = ROOT / "notebooks" / name
        assert source.is_file(), f"ALLOWED names {name}, which is not a notebook"
        prose = "\n".join(text for _, text in _prose(source))
        for number in entries:
            assert number in prose, (
                f"ALLOWED[{name!r}] holds {number!r}: no longer in the prose")


def test_a_planted_number_fails(tmp_path: Path):
    """A number typed into prose fails; the same number set in code, allowed, or written by the
    cell passes; references and plain integers are not numbers."""
    source = tmp_path / "09_planted.py"
    cells = ["# %% [markdown]\n# # Title\n#\n# With $\\eta = 0.02$ (eq. 5.3, Python 3.11), "
             "8 layers, the model reaches 2.29 nats/char, 93 % accuracy, in 40 s, ≈ 19 off.\n",
             "# %%\nlr = 0.02\nloss = 2.2913\n",
             "# %%\nfrom IPython.display import Markdown\nMarkdown(f'It reaches {loss:.2f}.')\n"]
    source.write_text("\n".join(cells), encoding="utf-8")
    problems = measured_numbers(source)
    assert [number for _, number, _ in problems] == ["2.29", "93 %", "40 s", "19"]
    assert "2.29" in _describe(problems, source.name)
    quoted = {"2.29": "quoted", "93 %": "quoted", "40 s": "quoted", "19": "quoted"}
    assert measured_numbers(source, allowed=quoted) == []
    with pytest.raises(AssertionError, match=r"2\.29"):
        assert not problems, _describe(problems, source.name)
