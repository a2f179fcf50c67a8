"""Write the results page's measured tables from the results files (authors' tool).

RESULTS.md holds blocks such as::

    <!-- results: mqar/t32-cosine -->
    ...a table...
    <!-- /results -->

Each block is rewritten from ``data/<name>-seed*.json`` (files that ``python -m nlbook.bench
mqar --json`` wrote, one per seed), or from the full protocol's results file
``data/claims.json``: ``claims-map`` (the whole map), ``claims-verdicts`` (topic and verdict,
the README's), ``claims-protocol-time`` (the minutes the full protocol took) and
``claims/<experiment>`` (one experiment's table), so no number of a run is typed by hand here;
``tests/test_results_page.py`` fails when a block and its files disagree. Both RESULTS.md and
README.md are rewritten.

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
PAGES = (ROOT / "RESULTS.md", ROOT / "README.md")
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
    if name == "claims-verdicts":
        from nlbook.claims import claims_verdicts_table

        return claims_verdicts_table() + "\n"
    if name == "claims-protocol-time":
        from nlbook.claims.results import claims_protocol_minutes, load_claims_results

        count = len(load_claims_results())
        return (f"The full protocol (`python -m nlbook.bench claims`, {count} experiments, "
                f"three seeds each) took **{claims_protocol_minutes():.0f} minutes** of "
                f"wall-clock time, its experiments' times summed (`data/claims.json`), on this "
                f"project's 2-core machine while it was shared by several other jobs (load "
                f"average 6-10); run as parallel processes (`--experiments NAME --seeds K`, then "
                f"`--merge`) it took well under half that from start to end.\n")
    if name.startswith("claims/"):
        from nlbook.claims.results import show_claims_record

        return "```\n" + show_claims_record(name.split("/", 1)[1]) + "\n```\n"

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
    stale = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        new = rewritten(text)
        if new == text:
            continue
        if args.check:
            stale.append(page.name)
        else:
            page.write_text(new, encoding="utf-8")
    if stale:
        print(f"{', '.join(stale)} out of date: run python tools/results_tables.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
