"""The Continuum Memory System (CMS): a chain of MLP blocks updated at different frequencies.

Chapter 3 of the course. Nested Learning, arXiv 2512.24695, §7.1, A-eq 70–74 (NeurIPS N-eq 30–31).

A CMS has K levels. Level ℓ is an MLP block with parameters θ^(ℓ), a chunk size C_ℓ and a
learning rate η_ℓ. Inside a stream of tokens (0-based positions t = 0, 1, ...), level ℓ takes the
gradient of the **task loss** of every token at the parameters in force at that token (the ones
that entered its chunk), sums them over the chunk, and applies the sum when the chunk closes
(A-eq 71, arXiv reading: one η_ℓ per level, outside the sum):

    θ^(ℓ) ← θ^(ℓ) − η_ℓ Σ_{t = i−C_ℓ}^{i−1} ∇_θ^(ℓ) loss_t      when i ≡ 0 (mod C_ℓ)

where i counts the tokens seen so far. The update is used from token i on (0-based), so the
output at position t depends on tokens ≤ t only. Other steps change nothing. Exactly C_ℓ tokens
per chunk (the paper's sum over i−C..i has C+1 terms; every implementation uses C) and a SUM,
never a mean (a level with a long chunk moves about as far as a per-token level; it is only
delayed).

Where the per-token error signal comes from. The paper's f is the gradient of the model's task
loss. :class:`ContinuumMemory` takes it as an argument, test-time-training style: a per-token
loss ``loss_fn(outputs (B, n, d), targets (B, n, ...)) -> (B, n)`` and the targets of the
positions. The gradient of token t reaches every level through the downstream levels at the
parameters in force at t. Every CMS level acts token-wise, so inside a segment in which no level
changes, the sum of per-token gradients equals the gradient of the summed loss: one backward pass
per segment gives every level's chunk sum exactly, for every sequence of the batch at once.
For a language model the target of position t is token t+1, known only once token t+1 has been
seen: pass targets one shorter than the input and the last position stays *pending* in the
returned state; the next call resolves it with ``pending_target`` before it computes anything,
so a chunk closes only once its last token's target is known, and the update is used from the
next token on (causal).

Variants (A §7.1):
- ``"sequential"`` (A-eq 70, the default; chapter 5 uses it): y = block_K(... block_1(x)).
- ``"independent"`` (head-wise, A-eq 74): y = x + Σ_ℓ a_ℓ MLP_ℓ(norm(x)) with learnable a_ℓ
  (initialised to 1); without residual y = Σ_ℓ a_ℓ MLP_ℓ(x).
- ``"nested"`` (A-eq 72): the sequential chain in which every level is re-initialised to its
  initial (meta) parameters at the end of its context, i.e. every chunk of the next slower
  level. Any variant also accepts explicit ``reset_every`` periods.

Each level is a pre-norm residual MLP block x + W_out σ(W_in LN(x) + b_in) + b_out (LN without
affine: its gain would be redundant with W_in), or, with ``linear=True``, a linear map W x + b;
residual and pre-norm can be switched off. With every η_ℓ = 0 the CMS is exactly the frozen
MLP chain: a Transformer MLP is a CMS of one level with update frequency 0.

Two uses, both real:
- in-context (test-time) updates within one sequence: :class:`ContinuumMemory`, per-sequence fast
  parameters, differentiable w.r.t. the initial parameters (backprop through the updates), with
  carried :class:`CMSState` for streaming;
- multi-rate training: :class:`MultiRateOptimizer` steps level ℓ of an outer optimizer every
  C_ℓ steps with the summed gradient.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import check_dtype_float, check_ndim, check_positive_int

__all__ = [
    "VARIANTS",
    "CMSOutput",
    "CMSRecord",
    "CMSState",
    "ContinuumMemory",
    "LevelRecord",
    "MultiRateOptimizer",
    "cross_entropy_loss",
    "nested_reset_periods",
    "parameter_trajectory",
    "reference_continuum_memory",
    "squared_error_loss",
]

VARIANTS = ("sequential", "independent", "nested")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LevelParameters = dict[str, torch.Tensor]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
    "identity": lambda tensor: tensor,
}


# --------------------------------------------------------------------------------------------
# Losses (per token: outputs (B, n, d), targets (B, n, ...) -> (B, n))
# --------------------------------------------------------------------------------------------


def squared_error_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """½‖y_t − target_t‖² per token: (B, n, d), (B, n, d) -> (B, n). Its gradient w.r.t. a linear
    level W is (W x_t − target_t) x_tᵀ."""
    return 0.5 * (outputs - targets).pow(2).sum(-1)


def cross_entropy_loss(readout: Callable[[torch.Tensor], torch.Tensor]) -> LossFn:
    """Per-token cross-entropy of ``readout(outputs)`` (B, n, V) against integer targets (B, n).

    For a language model ``readout`` is the LM head (closed over, so the outer optimizer trains
    it) and the target of position t is token t+1: the in-context next-token loss of A-eq 71.
    """

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = readout(outputs)
        flat = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return flat.view(targets.shape)

    return loss


def nested_reset_periods(chunk_sizes: Sequence[int]) -> list[int | None]:
    """Context length of every level in the nested CMS (A-eq 72): the chunk size of the next
    slower level (the smallest larger chunk); the slowest level never resets (``None``)."""
    _check_chunk_sizes(chunk_sizes)
    periods: list[int | None] = []
    for size in chunk_sizes:
        slower = [other for other in chunk_sizes if other > size]
        periods.append(min(slower) if slower else None)
    return periods


# --------------------------------------------------------------------------------------------
# State and update records
# --------------------------------------------------------------------------------------------


@dataclass
class CMSState:
    """What a stream carries from one call to the next (per sequence, never shared in a batch).

    Attributes:
        parameters: per level, the fast parameters now in force, each (B, *shape).
        gradient_sums: per level, the summed per-token gradients of the open (partial) chunk,
            each (B, *shape), or ``None`` when nothing has been accumulated since the last close.
        position: how many tokens the stream has consumed (a pending one included).
        pending_input: (B, 1, d) CMS input of the last position when its target was not known
            yet (next-token LM at generation time); the next call resolves it.
    """

    parameters: list[LevelParameters]
    gradient_sums: list[LevelParameters | None]
    position: int
    pending_input: torch.Tensor | None = None

    def detach(self) -> CMSState:
        """A copy cut from the autograd graph (truncated backprop through the updates)."""

        def cut(level: LevelParameters | None) -> LevelParameters | None:
            return None if level is None else {k: v.detach() for k, v in level.items()}

        pending = None if self.pending_input is None else self.pending_input.detach()
        return CMSState([cut(p) for p in self.parameters],  # type: ignore[misc]
                        [cut(g) for g in self.gradient_sums], self.position, pending)


@dataclass
class LevelRecord:
    """Updates of one level: ``steps[j]`` is the token count i at which update j was applied
    (it is used from 0-based position i on), ``sizes[j]`` its Frobenius norm per sequence (B,),
    ``deltas[j]`` the change itself (only with ``keep_deltas``), ``resets`` the re-inits."""

    steps: list[int] = field(default_factory=list)
    sizes: list[torch.Tensor] = field(default_factory=list)
    deltas: list[LevelParameters] = field(default_factory=list)
    resets: list[int] = field(default_factory=list)


class CMSRecord:
    """Every update of every level, so that it can be plotted; pass the same record to several
    streaming calls to keep appending. Levels with η = 0 never change and log nothing."""

    def __init__(self, num_levels: int, *, keep_deltas: bool = False) -> None:
        check_positive_int("num_levels", num_levels)
        self.levels = [LevelRecord() for _ in range(num_levels)]
        self.keep_deltas = keep_deltas

    def log_update(self, level: int, step: int, delta: LevelParameters) -> None:
        squares = sum(v.detach().pow(2).flatten(1).sum(1) for v in delta.values())
        record = self.levels[level]
        record.steps.append(step)
        record.sizes.append(squares.sqrt())
        if self.keep_deltas:
            record.deltas.append({k: v.detach().clone() for k, v in delta.items()})

    def log_reset(self, level: int, step: int) -> None:
        self.levels[level].resets.append(step)

    def update_steps(self, level: int) -> list[int]:
        return list(self.levels[level].steps)

    def update_sizes(self, level: int) -> torch.Tensor:
        """(n_updates, B) norms of the updates of ``level`` (empty (0, 0) when none)."""
        sizes = self.levels[level].sizes
        return torch.stack(sizes) if sizes else torch.zeros(0, 0)


def parameter_trajectory(record: CMSRecord, level: int, name: str, initial: torch.Tensor,
                         sequence: int = 0) -> torch.Tensor:
    """Parameter ``name`` of ``level`` after each recorded update, for one sequence:
    (n_updates + 1, *shape), row 0 = ``initial``. Needs ``keep_deltas=True``; resets restart
    from ``initial``."""
    level_record = record.levels[level]
    if not record.keep_deltas and level_record.steps:
        raise ValueError("record must be created with keep_deltas=True to rebuild trajectories")
    current = initial.detach().clone()
    rows = [current.clone()]
    resets = sorted(level_record.resets)
    for step, delta in zip(level_record.steps, level_record.deltas, strict=True):
        while resets and resets[0] < step:
            resets.pop(0)
            current = initial.detach().clone()
        current = current + delta[name][sequence]
        rows.append(current.clone())
    return torch.stack(rows)


@dataclass
class CMSOutput:
    """Result of :meth:`ContinuumMemory.forward`.

    Attributes:
        output: (B, T, d) the CMS output.
        losses: (B, T) per-token task loss at the parameters in force (NaN where the target was
            not given or no loss was passed).
        state: the :class:`CMSState` after the call (pass it to the next call to stream);
            ``None`` when called with ``keep_state=False``.
        pending_loss: (B,) loss of the position resolved at the start of the call, or ``None``.
    """

    output: torch.Tensor
    losses: torch.Tensor
    state: CMSState | None
    pending_loss: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def _check_chunk_sizes(chunk_sizes: Sequence[int]) -> None:
    if isinstance(chunk_sizes, (str, bytes)) or not isinstance(chunk_sizes, Sequence):
        raise ValueError(f"chunk_sizes must be a sequence of positive ints, got {chunk_sizes!r}")
    if len(chunk_sizes) == 0:
        raise ValueError("chunk_sizes must name at least one level, got an empty sequence")
    for index, size in enumerate(chunk_sizes):
        check_positive_int(f"chunk_sizes[{index}]", size)


class _PerSequenceAffine(torch.autograd.Function):
    """inputs (B, n, d_in) @ weight (B, d_out, d_in)ᵀ + bias (B, d_out), with a backward whose
    weight gradient comes out contiguous in the weight's own layout.

    Autograd through ``baddbmm(bias, inputs, weight.transpose(1, 2))`` returns the weight's
    gradient as a transposed view; adding it to the (contiguous) weight in every in-context
    update then reads memory across strides, measured 5-40x slower than a contiguous add.
    The backward is made of differentiable ops, so second-order updates still work.
    """

    @staticmethod
    def forward(ctx, inputs, weight, bias):
        ctx.save_for_backward(inputs, weight)
        return torch.baddbmm(bias[:, None], inputs, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad_output):
        inputs, weight = ctx.saved_tensors
        grad_inputs = grad_output @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad_output.transpose(1, 2) @ inputs if ctx.needs_input_grad[1] else None
        grad_bias = grad_output.sum(1) if ctx.needs_input_grad[2] else None
        return grad_inputs, grad_weight, grad_bias


def _affine(inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """inputs (B, n, d_in) @ weight ᵀ + bias, the weight (B, d_out, d_in) per sequence or one
    shared (d_out, d_in), the bias (B, d_out) or shared (d_out,).

    A shared weight (or one expanded over the batch, stride 0) is one matrix product over all
    B·n tokens: the same work as B small ones, several times faster on a CPU.
    """
    if weight.ndim == 2 or weight.stride(0) == 0:
        shared = weight if weight.ndim == 2 else weight[0]
        if bias.ndim == 1 or bias.stride(0) == 0:
            return F.linear(inputs, shared, bias if bias.ndim == 1 else bias[0])
        return F.linear(inputs, shared) + bias[:, None]
    return _PerSequenceAffine.apply(inputs, weight, bias)


@dataclass
class _LevelTensors:
    """One level's per-sequence tensors while a call runs: ``dense`` (name → (B, *shape)) plus,
    for a weight, a low-rank term ``low_rank[name] = (G (B, m, d_out), X (B, m, d_in))`` with
    W = dense + Gᵀ X.

    Why: the in-context gradient of an affine weight over a chunk is Σ_t g_t x_tᵀ (g_t the
    gradient at the layer's output, x_t its input), so every update −η Σ_t g_t x_tᵀ is kept as
    its factors (−η G, X) and applied as (x Xᵀ) G (the "dual form"), never written as a
    (B, d_out, d_in) tensor per sequence. Exact, not an approximation. Measured in
    ``bench hope``: the materialised form spent most of the CMS's time writing those tensors.
    Dense tensors are made only for the returned :class:`CMSState` (:meth:`materialize`).
    A gradient sum may hold only some names densely (a missing name counts as zero).
    """

    dense: dict[str, torch.Tensor]
    low_rank: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    # A dense tensor may also be the level's shared parameter itself, without the batch axis
    # (the start of a stream and every reset): no (B, ...) copy, no per-sequence gradient.

    def plus(self, other: _LevelTensors, scale: float = 1.0) -> _LevelTensors:
        """self + scale · other, keeping weights factored (scale folds into G)."""
        dense = dict(self.dense)
        for name, value in other.dense.items():
            dense[name] = (torch.add(dense[name], value, alpha=scale) if name in dense
                           else scale * value)
        low_rank = dict(self.low_rank)
        for name, (left, right) in other.low_rank.items():
            left = left if scale == 1.0 else scale * left
            if name in low_rank:
                old_left, old_right = low_rank[name]
                left, right = torch.cat([old_left, left], 1), torch.cat([old_right, right], 1)
            low_rank[name] = (left, right)
        return _LevelTensors(dense, low_rank)

    def materialize(self, batch: int, shapes: dict[str, torch.Size]) -> LevelParameters:
        """Dense (B, *shape) tensors: dense + Gᵀ X for every factored weight; shared tensors are
        expanded over the batch. ``shapes``: the parameter shapes, to tell shared from batched."""
        out = dict(self.dense)
        for name, (left, right) in self.low_rank.items():
            product = left.transpose(1, 2) @ right
            out[name] = out[name] + product if name in out else product
        return {name: value.expand(batch, *shapes[name]) if value.shape == shapes[name]
                else value for name, value in out.items()}


class ContinuumMemory(nn.Module):
    """In-context Continuum Memory System: (B, T, d) -> (B, T, d) with per-sequence fast levels.

    Args:
        dim: model width d.
        chunk_sizes: C_ℓ per level (positive ints), in chain order (level 0 sees the input).
        learning_rates: η_ℓ ≥ 0 per level (arXiv A-eq 71: one rate per level, outside the sum).
        hidden_dim: MLP width (default 4·d); ignored when ``linear``.
        linear: each level is W x + b instead of an MLP (the linear-regression toys).
        variant: ``"sequential"``, ``"independent"`` or ``"nested"`` (see the module docstring).
        reset_every: per level a context length after which it is re-initialised to its
            initial parameters (``None`` = never). ``"nested"`` fills it with
            :func:`nested_reset_periods` when not given.
        residual: add the block input to the block output (sequential) or x to the sum
            (independent).
        pre_norm: LayerNorm without affine before each MLP.
        activation: ``"gelu"``, ``"relu"``, ``"silu"``, ``"tanh"`` or ``"identity"``.
        init_scale: weights start N(0, init_scale²/fan_in); biases start at 0.
        generator: torch.Generator for the initialisation.
        dtype: parameter dtype (default torch's default dtype).
        first_order: when a graph is recorded, treat the in-context updates as constants
            (first-order MAML): the outer gradient reaches the initial parameters through the
            direct path only, not through the updates (no create_graph, one cheap backward per
            segment). The forward values are identical to the default (second-order) mode.

    The initial (meta) parameters are ``self.levels[ℓ][name]`` (nn.Parameters, trained by an
    outer optimizer through the in-context updates); the fast parameters live in the
    :class:`CMSState` and are (B, *shape) per level.
    """

    def __init__(self, dim: int, chunk_sizes: Sequence[int], learning_rates: Sequence[float], *,
                 hidden_dim: int | None = None, linear: bool = False,
                 variant: str = "sequential", reset_every: Sequence[int | None] | None = None,
                 residual: bool = True, pre_norm: bool = True, activation: str = "gelu",
                 init_scale: float = 1.0, generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None, first_order: bool = False) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        _check_chunk_sizes(chunk_sizes)
        num_levels = len(chunk_sizes)
        if isinstance(learning_rates, (str, bytes)) or not isinstance(learning_rates, Sequence):
            raise ValueError(
                f"learning_rates must be a sequence of numbers, got {learning_rates!r}")
        if len(learning_rates) != num_levels:
            raise ValueError(f"learning_rates must have one entry per level ({num_levels}), "
                             f"got {len(learning_rates)}")
        for index, rate in enumerate(learning_rates):
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate >= 0:
                raise ValueError(f"learning_rates[{index}] must be a number >= 0, got {rate!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if reset_every is None:
            reset_every = (nested_reset_periods(chunk_sizes) if variant == "nested"
                           else [None] * num_levels)
        if len(reset_every) != num_levels:
            raise ValueError(f"reset_every must have one entry per level ({num_levels}), "
                             f"got {len(reset_every)}")
        for index, period in enumerate(reset_every):
            check_positive_int(f"reset_every[{index}]", period, allow_none=True)  # type: ignore[arg-type]
        hidden_dim = 4 * dim if hidden_dim is None else hidden_dim
        check_positive_int("hidden_dim", hidden_dim)
        if not init_scale >= 0:
            raise ValueError(f"init_scale must be >= 0, got {init_scale!r}")

        self.dim, self.hidden_dim, self.linear = dim, hidden_dim, linear
        self.chunk_sizes = tuple(int(size) for size in chunk_sizes)
        self.learning_rates = tuple(float(rate) for rate in learning_rates)
        self.reset_every = tuple(reset_every)
        self.variant, self.residual, self.pre_norm = variant, residual, pre_norm
        self.activation = activation
        self.first_order = bool(first_order)
        factory = {"dtype": dtype or torch.get_default_dtype()}

        def normal(*shape: int) -> nn.Parameter:
            values = torch.randn(*shape, generator=generator, **factory)
            return nn.Parameter(values * (init_scale / math.sqrt(shape[-1])))

        def zeros(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape, **factory))

        levels = []
        for _ in range(num_levels):
            if linear:
                levels.append(nn.ParameterDict({"weight": normal(dim, dim), "bias": zeros(dim)}))
            else:
                levels.append(nn.ParameterDict({
                    "w_in": normal(hidden_dim, dim), "b_in": zeros(hidden_dim),
                    "w_out": normal(dim, hidden_dim), "b_out": zeros(dim)}))
        self.levels = nn.ModuleList(levels)
        self.aggregation = nn.Parameter(torch.ones(num_levels, **factory)) \
            if variant == "independent" else None

    @property
    def num_levels(self) -> int:
        return len(self.chunk_sizes)

    # ---- the model: a chain of blocks evaluated at per-sequence parameters ----------------

    def branch(self, parameters: LevelParameters, inputs: torch.Tensor) -> torch.Tensor:
        """MLP of one level without the residual: (B, n, d) -> (B, n, d), parameters (B, ...)."""
        return self._branch(_LevelTensors(dict(parameters)), inputs, None)

    def _branch(self, level: _LevelTensors, inputs: torch.Tensor,
                capture: list | None) -> torch.Tensor:
        """:meth:`branch` at possibly factored parameters; ``capture`` collects, per affine
        layer, (weight name, bias name, layer input, layer output) for the inner gradients."""
        hidden = F.layer_norm(inputs, inputs.shape[-1:]) if self.pre_norm else inputs
        if self.linear:
            return self._layer(level, "weight", "bias", hidden, capture)
        hidden = self._layer(level, "w_in", "b_in", hidden, capture)
        hidden = _ACTIVATIONS[self.activation](hidden)
        return self._layer(level, "w_out", "b_out", hidden, capture)

    @staticmethod
    def _layer(level: _LevelTensors, weight: str, bias: str, inputs: torch.Tensor,
               capture: list | None) -> torch.Tensor:
        output = _affine(inputs, level.dense[weight], level.dense[bias])
        if weight in level.low_rank:
            left, right = level.low_rank[weight]
            output = output + (inputs @ right.transpose(1, 2)) @ left    # x (W + Gᵀ X)ᵀ
        if capture is not None:
            capture.append((weight, bias, inputs, output))
        return output

    def apply_parameters(self, parameters: Sequence[LevelParameters],
                         inputs: torch.Tensor) -> torch.Tensor:
        """The CMS output (A-eq 70 / 74) with fixed per-level parameters, no update:
        (B, n, d) -> (B, n, d). ``state.parameters`` can be passed to evaluate a stream's
        current memory on held-out inputs."""
        return self._run_levels([_LevelTensors(dict(level)) for level in parameters], inputs)

    def _run_levels(self, levels: Sequence[_LevelTensors], inputs: torch.Tensor,
               captures: dict[int, list] | None = None) -> torch.Tensor:
        """:meth:`apply_parameters` at possibly factored parameters (``captures``: per level
        index a list for :meth:`_branch`)."""
        captures = captures or {}
        if self.variant == "independent":
            assert self.aggregation is not None
            total = inputs if self.residual else torch.zeros_like(inputs)
            for index, level in enumerate(levels):
                total = total + self.aggregation[index] * self._branch(level, inputs,
                                                                       captures.get(index))
            return total
        hidden = inputs
        for index, level in enumerate(levels):
            update = self._branch(level, hidden, captures.get(index))
            hidden = hidden + update if self.residual else update
        return hidden

    # ---- state ----------------------------------------------------------------------------

    def initial_parameters(self, level: int, batch: int) -> LevelParameters:
        """Level ``level``'s initial (meta) parameters seen as per-sequence (B, *shape) tensors
        (an expand: differentiable, and every update makes a separate tensor per sequence)."""
        return {name: value.unsqueeze(0).expand(batch, *value.shape)
                for name, value in self.levels[level].items()}

    def initial_state(self, batch: int) -> CMSState:
        """The state at the start of a stream of ``batch`` sequences (position 0)."""
        check_positive_int("batch", batch)
        return CMSState([self.initial_parameters(level, batch) for level in range(self.num_levels)],
                        [None] * self.num_levels, 0, None)

    def _active_levels(self) -> list[int]:
        return [level for level, rate in enumerate(self.learning_rates) if rate != 0.0]

    def _next_boundary(self, position: int) -> float:
        """Smallest token count > position at which some active level closes or resets."""
        best = math.inf
        for level in self._active_levels():
            for period in (self.chunk_sizes[level], self.reset_every[level]):
                if period is not None:
                    best = min(best, (position // period + 1) * period)
        return best

    def _shapes(self, level: int) -> dict[str, torch.Size]:
        return {name: value.shape for name, value in self.levels[level].items()}

    def _close(self, levels: list[_LevelTensors], sums: list[_LevelTensors | None],
               count: int, record: CMSRecord | None, batch: int) -> None:
        """Apply every update whose chunk closes at token count ``count`` (A-eq 71), then the
        nested resets (A-eq 72). Mutates the two lists."""
        for level in self._active_levels():
            if count % self.chunk_sizes[level] == 0 and sums[level] is not None:
                rate = self.learning_rates[level]
                levels[level] = levels[level].plus(sums[level], -rate)   # θ ← θ − η Σ ∇
                if record is not None:
                    record.log_update(level, count, {
                        name: -rate * value for name, value
                        in sums[level].materialize(batch, self._shapes(level)).items()})
                sums[level] = None
            period = self.reset_every[level]
            if period is not None and count % period == 0:
                levels[level] = _LevelTensors(dict(self.levels[level].items()))
                sums[level] = None
                if record is not None:
                    record.log_reset(level, count)

    def _segment(self, levels: list[_LevelTensors], inputs: torch.Tensor,
                 targets: torch.Tensor | None, loss_fn: LossFn | None, need_graph: bool,
                 sums: list[_LevelTensors | None], inner_gradients: bool = True):
        """Outputs of a segment in which no level changes, the per-token losses of its first
        ``targets.shape[1]`` positions, and their gradient sums added into ``sums``.

        Σ_t ∇loss_t at shared parameters = ∇ Σ_t loss_t (every level is token-wise), and the
        loss of sequence b depends only on sequence b's parameters, so one backward pass gives
        every level's per-sequence chunk sum. It is taken at each affine layer's output
        (g_t = ∂L/∂z_t): the weight's sum is Σ_t g_t x_tᵀ, kept as the factors (G, X), and the
        bias's is Σ_t g_t (see :class:`_LevelTensors`). ``create_graph`` keeps the updates
        differentiable w.r.t. the initial parameters and the inputs when the caller records a
        graph and ``first_order`` is off. ``inner_gradients=False``: outputs and losses only.
        """
        batch, length, _ = inputs.shape
        if loss_fn is None or targets is None or targets.shape[1] == 0:
            outputs = self._run_levels(levels, inputs)
            nan = torch.full((batch, length), math.nan, dtype=inputs.dtype, device=inputs.device)
            return outputs, nan
        active = self._active_levels() if inner_gradients else []
        second_order = need_graph and not self.first_order
        with torch.enable_grad():
            if active and not (need_graph and inputs.requires_grad):
                # A graph to differentiate through even when the caller records none.
                inputs = inputs.detach().requires_grad_(True)
            captures: dict[int, list] = {level: [] for level in active}
            outputs = self._run_levels(levels, inputs, captures)
            known = targets.shape[1]
            losses = loss_fn(outputs[:, :known], targets)
            if not isinstance(losses, torch.Tensor) or losses.shape != (batch, known):
                shape = getattr(losses, "shape", type(losses).__name__)
                raise ValueError(f"loss_fn must return per-token losses of shape (B, n) = "
                                 f"({batch}, {known}), got {shape}")
            layers = [entry for level in active for entry in captures[level]]
            gradients = (torch.autograd.grad(losses.sum(), [entry[3] for entry in layers],
                                             create_graph=second_order,
                                             retain_graph=need_graph, allow_unused=True)
                         if layers else ())
        index = 0
        for level in active:
            dense, low_rank = {}, {}
            for weight, bias, layer_input, layer_output in captures[level]:
                gradient = gradients[index]
                index += 1
                if gradient is None:
                    gradient = torch.zeros_like(layer_output)
                # Positions past ``known`` have no loss: their rows of G are zero.
                gradient, layer_input = gradient[:, :known], layer_input[:, :known]
                if not second_order:
                    layer_input = layer_input.detach()
                low_rank[weight] = (gradient, layer_input)
                dense[bias] = gradient.sum(1)
            new = _LevelTensors(dense, low_rank)
            sums[level] = new if sums[level] is None else sums[level].plus(new)
        if known < length:
            nan = torch.full((batch, length - known), math.nan, dtype=losses.dtype,
                             device=losses.device)
            losses = torch.cat([losses, nan], dim=1)
        if not need_graph:
            outputs, losses = outputs.detach(), losses.detach()
        return outputs, losses

    # ---- forward ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *,
                loss_fn: LossFn | None = None, state: CMSState | None = None,
                pending_target: torch.Tensor | None = None,
                record: CMSRecord | None = None, keep_state: bool = True) -> CMSOutput:
        """Run the CMS over a chunk of stream with in-context updates (A-eq 70–72).

        Args:
            x: (B, T, d) inputs (for HOPE: the output of the self-modifying Titans memory).
            targets: (B, T, ...) target of every position, or (B, T−1, ...) when the last
                position's target is not known yet (it then stays pending in the state).
                ``None``: no update (the levels run frozen at the state's parameters).
            loss_fn: per-token task loss ``(outputs (B, n, d), targets (B, n, ...)) -> (B, n)``,
                e.g. :func:`squared_error_loss` or :func:`cross_entropy_loss` (next-token LM).
            state: carried state of the stream (``None``: start from the initial parameters).
            pending_target: (B, ...) target of the state's pending position.
            record: a :class:`CMSRecord` to append every update to.
            keep_state: ``False`` when the caller discards the state (a training step): the
                last segment's inner gradients, which only the state would carry on, are then
                not computed, and ``state`` is ``None``. Outputs and losses are unchanged.

        Returns:
            :class:`CMSOutput` with output (B, T, d), per-token losses (B, T) and the new state.

        Within a segment in which no level changes (between consecutive chunk boundaries of the
        levels with η ≠ 0) all tokens are processed in parallel; only segments are sequential.
        Processing a stream in pieces with the carried state equals processing it at once, for
        any split.
        """
        check_ndim("x", x, 3, "(B, T, d)")
        check_dtype_float("x", x)
        batch, length, width = x.shape
        if width != self.dim:
            raise ValueError(
                f"x must have shape (B, T, d) with d = {self.dim}, got {tuple(x.shape)}")
        reference = self.levels[0][next(iter(self.levels[0].keys()))]
        if x.dtype != reference.dtype:
            raise ValueError(f"x must have the parameters' dtype {reference.dtype}, got {x.dtype}")
        if (targets is None) != (loss_fn is None):
            raise ValueError("targets and loss_fn must be given together (or both left out), got "
                             f"targets={'None' if targets is None else 'a tensor'}, "
                             f"loss_fn={'None' if loss_fn is None else 'a function'}")
        if targets is not None:
            if not isinstance(targets, torch.Tensor) or targets.ndim < 2:
                raise ValueError("targets must be a tensor of shape (B, T, ...), "
                                 f"got {getattr(targets, 'shape', type(targets))}")
            if targets.shape[0] != batch or targets.shape[1] not in (length, length - 1):
                raise ValueError(f"targets must have shape (B, T, ...) or (B, T-1, ...) with "
                                 f"B = {batch}, T = {length}, got {tuple(targets.shape)}")
        if state is None:
            # The shared parameters themselves, not an expand over the batch (see _LevelTensors).
            state = CMSState([dict(level.items()) for level in self.levels],
                             [None] * self.num_levels, 0, None)
        elif next(iter(state.parameters[0].values())).shape[0] != batch:
            raise ValueError(f"state holds a different batch size than x (B = {batch})")
        need_graph = torch.is_grad_enabled()
        parameters = [_LevelTensors(dict(level)) for level in state.parameters]
        sums = [None if level is None else _LevelTensors(dict(level))
                for level in state.gradient_sums]
        position = state.position
        pending_loss = None

        if state.pending_input is not None:
            if pending_target is None or loss_fn is None:
                raise ValueError("state has a pending position: pass pending_target (its target) "
                                 "and loss_fn")
            _, losses = self._segment(parameters, state.pending_input, pending_target[:, None],
                                      loss_fn, need_graph, sums)
            pending_loss = losses[:, 0]
            self._close(parameters, sums, position, record, batch)
        elif pending_target is not None:
            raise ValueError("pending_target was given but the state has no pending position")

        known = 0 if targets is None else targets.shape[1]
        outputs, losses, pending_input = [], [], None
        start = 0
        while start < length:
            end = int(min(length, self._next_boundary(position + start) - position))
            segment_targets = (None if targets is None
                               else targets[:, start:max(start, min(end, known))])
            segment_outputs, segment_losses = self._segment(
                parameters, x[:, start:end], segment_targets, loss_fn, need_graph, sums,
                inner_gradients=keep_state or end < length)
            outputs.append(segment_outputs)
            losses.append(segment_losses)
            if end > known and targets is not None:  # the last position waits for its target
                pending_input = x[:, length - 1:length]
            else:
                self._close(parameters, sums, position + end, record, batch)
            start = end
        if length == 0:
            outputs.append(x)
            losses.append(x.new_zeros(batch, 0))
        new_state = None
        if keep_state:
            shapes = [self._shapes(level) for level in range(self.num_levels)]
            new_state = CMSState(
                [level.materialize(batch, shapes[index]) for index, level in enumerate(parameters)],
                [None if level is None else level.materialize(batch, shapes[index])
                 for index, level in enumerate(sums)], position + length, pending_input)
        return CMSOutput(torch.cat(outputs, 1), torch.cat(losses, 1), new_state, pending_loss)


# --------------------------------------------------------------------------------------------
# Slow, obviously correct reference: one token at a time, float64
# --------------------------------------------------------------------------------------------


def reference_continuum_memory(cms: ContinuumMemory, x: torch.Tensor, targets: torch.Tensor,
                               loss_fn: LossFn) -> tuple[torch.Tensor, torch.Tensor,
                                                         list[LevelParameters], CMSRecord]:
    """Token-by-token loop of A-eq 71–72 in float64 (the twin every fast path is tested against).

    For t = 0..T−1: output and loss of token t at the current parameters; every level with
    η ≠ 0 adds ∇loss_t (taken alone) to its chunk sum; a level whose chunk closes at count t+1
    applies −η·sum; a level whose context ends at t+1 is reset to its initial parameters.

    Args: a module, x (B, T, d), targets (B, T, ...), a per-token loss.
    Returns: outputs (B, T, d), losses (B, T), final per-level parameters (B, *shape) and a
    :class:`CMSRecord` with the deltas.
    """
    model = copy.deepcopy(cms).double()
    x = x.detach().double()
    targets = targets.detach().double() if targets.is_floating_point() else targets.detach()
    batch, length, _ = x.shape
    initial = [{k: v.detach().clone() for k, v in model.initial_parameters(level, batch).items()}
               for level in range(model.num_levels)]
    parameters = [dict(level) for level in initial]
    sums = [{k: torch.zeros_like(v) for k, v in level.items()} for level in initial]
    record = CMSRecord(model.num_levels, keep_deltas=True)
    outputs, losses = [], []
    for t in range(length):
        leaves = [{k: v.clone().requires_grad_(True) for k, v in level.items()}
                  for level in parameters]
        output = model.apply_parameters(leaves, x[:, t:t + 1])
        loss = loss_fn(output, targets[:, t:t + 1])
        flat = [value for level in leaves for value in level.values()]
        gradients = torch.autograd.grad(loss.sum(), flat, allow_unused=True)
        outputs.append(output.detach())
        losses.append(loss.detach())
        index = 0
        for level in range(model.num_levels):
            for name in leaves[level]:
                gradient = gradients[index]
                index += 1
                if gradient is not None:
                    sums[level][name] = sums[level][name] + gradient
        for level in range(model.num_levels):
            rate = model.learning_rates[level]
            if rate == 0.0:
                continue
            if (t + 1) % model.chunk_sizes[level] == 0:
                delta = {k: -rate * v for k, v in sums[level].items()}
                parameters[level] = {k: v + delta[k] for k, v in parameters[level].items()}
                sums[level] = {k: torch.zeros_like(v) for k, v in sums[level].items()}
                record.log_update(level, t + 1, delta)
            period = model.reset_every[level]
            if period is not None and (t + 1) % period == 0:
                parameters[level] = dict(initial[level])
                sums[level] = {k: torch.zeros_like(v) for k, v in sums[level].items()}
                record.log_reset(level, t + 1)
    return torch.cat(outputs, 1), torch.cat(losses, 1), parameters, record


# --------------------------------------------------------------------------------------------
# Multi-rate training: the outer optimizer steps level ℓ every C_ℓ steps
# --------------------------------------------------------------------------------------------


class MultiRateOptimizer:
    """Wraps a torch optimizer whose ``param_groups[ℓ]`` hold level ℓ (A-eq 71 across training
    steps): every ``step()`` adds the current gradients to level ℓ's buffer; at steps that are
    multiples of C_ℓ the buffer's SUM is handed to the wrapped optimizer for that group only
    (other groups get ``grad = None`` for that call, so torch optimizers skip them, weight decay
    included) and the buffer is cleared. With ``torch.optim.SGD(lr=η_ℓ)`` per group this is
    exactly θ ← θ − η_ℓ Σ g. Their original ``.grad`` is restored afterwards.

    This is the reading for levels whose chunk is longer than a training sequence; it does not
    replace the in-context updates of the fast levels (§8 item 5 of the reference notes).

    ``record`` (a :class:`CMSRecord`) logs, per level, the step counts and the update norm.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, chunk_sizes: Sequence[int]) -> None:
        _check_chunk_sizes(chunk_sizes)
        if len(optimizer.param_groups) != len(chunk_sizes):
            raise ValueError(f"chunk_sizes must have one entry per param group "
                             f"({len(optimizer.param_groups)}), got {len(chunk_sizes)}")
        self.optimizer = optimizer
        self.chunk_sizes = tuple(chunk_sizes)
        self.step_count = 0
        self.buffers: dict[torch.Tensor, torch.Tensor] = {}
        self.record = CMSRecord(len(chunk_sizes))

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self) -> list[int]:
        """One outer step; returns the levels that were updated at this step."""
        self.step_count += 1
        due = [level for level, size in enumerate(self.chunk_sizes) if self.step_count % size == 0]
        saved: dict[torch.Tensor, torch.Tensor | None] = {}
        before: dict[torch.Tensor, torch.Tensor] = {}
        for level, group in enumerate(self.optimizer.param_groups):
            for parameter in group["params"]:
                saved[parameter] = parameter.grad
                if parameter.grad is not None:
                    buffer = self.buffers.get(parameter)
                    self.buffers[parameter] = parameter.grad.detach().clone() if buffer is None \
                        else buffer + parameter.grad
                if level in due:
                    parameter.grad = self.buffers.pop(parameter, None)
                    before[parameter] = parameter.detach().clone()
                else:
                    parameter.grad = None
        self.optimizer.step()
        for level in due:
            params = self.optimizer.param_groups[level]["params"]
            delta = {str(i): (p.detach() - before[p]).reshape(1, -1) for i, p in enumerate(params)}
            self.record.log_update(level, self.step_count, delta)
        for parameter, gradient in saved.items():
            parameter.grad = gradient
        return due
