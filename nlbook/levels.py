"""Levels of a nested system, as Nested Learning defines them (chapter 0).

arXiv 2512.24695, §3.2, Def. 2 and Def. 3. The *update frequency* f_A of a component A (a
parametric one such as weights or a momentum, or a non-parametric one such as attention) is its
number of updates per unit of time. A is **faster** than B, written A ≻ B, when

    (1) f_A > f_B, or
    (2) f_A = f_B and the computation of B's state at time t requires A's state at time t.

When neither A ≻ B nor B ≻ A, A and B have the same frequency and are computed independently
(the paper's A =_f B; Adam's two moments are the example). The components are then sorted into
an ordered set of **levels**: components of one level have the same frequency, and *the higher the
level, the lower its frequency*. Level 1 is the fastest. In SGD with momentum the momentum and the
weights are both updated once per step, but the weights' step t needs the momentum of step t:
momentum ≻ weights, so the momentum is level 1 and the weights level 2.

:func:`assign_levels` computes the levels of a list of :class:`Component`: a component's level is
one more than the highest level of every component faster than it (level 1 if there is none), so
two components share a level exactly when neither is faster than the other. The course uses this
one meaning of "level" everywhere (code, docstrings, plots, widgets, prose), always ordered by
frequency with level 1 the fastest. A level number is relative to the system described: the
fastest block of a CMS is *its* level 1; inside HOPE the self-modifying Titans memories are
faster still, so that block is HOPE's level 2.

Careful when reading the paper: the example that follows Def. 4 (arXiv Fig. 3, the Transformer
MLP against linear attention) calls the pre-trained, persistent MLP the "first level" and the
in-context memory the "second level", the reverse of Def. 2's order. The course follows Def. 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Component",
    "adam_components",
    "assign_levels",
    "faster",
    "hope_components",
    "level_label",
    "m3_components",
    "sgd_momentum_components",
]


@dataclass(frozen=True)
class Component:
    """One component of a nested system.

    Attributes:
        name: a unique name.
        frequency: updates per unit of time (≥ 0; e.g. per token read, or per optimizer step).
            0 means the component never changes inside the system described.
        needs: names of the components whose state at time t this component's state at time t
            is computed from (only matters between components of equal frequency, Def. 2 (2)).
        description: what the component is and when it is written (for diagrams).
    """

    name: str
    frequency: float
    needs: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if isinstance(self.frequency, bool) or not isinstance(self.frequency, (int, float)) \
                or not math.isfinite(self.frequency) or self.frequency < 0:
            raise ValueError(f"frequency of {self.name!r} must be a finite number >= 0, "
                             f"got {self.frequency!r}")
        if isinstance(self.needs, str) or not isinstance(self.needs, (tuple, list)):
            raise ValueError(f"needs of {self.name!r} must be a tuple of names, "
                             f"got {self.needs!r}")


def _index(components: Sequence[Component]) -> dict[str, Component]:
    named: dict[str, Component] = {}
    for component in components:
        if not isinstance(component, Component):
            raise ValueError(f"components must be Component objects, got {component!r}")
        if component.name in named:
            raise ValueError(f"component names must be unique, got {component.name!r} twice")
        named[component.name] = component
    for component in components:
        for need in component.needs:
            if need not in named:
                raise ValueError(f"{component.name!r} needs {need!r}, which is not a component "
                                 f"(known: {sorted(named)})")
    return named


def _needs_closure(named: dict[str, Component], name: str) -> set[str]:
    """Every component whose state at t ``name``'s state at t requires, directly or through
    components of the same frequency."""
    frequency = named[name].frequency
    seen: set[str] = set()
    stack = [need for need in named[name].needs if named[need].frequency == frequency]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(need for need in named[current].needs
                     if named[need].frequency == frequency)
    return seen


def faster(a: str, b: str, components: Sequence[Component]) -> bool:
    """A ≻ B (arXiv Def. 2): f_A > f_B, or f_A = f_B and B's state at t needs A's at t."""
    named = _index(components)
    for name in (a, b):
        if name not in named:
            raise ValueError(f"{name!r} is not a component (known: {sorted(named)})")
    if named[a].frequency != named[b].frequency:
        return named[a].frequency > named[b].frequency
    return a in _needs_closure(named, b)


def assign_levels(components: Sequence[Component]) -> dict[str, int]:
    """The level of every component (arXiv §3.2, Def. 2/3): level 1 is the fastest.

    level(B) = 1 + max{level(A) : A ≻ B}, or 1 when nothing is faster than B. Two components
    share a level exactly when they have the same frequency and neither needs the other.

    Raises:
        ValueError: unknown or repeated names, a bad frequency, or components of equal
            frequency that need each other at the same time t (no order exists).
    """
    named = _index(components)
    closures = {name: _needs_closure(named, name) for name in named}
    for name, closure in closures.items():
        if name in closure:
            raise ValueError(f"{name!r} needs its own state at the same time t through "
                             f"{sorted(closure)}: components of equal frequency cannot need "
                             "each other both ways")
    levels: dict[str, int] = {}

    def level_of(name: str) -> int:
        if name not in levels:
            above = [other for other in named if other != name
                     and (named[other].frequency > named[name].frequency
                          or other in closures[name])]
            levels[name] = 1 + max((level_of(other) for other in above), default=0)
        return levels[name]

    # Components in order of decreasing frequency, so the recursion stays shallow.
    for name in sorted(named, key=lambda item: -named[item].frequency):
        level_of(name)
    return {component.name: levels[component.name] for component in components}


def level_label(level: int, period: int | None = None, unit: str = "token") -> str:
    """The label every plot and widget of the course uses for a level: ``"level 2 (every 32
    tokens)"``; ``period`` None: ``"level 2 (η = 0, outer optimizer only)"``."""
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be an int >= 1, got {level!r}")
    if period is None:
        return f"level {level} (η = 0, outer optimizer only)"
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a positive int or None, got {period!r}")
    every = f"every {unit}" if period == 1 else f"every {period} {unit}s"
    return f"level {level} ({every})"


# --------------------------------------------------------------------------------------------
# The systems of the course, one optimizer step = one unit of time unless said otherwise


def sgd_momentum_components() -> list[Component]:
    """SGD with momentum (arXiv eq. 33–35): m_{i+1} = α m_i − η ∇L(W_i), W_{i+1} = W_i + m_{i+1}.
    Both are written once per step and W's step needs m's: momentum level 1, weights level 2."""
    return [Component("momentum m", 1.0, (), "m ← α m − η g, every step"),
            Component("weights W", 1.0, ("momentum m",), "W ← W + m, every step, needs m")]


def adam_components() -> list[Component]:
    """Adam: the two moments are written every step independently of each other (one level,
    the paper's A =_f B), and the weights' step needs both."""
    return [Component("first moment m", 1.0, (), "EMA of g, every step"),
            Component("second moment v", 1.0, (), "EMA of g², every step"),
            Component("weights W", 1.0, ("first moment m", "second moment v"),
                      "W ← W − η m/√v, every step")]


def m3_components(slow_every: int = 10) -> list[Component]:
    """M3 (arXiv Algorithm 1): M1 and V every step (level 1), W every step from them (level 2),
    the slow momentum M2 once per ``slow_every`` steps, less often than W (level 3)."""
    if isinstance(slow_every, bool) or not isinstance(slow_every, int) or slow_every < 2:
        raise ValueError(f"slow_every must be an int >= 2, got {slow_every!r}")
    return [Component("fast momentum M1", 1.0, (), "M1 ← M1 + β1 g, every step"),
            Component("second moment V", 1.0, (), "V ← V + β2 g², every step"),
            Component("weights W", 1.0, ("fast momentum M1", "second moment V"),
                      "W ← W − η (O1 + α O2)/√V, every step"),
            Component("slow momentum M2", 1.0 / slow_every, (),
                      f"M2 ← M2 + β3 Σ g, every {slow_every} steps")]


def hope_components(cms_chunk_sizes: Sequence[int] = (256, 32),
                    cms_learning_rates: Sequence[float] = (0.0, 1e-2),
                    tokens_per_step: int = 16 * 64) -> list[Component]:
    """A HOPE language model trained by AdamW, one token read = one unit of time.

    The self-modifying Titans memories are written at every token (keys and targets are
    refreshed at chunk boundaries, the memories themselves change token by token); each CMS
    block with η ≠ 0 every C tokens; AdamW's moments and then the weights once per training step
    of ``tokens_per_step`` tokens (batch × context). A CMS block with η = 0 never changes within
    a context: it is one of the weights. Defaults: the CMS of ``nlbook.hope.HopeBlock`` and the
    ``tiny`` training preset (batch 16, context 64).
    """
    if len(cms_chunk_sizes) != len(cms_learning_rates):
        raise ValueError(f"cms_chunk_sizes and cms_learning_rates must have the same length, got "
                         f"{len(cms_chunk_sizes)} and {len(cms_learning_rates)}")
    if isinstance(tokens_per_step, bool) or not isinstance(tokens_per_step, int) \
            or tokens_per_step < 1:
        raise ValueError(f"tokens_per_step must be a positive int, got {tokens_per_step!r}")
    step = 1.0 / tokens_per_step
    components = [Component("Titans memories M_k, M_v, M_η, M_α, M_memory", 1.0, (),
                            "written by DGD at every token")]
    outer = []
    for block, (size, rate) in enumerate(zip(cms_chunk_sizes, cms_learning_rates,
                                             strict=True)):
        if rate != 0.0:
            components.append(Component(f"CMS block {block}", 1.0 / size, (),
                                        f"−η Σ ∇loss every {size} tokens, in context"))
        else:
            outer.append(f"CMS block {block}")
    components.append(Component("AdamW moments", step, (), "every training step"))
    weights = "weights and initial states" + (f" (with {', '.join(outer)})" if outer else "")
    components.append(Component(weights, step, ("AdamW moments",),
                                "every training step, from the moments"))
    return components
