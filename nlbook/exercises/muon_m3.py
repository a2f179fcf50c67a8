"""Chapter 2b's exercises: Newton–Schulz by hand, and what M3's step does with the gradients'
scale.

Use as ``from nlbook.exercises import muon_m3 as ex``; ``ex.check_ns_step(fn)``,
``ex.answer("m3_scale", prediction)``, ``ex.solution("ns_step")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nlbook.exercises import solutions
from nlbook.exercises._core import Chapter, CheckResult, Question, checker, compare, expect_tensor

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_ns_step", "experiment", "reveal",
           "solution"]


@checker("ns_step")
def check_ns_step(ns_step: Callable) -> CheckResult:
    """Check ``ns_step(X) -> X_new``: one cubic Newton–Schulz step 1.5 X − 0.5 X Xᵀ X for a
    wide X (r, c), r ≤ c (arXiv eq. 43–44 with one gradient step of size ½)."""
    generator = torch.Generator().manual_seed(0)
    for rows, columns in ((3, 5), (4, 4)):
        matrix = torch.randn(rows, columns, generator=generator, dtype=torch.float64)
        matrix = matrix / matrix.norm()
        what = f"ns_step(X) with X of shape ({rows}, {columns})"
        got = expect_tensor(what, ns_step(matrix.clone()), (rows, columns))
        expected = 1.5 * matrix - 0.5 * matrix @ matrix.T @ matrix
        if (got - (1.5 * matrix + 0.5 * matrix @ matrix.T @ matrix)).abs().max() < 1e-9:
            raise AssertionError(f"{what}: the cubic term has the wrong sign. The step shrinks "
                                 "singular values above 1 and grows those below")
        compare(what, got, expected, "Each singular value σ must become 1.5 σ − 0.5 σ³: "
                "multiply X by XᵀX on the right (or XXᵀ on the left).")
    return "X ← 1.5 X − 0.5 X Xᵀ X: every singular value σ becomes 1.5 σ − 0.5 σ³."


QUESTIONS = {
    "ns_band": Question(
        {"a": "all exactly 1",
         "b": "most in a band around 1 (about 0.7 to 1.2), the very smallest still on their way",
         "c": "unchanged: the iteration only rotates the matrix",
         "d": "all shrunk towards 0"},
        "b",
        """Each quintic step maps a singular value σ to a σ + b σ³ + c σ⁵ with Muon's
        coefficients: a small σ grows about 3.4 times per step, and values near 1 are thrown
        into a band around 1 rather than onto 1 (the coefficients trade exactness for speed).
        A singular value of 0.001 needs about six steps to arrive. Singular vectors never
        change: NS(G) ≈ U Vᵀ, the orthogonal factor of G."""),
    "m3_scale": Question(
        {"a": "10 times further", "b": "the same distance", "c": "10 times less far",
         "d": "100 times less far"},
        "c",
        """In Algorithm 1 as printed the numerator NS(M1) + α NS(M2) has singular values near 1
        whatever the gradients' size, while the denominator √V grows with them: the step is
        homogeneous of degree −1 in the gradient. Ten times larger gradients, ten times
        smaller steps (Adam's m/√v has degree 0: the same distance). That is why M3 as
        printed needs a learning rate on another scale, which depends on the gradients."""),
}
SOLUTIONS = solutions.BY_CHAPTER["muon_m3"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
