"""The claims map of chapter 7: each claim of the paper, its scale there, what this course
measures, at what scale, and the verdict here.

The verdicts come from the measurements in the README (full-size bench commands, named in each
row); the chapter's own, smaller runs print beside them. A verdict is one of
``"holds"``, ``"does not hold"``, ``"mixed"`` (holds for some of the tasks or settings, not all)
or ``"not testable on a CPU"``, and always says why.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLAIMS", "VERDICTS", "Claim", "claims_table"]

VERDICTS = ("holds", "does not hold", "mixed", "not testable on a CPU")


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
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


#: Filled from the measurements of the README's "What HOPE's memories buy" section.
CLAIMS: list[Claim] = []


def claims_table(claims: list[Claim] | None = None) -> str:
    """The claims map as a Markdown table (for the chapter and the README)."""
    rows = CLAIMS if claims is None else claims
    lines = ["| topic | the paper's claim | its scale | measured here | scale here | verdict | "
             "why |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.topic} | {row.claim} | {row.paper_scale} | {row.measured_here} | "
                     f"{row.scale_here} | **{row.verdict}** | {row.why} |")
    return "\n".join(lines)
