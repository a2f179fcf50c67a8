"""Chapter 1's exercises: write one memory update by hand, and predict what a memory returns.

Use as ``from nlbook.exercises import associative_memory as ex``; ``ex.check_delta_step(fn)``,
``ex.answer("overwrite", prediction)``, ``ex.solution("delta_step")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nlbook.exercises import solutions
from nlbook.exercises._core import Chapter, CheckResult, Question, checker, compare, expect_tensor
from nlbook.memory import delta_rule, reference_titans_memory

__all__ = ["QUESTIONS", "SOLUTIONS", "answer", "check_delta_step", "check_titans_step",
           "experiment", "reveal", "solution"]


def _example(seed: int, key_dim: int = 4, value_dim: int = 3):
    generator = torch.Generator().manual_seed(seed)
    state = torch.randn(key_dim, value_dim, generator=generator, dtype=torch.float64)
    key = F.normalize(torch.randn(key_dim, generator=generator, dtype=torch.float64), dim=0)
    value = torch.randn(value_dim, generator=generator, dtype=torch.float64)
    return state, key, value


@checker("delta_step")
def check_delta_step(delta_step: Callable) -> CheckResult:
    """Check ``delta_step(S, k, v, beta, decay) -> S_new`` for one token.

    Expected: S_new = decay (I - beta k kᵀ) S + beta k vᵀ, with S (d_k, d_v) (arXiv eq. 65).
    """
    for seed, (beta, decay) in enumerate([(1.0, 1.0), (0.3, 1.0), (0.7, 0.9)]):
        state, key, value = _example(seed)
        one = torch.ones(1, 1, 1, dtype=torch.float64)
        _, expected = delta_rule(key.reshape(1, 1, 1, -1), key.reshape(1, 1, 1, -1),
                                 value.reshape(1, 1, 1, -1), beta * one, decay=decay * one,
                                 initial_state=state[None, None])
        expected = expected[0, 0]
        what = f"delta_step(S, k, v, beta={beta}, decay={decay})"
        got = expect_tensor(what, delta_step(state.clone(), key.clone(), value.clone(), beta,
                                             decay), tuple(expected.shape))
        hebbian = decay * state + beta * torch.outer(key, value)
        if (got - hebbian).abs().max() < 1e-9:
            raise AssertionError(f"{what} only adds beta k vᵀ (the Hebbian write): the delta "
                                 "rule first erases what the memory returns for k")
        if (got - (decay * state - beta * torch.outer(key, key @ state - value))).abs().max() \
                < 1e-9 and decay != 1.0:
            raise AssertionError(f"{what}: the erase must act on the decayed memory: with a "
                                 "gate, every term that reads S reads decay · S")
        hint = ("With beta = 1 and decay = 1 a unit key must read back exactly v after the step "
                "(erase what k returns, then write)." if seed == 0 else
                "Read what the memory returns for k now, remove a fraction beta of it along k, "
                "write a fraction beta of v along k, and let decay scale the old memory first.")
        compare(what, got, expected, hint)
    return "S_new = α (I − β k kᵀ) S + β k vᵀ"


@checker("titans_step")
def check_titans_step(titans_step: Callable) -> CheckResult:
    """Check ``titans_step(M, Z, k, v, lr, momentum, forget) -> (M_new, Z_new)`` for one token.

    Expected (Titans eq. 13-14 with ℓ = ½‖Mᵀk - v‖²): Z_new = momentum Z - lr k (Mᵀk - v)ᵀ,
    M_new = (1 - forget) M + Z_new.
    """
    for seed, (lr, momentum, forget) in enumerate([(0.5, 0.0, 0.0), (0.3, 0.9, 0.1)]):
        memory, key, value = _example(seed)
        surprise = 0.1 * memory.flip(0)
        one = torch.ones(1, 1, 1, dtype=torch.float64)
        _, (expected_memory, expected_surprise) = reference_titans_memory(
            key.reshape(1, 1, 1, -1), key.reshape(1, 1, 1, -1), value.reshape(1, 1, 1, -1),
            lr * one, momentum * one, forget * one,
            initial_state=(memory[None, None], surprise[None, None]))
        expected_memory, expected_surprise = expected_memory[0, 0], expected_surprise[0, 0]
        what = f"titans_step(M, Z, k, v, lr={lr}, momentum={momentum}, forget={forget})"
        result = titans_step(memory.clone(), surprise.clone(), key.clone(), value.clone(), lr,
                             momentum, forget)
        if result is None:
            expect_tensor(what, result, tuple(expected_memory.shape))  # the missing-return hint
        if not isinstance(result, tuple) or len(result) != 2:
            raise AssertionError(f"{what} must return the pair (M_new, Z_new), got "
                                 f"{type(result).__name__}")
        got_memory = expect_tensor(f"{what}[0] (M_new)", result[0], tuple(expected_memory.shape))
        got_surprise = expect_tensor(f"{what}[1] (Z_new)", result[1],
                                     tuple(expected_surprise.shape))
        if ((got_memory - expected_surprise).abs().max() < 1e-9
                and (got_surprise - expected_memory).abs().max() < 1e-9):
            raise AssertionError(f"{what}: M_new and Z_new are swapped: return (M_new, Z_new)")
        compare(f"{what}[1] (Z_new)", got_surprise, expected_surprise,
                "The new surprise keeps momentum × the old one and adds a gradient step on "
                "½‖Mᵀk − v‖², with the gradient taken at the old M.")
        compare(f"{what}[0] (M_new)", got_memory, expected_memory,
                "Titans' forget gate removes a fraction `forget` of the old M (0 keeps "
                "everything), then the new surprise is added.")
    return "momentum carries past surprise; α forgets."


QUESTIONS = {
    "overwrite": Question(
        {"a": "both memories return v₂",
         "b": "the Hebbian memory returns v₁ + v₂, the delta rule v₂",
         "c": "the Hebbian memory returns v₂, the delta rule v₁ + v₂",
         "d": "both return (v₁ + v₂) / 2"},
        "b",
        """Hebbian writes only add: S = k v₁ᵀ + k v₂ᵀ, so Sᵀk = v₁ + v₂ for a unit key. Stale
        values pile up under a key, which is why linear attention fails on key overwrite (E1).
        The delta rule first erases what k returns: (I − k kᵀ) k v₁ᵀ = 0, then writes v₂, so
        Sᵀk = v₂ exactly."""),
    "half_step": Question(
        {"a": "v", "b": "0.75 v", "c": "0.5 v", "d": "0.25 v"},
        "b",
        """Each write is one gradient step of size β on ½‖Sᵀk − v‖²: it moves the read a
        fraction β of the remaining way to v. After one write Sᵀk = 0.5 v, after two
        0.5 v + 0.5 (v − 0.5 v) = 0.75 v, after n writes (1 − 0.5ⁿ) v. With a unit key, β = 1
        solves the regression in one step; a smaller β is a cautious learning rate."""),
    "decay": Question(
        {"a": "recall rises steadily as the decay goes down",
         "b": "recall falls steadily",
         "c": "recall first rises, then falls",
         "d": "recall does not change"},
        "c",
        """Decay forgets. With decay 1 every stale value of a key stays in the sum, so recall
        is poor; a little decay fades old values more than the latest one (recall
        rises). Decay also fades keys that were not rewritten for a while, so with a strong
        decay (0.5) the memory only holds the last few writes (recall falls again). The best
        decay balances the two: it depends on how often keys come back."""),
}
SOLUTIONS = solutions.BY_CHAPTER["associative_memory"]
_CHAPTER = Chapter(__name__, QUESTIONS, SOLUTIONS)
answer, reveal, solution = _CHAPTER.answer, _CHAPTER.reveal, _CHAPTER.solution
experiment = _CHAPTER.experiment
