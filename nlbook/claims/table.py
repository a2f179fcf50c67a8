"""The claims map of chapter 7: each claim of the paper, its scale there, what this course
measures, at what scale, and the verdict here.

Every measured row reads its experiment's record in the results file ``data/claims.json``
(:mod:`nlbook.claims.results`, written by ``python -m nlbook.bench claims``): what was measured
(the record's summary, with its numbers), the verdict and why (with the positive control). A
verdict is one of ``"holds"``, ``"does not hold"``, ``"mixed"``, ``"not tested at this
budget"`` (a positive control failed, or the setup cannot exercise the mechanism) or ``"not
testable on a CPU"`` (:data:`nlbook.claims.protocol.VERDICTS`). Rows the file does not hold yet
say so ("not tested at this budget: no record"). The claim texts quote the paper.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from nlbook._checks import check_choice, check_instance, check_str
from nlbook.claims.protocol import VERDICTS

__all__ = ["CLAIMS", "CLAIM_ROWS", "VERDICTS", "Claim", "claims_from_results", "claims_table",
           "claims_verdicts_table"]


@dataclass(frozen=True)
class Claim:
    """One row of the claims map. ``experiment`` (and ``row``, for an experiment that judges
    several claims) name its record in the results file; "" for a row no CPU run can test."""

    topic: str
    claim: str
    paper_scale: str
    measured_here: str
    scale_here: str
    verdict: str
    why: str
    experiment: str = ""
    row: str = ""

    def __post_init__(self) -> None:
        for field in fields(self):
            if field.name not in ("experiment", "row"):
                check_str(field.name, getattr(self, field.name))
        check_choice("verdict", self.verdict, VERDICTS)


#: The rows, before the results are read: (topic, the paper's claim, its scale, the scale
#: here, experiment, row) for measured rows; rows no CPU run can test carry their verdict.
CLAIM_ROWS: list[dict[str, str]] = [
    {"topic": "LM perplexity",
     "claim": "HOPE has lower perplexity than Transformer++, Titans and other recurrent models "
              "(Table 2: Wiki ppl 18.68 against 24.18 for Transformer++ at 760M)",
     "paper_scale": "760M / 30B and 1.3B / 100B tokens, equal parameters and tokens",
     "scale_here": "0.1M parameters, characters, 400 steps of 16 x 64 characters, 3 seeds",
     "experiment": "language", "row": "perplexity"},
    {"topic": "ablation",
     "claim": "removing DGD or the CMS raises perplexity (Table 6: 12.24 → 13.41 without DGD, "
              "13.04 without the CMS; momentum 13.58 and weight decay 13.71 are not run here)",
     "paper_scale": "probably 1.3B (not stated)",
     "scale_here": "0.1M parameters, characters, equal steps, 3 seeds",
     "experiment": "language", "row": "ablation"},
    {"topic": "loss against context",
     "claim": "HOPE's perplexity keeps falling with more context; without the CMS or DGD it "
              "degrades (Fig. 10)",
     "paper_scale": "760M-1.3B, contexts to thousands of tokens",
     "scale_here": "0.1M parameters, 4,096-character windows (4× the training streams), "
                   "3 seeds",
     "experiment": "language", "row": "context"},
    {"topic": "commonsense reasoning",
     "claim": "HOPE has the best average accuracy (PIQA, HellaSwag, WinoGrande, ARC, SIQA, "
              "BoolQ)",
     "paper_scale": "760M and 1.3B, billions of tokens",
     "scale_here": "-", "measured_here": "nothing", "verdict": "not testable on a CPU",
     "why": "the benchmarks need a model that reads and answers English questions: hundreds "
            "of millions of parameters and billions of tokens"},
    {"topic": "in-context recall",
     "claim": "HOPE is the best attention-free model on recall-intensive tasks, below the "
              "Transformer (Table 3)",
     "paper_scale": "760M-1.3B",
     "scale_here": "MQAR (the field's recall test), about 0.1M parameters, 1,000 steps, "
                   "3 seeds",
     "experiment": "recall"},
    {"topic": "MAD",
     "claim": "HOPE matches or beats the Transformer on MAD's synthetic tasks (Table 4: "
              "compression 51.2, in-context recall 100, fuzzy recall 52.1, selective copy 99.7,"
              " memorisation 85.2)",
     "paper_scale": "MAD's protocol (width 128, 2 layers, a learning-rate grid)",
     "scale_here": "MAD's tasks scaled to this CPU (see the table), 3 seeds",
     "experiment": "mad"},
    {"topic": "memories that are memories (outside the paper)",
     "claim": "flipping a TTT/Titans layer's inner gradient descent to ascent barely changes "
              "results (Liu et al. 2026, arXiv 2602.21204)",
     "paper_scale": "language models of hundreds of millions of parameters",
     "scale_here": "HOPE on MQAR (3 seeds) and the shipped 0.1M language model",
     "experiment": "sign-flip"},
    {"topic": "long context: NIAH, BABILong",
     "claim": "HOPE keeps 100 % on single-needle NIAH to 16K for the pass-key needle (Table 1; "
              "the number needle falls to 78.2 % and the UUID needle to 24.8 % at 16K, and "
              "multi-key NIAH is far below attention) and holds BABILong to 10M tokens (Fig. 9)",
     "paper_scale": "from scratch on ~50B tokens; fine-tuned for BABILong",
     "scale_here": "-", "measured_here": "nothing (MQAR above is the recall test here)",
     "verdict": "not testable on a CPU",
     "why": "contexts of thousands to millions of tokens and models that answer questions "
            "about them need GPU-scale training"},
    {"topic": "formal languages",
     "claim": "HOPE scores 100 on every task (parity, (aa)*, (abab)*, aⁿbⁿ, aⁿbⁿcⁿ, "
              "Shuffle-2); the Transformer 0 on parity's longer split (Table 5)",
     "paper_scale": "small models (sizes not stated), Irie et al.'s benchmark",
     "scale_here": "Bhattamishra et al.'s setting (train 2-50, bins 2-50 and 51-100), "
                   "10-40k parameters, 300 steps of 32 strings, 3 seeds",
     "experiment": "formal"},
    {"topic": "parity and eigenvalues (outside the paper)",
     "claim": "a linear recurrence whose eigenvalues stay in [0, 1] cannot count parity; the "
              "delta rule with β in (0, 2) can (Grazzi et al. 2025)",
     "paper_scale": "small recurrent models",
     "scale_here": "the delta rule in the HOPE block, 13k parameters, 3 seeds",
     "experiment": "parity-beta"},
    {"topic": "continual learning",
     "claim": "HOPE forgets less than EWC, InCA and in-context learning in class-incremental "
              "learning and in-context translation, credited to levels that update at "
              "different frequencies (Figs. 6-8)",
     "paper_scale": "Llama-3B/8B turned into HOPE, 15B tokens",
     "scale_here": "in context: a phased MQAR (pairs A, pairs B, A's queries again), weights "
                   "frozen, 3 seeds",
     "experiment": "phased-mqar"},
    {"topic": "M3 optimizer",
     "claim": "M3 reaches lower train and test loss than AdamW and Muon (Figs. 11-12)",
     "paper_scale": "ViT, 24M-86M parameters, ImageNet-21K",
     "scale_here": "chapter 2b: the tiny Transformer, 300 steps, one seed",
     "measured_here": "chapter 2b trains M3, Muon and AdamW side by side (one seed, its cells "
                      "print the losses)",
     "verdict": "not tested at this budget",
     "why": "one seed and no interval: the protocol's three seeds were not run; M3 as printed "
            "needs its learning rate on another scale (chapter 2b)"},
]


def claims_from_results(path: str | os.PathLike | None = None) -> list[Claim]:
    """The claims map with every measured row read from the results file (default
    ``data/claims.json``)."""
    from nlbook.claims.results import load_claims_results

    results = load_claims_results(path)
    claims = []
    for spec in CLAIM_ROWS:
        if "experiment" not in spec:
            claims.append(Claim(**spec))
            continue
        record = results.get(spec["experiment"])
        if record is not None and spec.get("row"):
            record = record.get("rows", {}).get(spec["row"])
        fixed = {key: value for key, value in spec.items() if key != "row"}
        if record is None:
            claims.append(Claim(**fixed, row=spec.get("row", ""),
                                measured_here="not run yet", verdict="not tested at this budget",
                                why=f"no record of {spec['experiment']!r} in the results file"))
            continue
        why = record["why"]
        if record.get("control"):
            why = f"{record['control']}; {why}"
        claims.append(Claim(**fixed, row=spec.get("row", ""), measured_here=record["summary"],
                            verdict=record["verdict"], why=why))
    return claims


#: The map as the results file has it when the package is imported.
CLAIMS: list[Claim] = claims_from_results()


def claims_verdicts_table(claims: list[Claim] | None = None) -> str:
    """A short Markdown table: topic and verdict of every row (the README's)."""
    rows = claims_from_results() if claims is None else claims
    check_instance("claims", rows, (list, tuple), expected="a list of Claim")
    lines = ["| claim | verdict here |", "|---|---|"]
    for index, row in enumerate(rows):
        check_instance(f"claims[{index}]", row, Claim)
        lines.append(f"| {row.topic} | **{row.verdict}** |")
    return "\n".join(lines)


def claims_table(claims: list[Claim] | None = None) -> str:
    """The claims map as a Markdown table (for the chapter and the README)."""
    rows = claims_from_results() if claims is None else claims
    check_instance("claims", rows, (list, tuple), expected="a list of Claim")
    for index, row in enumerate(rows):
        check_instance(f"claims[{index}]", row, Claim)
    lines = ["| topic | the paper's claim | its scale | measured here | scale here | verdict | "
             "why |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.topic} | {row.claim} | {row.paper_scale} | {row.measured_here} | "
                     f"{row.scale_here} | **{row.verdict}** | {row.why} |")
    return "\n".join(lines)
