"""Optimizers as associative memories (chapters 2 and 2b; arXiv 2512.24695 §4 and §7.2).

Every optimizer here is a ``torch.optim.Optimizer`` whose state is a *memory of gradients*: an
inner level that is trained, one gradient step at a time, on an inner objective over the
gradient stream, and whose output the outer level writes into the weights (levels as in the
paper's Def. 2/3: the optimizer's memories are level 1, the weights that need them level 2).
Each class docstring gives that inner objective and the paper equation ("A-eq k" = arXiv
equation k, "N-eq k" = NeurIPS equation k).

Conventions: every parameter tensor has its own memory (as in ``torch.optim``); "flattened"
means the tensor viewed as one vector. The momentum of the paper, ``m_{i+1} = α m_i − η g_i``
and ``W_{i+1} = W_i + m_{i+1}`` (A-eq 33–35), is stored in *parameter units* (it already holds
the −η factor).

Choices where the paper is open (also stated in the notebook):

- ``DeltaMomentum`` uses the flattened form ``m ← α m − (m·ĝ) ĝ − η P g`` with the *normalised*
  gradient ĝ = g/‖g‖ in the decay term (N-eq 22 and A-eq 49 differ in where P sits and neither
  normalises; unnormalised g makes the recurrence expand when ‖g‖² > 1 + α).
- ``DeepMomentum``: the inner objective is the dot-product objective ⟨M_φ(G), G⟩ of plain
  momentum with a key: see its docstring.
- ``M3`` follows Algorithm 1 (not A-eq 75), with √V + ε and running *sums* by default
  (``moments="ema"`` is the alternative many repositories use).
"""

from __future__ import annotations

from nlbook.optim._base import MUON_COEFFICIENTS, newton_schulz
from nlbook.optim.experiments import (
    OPTIMIZER_NAMES,
    TOY_PROBLEMS,
    benchmark_optimizers,
    continual_stream,
    make_optimizer,
    max_difference_to_torch,
    run_toy_problem,
    toy_landscape,
)
from nlbook.optim.memory_length import (
    gradients_for_mass,
    linear_layer_surprise_step,
    momentum_cumulative_weight,
    momentum_weighted_sum,
)
from nlbook.optim.momentum import (
    AdamMemory,
    DeepMomentum,
    DeltaMomentum,
    MomentumMemory,
    PreconditionedMomentum,
)
from nlbook.optim.orthogonal import M3, Muon

__all__ = [
    "M3",
    "MUON_COEFFICIENTS",
    "OPTIMIZER_NAMES",
    "TOY_PROBLEMS",
    "AdamMemory",
    "DeepMomentum",
    "DeltaMomentum",
    "MomentumMemory",
    "Muon",
    "PreconditionedMomentum",
    "benchmark_optimizers",
    "continual_stream",
    "gradients_for_mass",
    "linear_layer_surprise_step",
    "make_optimizer",
    "max_difference_to_torch",
    "momentum_cumulative_weight",
    "momentum_weighted_sum",
    "newton_schulz",
    "run_toy_problem",
    "toy_landscape",
]
