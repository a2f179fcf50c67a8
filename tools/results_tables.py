"""Write the results page's measured tables from the results files (authors' tool).

RESULTS.md holds blocks such as::

    <!-- results: mqar/t32-cosine -->
    ...a table...
    <!-- /results -->

Each block is rewritten from ``data/<name>-seed*.json`` (files that ``python -m nlbook.bench
mqar --json`` wrote, one per seed), or, for ``claims-map``, from ``nlbook.claims.CLAIMS``, so
no number of a run is typed by hand here;
``tests/test_results_page.py`` fails when a block and its files disagree.

    python tools/results_tables.py           # rewrite every block of RESULTS.md
    python tools/results_tables.py --check   # exit 1 if a block is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "RESULTS.md"
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w./-]+) -->\n)(?P<body>.*?)(<!-- /results -->)",
                   re.DOTALL)


def _seed_number(path: Path) -> int:
    return int(path.stem.rsplit("seed", 1)[1])


def render(name: str) -> str:
    """The Markdown of block ``name``: ``claims-map`` is :func:`nlbook.claims.claims_table`
    (chapter 7's map, whose recall row reads the MQAR files); any other name is the MQAR table
    of ``data/<name>-seed*.json`` with its seeds, commits and setting."""
    from nlbook.claims.mqar import load_mqar_results

    if name == "claims-map":
        from nlbook.claims import claims_table

        return claims_table() + "\n"

    paths = sorted((ROOT / "data").glob(f"{name}-seed*.json"), key=_seed_number)
    if not paths:
        return f"(not run: no results files `data/{name}-seed*.json`)\n"
    result, commits = load_mqar_results([str(path) for path in paths])
    setting = result.setting
    schedule = "constant" if setting["constant_learning_rate"] else "cosine"
    lines = [result.markdown(), "",
             f"V = {setting['vocab_size']}, T = {setting['sequence_length']}, "
             f"{setting['kv_pairs']} pairs (in-context chance "
             f"{100 / setting['kv_pairs']:.1f} %), {setting['steps']} steps of batch "
             f"{setting['batch_size']}, AdamW {setting['learning_rate']:g} ({schedule} after "
             f"{setting['warmup_steps']} warm-up steps), test set {setting['test_size']} "
             f"sequences; seeds {', '.join(map(str, result.seeds))}; commit "
             f"{', '.join(sorted(set(commits)))}; files `data/{name}-seed*.json`."]
    return "\n".join(lines) + "\n"


def rewritten(text: str) -> str:
    return BLOCK.sub(lambda match: match.group(1) + render(match.group("name"))
                     + match.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="only check: exit 1 if a block differs from its files")
    args = parser.parse_args(argv)
    text = PAGE.read_text(encoding="utf-8")
    new = rewritten(text)
    if args.check:
        if new != text:
            print("RESULTS.md is out of date: run python tools/results_tables.py",
                  file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
