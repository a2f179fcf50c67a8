"""The claims map of chapter 7: each claim of the paper, its scale there, what this course
measures, at what scale, and the verdict here.

The verdicts come from the measurements in the README (full-size bench commands, named in each
row); the chapter's own, smaller runs print beside them. A verdict is one of
``"holds"``, ``"does not hold"``, ``"mixed"`` (holds for some of the tasks or settings, not all),
``"not tested at this budget"`` (a positive control failed, or the setup cannot exercise the
mechanism) or ``"not testable on a CPU"`` (:data:`nlbook.claims.protocol.VERDICTS`), and always
says why.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nlbook._checks import check_choice, check_instance, check_str
from nlbook.claims.mqar import mqar_headline
from nlbook.claims.protocol import VERDICTS

__all__ = ["CLAIMS", "VERDICTS", "Claim", "claims_table"]



@dataclass(frozen=True)
class Claim:
    """One row of the claims map."""

    topic: str
    claim: str
    paper_scale: str
    measured_here: str
    scale_here: str
    verdict: str
    why: str

    def __post_init__(self) -> None:
        for field in fields(self):
            check_str(field.name, getattr(self, field.name))
        check_choice("verdict", self.verdict, VERDICTS)


#: Filled from the measurements of the README's "What HOPE's memories buy" section.
CLAIMS: list[Claim] = [
    Claim("LM perplexity",
          "HOPE has lower perplexity than Transformer++, Titans and other recurrent models "
          "(arXiv Table 2: Wiki ppl 18.68 vs 24.18 for Transformer++ at 760M)",
          "760M / 30B and 1.3B / 100B tokens",
          "equal parameters and 5 min each (`bench shakespeare`): HOPE as one stream 1.752 "
          "nats/char, the Transformer with a sliding window 1.662",
          "0.8M parameters, characters, one CPU thread",
          "does not hold",
          "at equal time the Transformer takes 4.4× more steps (62 against 274 ms each); per "
          "step HOPE learns more"),
    Claim("commonsense reasoning",
          "HOPE has the best average accuracy (PIQA, HellaSwag, WinoGrande, ARC, SIQA, BoolQ)",
          "760M and 1.3B, billions of tokens",
          "nothing",
          "-",
          "not testable on a CPU",
          "the benchmarks need a model that reads and answers English questions: hundreds of "
          "millions of parameters and billions of tokens; a 0.1M character model is at chance"),
    Claim("in-context recall",
          "HOPE is the best attention-free model on SWDE/NQ/DROP/FDA/SQuAD/TQA, below the "
          "Transformer (Table 3)",
          "760M-1.3B",
          "MQAR, the field's recall test (`bench mqar`, test accuracy per model over seeds): "
          + (mqar_headline("mqar/t32-cosine") or "see RESULTS.md"),
          "104-111k parameters, V = 64, equal steps and batches",
          "not tested at this budget",
          "HOPE binds keys to values as well as the gated delta rule (its positive control) "
          "once three starting choices are fixed (RESULTS.md); the attention control, "
          "Transformer++, does not pass at the issue's schedule (it does with a longer "
          "warm-up), so the paper's ordering against attention is not read here"),
    Claim("memories that are memories (outside the paper)",
          "flipping a TTT/Titans layer's inner gradient descent to ascent barely changes "
          "results (Liu et al. 2026, arXiv 2602.21204)",
          "language models of hundreds of millions of parameters",
          "HOPE's Titans writes flipped to ascent on trained models (`bench sign-flip`, "
          "RESULTS.md): MQAR recall falls from near 100 % to below in-context chance in every "
          "seed; the shipped language model's stream diverges within 1,000 characters",
          "116k (MQAR, 3 seeds) and 110k (characters) parameters",
          "does not hold",
          "for HOPE the direction of its in-context writes is what makes it recall: its "
          "memory uses its inner objective"),
    Claim("long context: NIAH, BABILong",
          "HOPE keeps 100 % on single-needle NIAH up to 16K (Table 1) and holds BABILong to 10M "
          "tokens (Fig. 9)",
          "from scratch on ~50B tokens; fine-tuned for BABILong",
          "recall across gaps up to 512 characters (row above); loss by position to 1,024 "
          "(row below)",
          "0.1M parameters, 1K characters",
          "not testable on a CPU",
          "contexts of thousands to millions of tokens and models that can answer questions "
          "about them need GPU-scale training"),
    Claim("formal languages",
          "HOPE scores 100 on every task (parity, (aa)*, (abab)*, aⁿbⁿ, aⁿbⁿcⁿ, Shuffle-2); "
          "the Transformer 0 on parity's longer split (Table 5)",
          "small models (sizes not stated), Irie et al.'s benchmark",
          "Bhattamishra et al.'s task (`bench formal`, RESULTS.md): next-character-set "
          "prediction, train 2-50, bins 2-50 and 51-100, 3 seeds; the LSTM control passes on "
          "parity and (aa)*; HOPE fails parity in both bins and is bimodal across seeds "
          "elsewhere; the delta rule with β in (0, 2) solves parity, with β in (0, 1) not",
          "10-40k parameters, one block, 300 steps of 32 strings; HOPE as before its new "
          "start (not rerun)",
          "does not hold",
          "no tested cell supports 'HOPE solves every task'; parity contradicts it; cells the "
          "LSTM control itself misses at this budget are not read"),
    Claim("continual learning",
          "HOPE forgets less than EWC, InCA and in-context learning in class-incremental "
          "learning and CTNL (Figs. 6-8)",
          "Llama-3B/8B turned into HOPE, 15B tokens",
          "Shakespeare, then Python, then Shakespeare (`bench continual`): forgetting on "
          "Shakespeare HOPE +0.90, without in-context CMS updates +0.95, Transformer +0.73 "
          "nats/char",
          "30k parameters, 1,000 steps per phase, equal steps",
          "does not hold",
          "every model forgets; HOPE's in-context CMS updates reduce it a little; class-"
          "incremental and in-context translation tasks are not reproduced"),
    Claim("M3 optimizer",
          "M3 reaches lower train and test loss than AdamW and Muon (Figs. 11-12)",
          "ViT, 24M-86M parameters, ImageNet-21K",
          "chapter 2: the tiny Transformer after 300 steps: M3 2.29 nats/char, Muon 2.45, "
          "AdamW 2.46; M3 as printed in Algorithm 1: 3.35",
          "0.1M parameters, characters, 300 steps",
          "mixed",
          "it holds only with a change the paper does not state (the orthogonalised update "
          "scaled by the momentum's norm; as printed a step scales like 1/|g|)"),
    Claim("ablation",
          "removing DGD, momentum, weight decay or the CMS raises perplexity (Table 6: 12.24 "
          "→ 13.04-13.90)",
          "probably 1.3B (not stated)",
          "`bench ablation --minutes 3`, stream loss: HOPE 1.707; without DGD diverges at step "
          "6; without in-context CMS updates +0.035; without CMS +0.021; without "
          "self-modification -0.022; Hope-Attention +0.106; linear attention +0.004; the "
          "Transformer -0.048",
          "0.1M parameters, 3 min each on one CPU thread, equal time",
          "mixed",
          "DGD is essential (its erase keeps the memory that writes its own learning rate "
          "bounded); the CMS helps a little; self-modification costs more than it buys at "
          "equal time"),
    Claim("loss against context",
          "HOPE's perplexity keeps falling with more context; without the CMS or DGD it "
          "degrades (Fig. 10)",
          "760M-1.3B, contexts to thousands of tokens",
          "HOPE's loss over positions 768-1023 of fresh windows 1.597 nats/char, far below "
          "its first 64; without the CMS 1.669, without its in-context updates 1.665; without "
          "DGD it does not train",
          "0.1M parameters, fresh windows of 1,024 characters (16× the training window)",
          "holds",
          "the loss keeps falling with context and the CMS ablations fall less; the "
          "Transformer cannot read past its 64 characters"),
]


def claims_table(claims: list[Claim] | None = None) -> str:
    """The claims map as a Markdown table (for the chapter and the README)."""
    rows = CLAIMS if claims is None else claims
    check_instance("claims", rows, (list, tuple), expected="a list of Claim")
    for index, row in enumerate(rows):
        check_instance(f"claims[{index}]", row, Claim)
    lines = ["| topic | the paper's claim | its scale | measured here | scale here | verdict | "
             "why |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.topic} | {row.claim} | {row.paper_scale} | {row.measured_here} | "
                     f"{row.scale_here} | **{row.verdict}** | {row.why} |")
    return "\n".join(lines)
