"""Chapter 3's exercises: one CMS chunk update by hand, when a level updates, and what a
stream carries.

Use as ``from nlbook.exercises import continuum_memory as ex``; ``ex.check_chunk_update(fn)``,
``ex.answer("summed_updates", prediction)``, ``ex.solution("chunk_update")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from nlbook.cms import CMSRecord, ContinuumMemory, squared_error_loss
from nlbook.exercises import solutions
from nlbook.exercises._core import (
    Chapter,
    CheckResult,
    Question,
    checker,
    compare,
    expect_number,
    expect_tensor,
)

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_chunk_update", "check_update_steps",
           "experiment", "reference_chunk_update", "reveal", "solution"]


def reference_chunk_update(weight: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
                           rate: float) -> torch.Tensor:
    """nlbook's answer, computed by running one chunk through a one-level linear CMS
    (A-eq 71, loss ½‖W x_t − y_t‖²): W − η Σ_t (W x_t − y_t) x_tᵀ, all at the chunk-start W.

    Args: weight (d_out, d_in) with d_out = d_in, inputs (C, d_in), targets (C, d_out).
    """
    from nlbook._checks import check_scalar_in_range, check_shape, check_tensor

    check_tensor("inputs", inputs, ndim=2, layout="(C, d_in)", dtype="float")
    chunk, dim = inputs.shape
    if chunk < 1 or dim < 1:
        raise ValueError(f"inputs must have shape (C, d_in) with C, d_in >= 1, got "
                         f"{tuple(inputs.shape)}")
    check_tensor("weight", weight, ndim=2, layout="(d_out, d_in)", dtype="float")
    check_shape("weight", weight, (dim, dim), "(d_in, d_in) with d_in of inputs")
    check_tensor("targets", targets, ndim=2, layout="(C, d_out)", dtype="float")
    check_shape("targets", targets, (chunk, dim), "(C, d_out) with C and d of inputs")
    check_scalar_in_range("rate", rate, 0.0, float("inf"))
    cms = ContinuumMemory(dim, [chunk], [rate], linear=True, residual=False, pre_norm=False,
                          dtype=torch.float64)
    with torch.no_grad():
        cms.blocks[0]["weight"].copy_(weight)
        cms.blocks[0]["bias"].zero_()
        result = cms(inputs[None].double(), targets[None].double(), loss_fn=squared_error_loss)
    return result.state.parameters[0]["weight"][0]


def _sequential_in_chunk(weight, inputs, targets, rate):
    for x, y in zip(inputs, targets, strict=True):
        weight = weight - rate * torch.outer(weight @ x - y, x)
    return weight


@checker("chunk_update")
def check_chunk_update(chunk_update: Callable) -> CheckResult:
    """Check ``chunk_update(W, inputs, targets, rate) -> W_new`` for one chunk of C tokens.

    Expected: W_new = W − rate · Σ_{t in chunk} (W x_t − y_t) x_tᵀ, every gradient taken at the
    W that entered the chunk, summed (not averaged), applied once at the end of the chunk.
    """
    generator = torch.Generator().manual_seed(0)
    for chunk, rate in [(1, 0.1), (4, 0.05), (6, 0.02)]:
        weight = torch.randn(3, 3, generator=generator, dtype=torch.float64)
        inputs = torch.randn(chunk, 3, generator=generator, dtype=torch.float64)
        targets = torch.randn(chunk, 3, generator=generator, dtype=torch.float64)
        expected = reference_chunk_update(weight, inputs, targets, rate)
        what = f"chunk_update(W, inputs, targets, rate={rate}) with C = {chunk}"
        got = expect_tensor(what, chunk_update(weight.clone(), inputs.clone(), targets.clone(),
                                               rate), tuple(expected.shape))
        step = weight - expected
        hints = [
            (weight - step / chunk, "you divided by C: the paper SUMS the chunk's gradients "
                                    "(a mean, not a sum, makes slow levels C times slower)"),
            (weight + step, "the sign is flipped: subtract the gradient"),
            (_sequential_in_chunk(weight, inputs, targets, rate),
             "you updated W inside the chunk: every gradient must use the chunk-start W"),
            (weight, "W did not change: apply the update at the end of the chunk"),
        ]
        if (got - expected).abs().max() > 1e-9:
            for candidate, hint in hints:
                if (got - candidate).abs().max() < 1e-9:
                    raise AssertionError(f"{what}: {hint}")
        compare(what, got, expected, "The gradient of ½‖W x − y‖² with respect to W is an "
                                     "outer product of the error and the input.")
    return "W ← W − η Σ_chunk (W x_t − y_t) x_tᵀ, at the chunk-start W."


@checker("update_steps")
def check_update_steps(update_steps: Callable) -> CheckResult:
    """Check ``update_steps(length, chunk) -> list[int]``: the token counts i at which a level
    of chunk size C changes over a stream of ``length`` tokens (i ≡ 0 mod C, 1 ≤ i ≤ T; the new
    parameters are used from 0-based position i on). Compared with a real CMS run's record."""
    for length, chunk in [(10, 1), (10, 3), (12, 4), (5, 8), (16, 16)]:
        cms = ContinuumMemory(2, [chunk], [0.1], linear=True, dtype=torch.float64)
        record = CMSRecord(1)
        stream = torch.randn(1, length, 2, generator=torch.Generator().manual_seed(length),
                             dtype=torch.float64)
        with torch.no_grad():
            cms(stream, stream, loss_fn=squared_error_loss, record=record)
        expected = record.update_steps(0)
        what = f"update_steps({length}, {chunk})"
        result = update_steps(length, chunk)
        if result is None:
            expect_number(what, result)  # raises the missing-return hint
        try:
            got = [expect_number(f"{what}[{index}]", step) for index, step in
                   enumerate(result)]
        except TypeError:
            raise AssertionError(f"{what} must return a list of token counts, got "
                                 f"{type(result).__name__}") from None
        if got != expected:
            hint = ""
            if got == [step - 1 for step in expected]:
                hint = " (off by one: count tokens seen, the first update comes after C tokens)"
            elif len(got) > len(expected):
                hint = " (a partial chunk at the end never closes: count only full chunks)"
            shown = [int(step) if step == int(step) else step for step in got]
            raise AssertionError(f"{what} returned {shown}, expected {expected}{hint}")
    return "a level of chunk C updates ⌊T/C⌋ times, at C, 2C, ..."


QUESTIONS = {
    "summed_updates": Question(
        {"a": "the fast level (C = 1) moves about 64 times further",
         "b": "both move about the same distance",
         "c": "the slow level (C = 64) moves about 64 times further",
         "d": "the slow level has not moved yet"},
        "b",
        """A chunk's update is η times the SUM of its C gradients (eq. 71). With a small η the
        gradient barely changes over 64 tokens, so one step of η·Σ₆₄ g moves as far as 64
        steps of η g. (The fast level moves a little less: it learns along the way, so its
        later gradients are smaller.) Updating less often does not make a level slow; a
        smaller learning rate does, which is why section 7's slow level needs a small η. The
        64th token closes the slow level's first chunk, so it has moved by then."""),
    "open_chunk": Question(
        {"a": "only its parameters, as updated after token 4",
         "b": "its parameters (updated after token 4) and the summed gradients of tokens 5 to 7",
         "c": "its parameters and the 7 inputs seen so far",
         "d": "its parameters, updated after every token"},
        "b",
        """A chunk closes after C = 4 tokens. Tokens 5, 6 and 7 have computed their gradients
        at the parameters that entered the chunk (those after token 4), but their update waits
        for token 8. So the state carries the parameters plus the open chunk's gradient sum,
        never the inputs, and the next call just continues the sum: that is why any split of
        a stream gives exactly the result of one pass."""),
    "fast_slow_level": Question(
        {"a": "it gets lower than 0.060", "b": "it stays about the same",
         "c": "it gets much higher: the slow level forgets A too", "d": "the run diverges"},
        "c",
        """With η = 0.02 the slow level learns as fast as the fast one: it fits A almost
        perfectly by the end of A, but during the 300 tokens of B it learns B just as fast and
        overwrites A. When the context ends the fast level restarts, and the slow one now holds
        mostly B: we measured a test MSE on A of about 1.0 after the context end (against
        0.060 with η = 0.002, and about 2 for a model that forgot A completely); nothing
        diverged in our runs. A slow level must be slow in η, not only in C."""),
}
SOLUTIONS = solutions.BY_CHAPTER["continuum_memory"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
