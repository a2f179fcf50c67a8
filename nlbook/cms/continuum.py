"""The in-context Continuum Memory System (arXiv A-eq 70–74): ContinuumMemory."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import check_dtype_float, check_ndim, check_positive_int
from nlbook.cms.fast_weights import _affine, _LevelTensors
from nlbook.cms.inner_gradient import (
    BranchTape,
    check_per_token_losses,
    layer_output_gradients,
    loss_and_output_gradient,
)
from nlbook.cms.state import (
    _ACTIVATIONS,
    VARIANTS,
    CMSOutput,
    CMSRecord,
    CMSState,
    LevelParameters,
    LossFn,
    _check_chunk_sizes,
    nested_reset_periods,
)


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
                capture: BranchTape | None) -> torch.Tensor:
        """:meth:`branch` at possibly factored parameters; ``capture`` keeps the branch input
        and, per affine layer, (weight name, bias name, layer input, layer output) for the
        inner gradients (:mod:`nlbook.cms.inner_gradient`)."""
        if capture is not None:
            capture.branch_input = inputs
        hidden = F.layer_norm(inputs, inputs.shape[-1:]) if self.pre_norm else inputs
        if self.linear:
            return self._layer(level, "weight", "bias", hidden, capture)
        hidden = self._layer(level, "w_in", "b_in", hidden, capture)
        hidden = _ACTIVATIONS[self.activation](hidden)
        return self._layer(level, "w_out", "b_out", hidden, capture)

    @staticmethod
    def _layer(level: _LevelTensors, weight: str, bias: str, inputs: torch.Tensor,
               capture: BranchTape | None) -> torch.Tensor:
        output = _affine(inputs, level.dense[weight], level.dense[bias])
        if weight in level.low_rank:
            left, right = level.low_rank[weight]
            output = output + (inputs @ right.transpose(1, 2)) @ left    # x (W + Gᵀ X)ᵀ
        if capture is not None:
            capture.layers.append((weight, bias, inputs, output))
        return output

    def apply_parameters(self, parameters: Sequence[LevelParameters],
                         inputs: torch.Tensor) -> torch.Tensor:
        """The CMS output (A-eq 70 / 74) with fixed per-level parameters, no update:
        (B, n, d) -> (B, n, d). ``state.parameters`` can be passed to evaluate a stream's
        current memory on held-out inputs."""
        return self._run_levels([_LevelTensors(dict(level)) for level in parameters], inputs)

    def _run_levels(self, levels: Sequence[_LevelTensors], inputs: torch.Tensor,
               captures: dict[int, BranchTape] | None = None) -> torch.Tensor:
        """:meth:`apply_parameters` at possibly factored parameters (``captures``: per level
        index a :class:`BranchTape` for :meth:`_branch`)."""
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
        (g_t = ∂L/∂z_t, written out by hand in :mod:`nlbook.cms.inner_gradient`): the weight's
        sum is Σ_t g_t x_tᵀ, kept as the factors (G, X), and the bias's is Σ_t g_t (see
        :class:`_LevelTensors`). The updates stay differentiable w.r.t. the initial parameters
        and the inputs (second order) when the caller records a graph and ``first_order`` is
        off. ``inner_gradients=False``: outputs and losses only.
        """
        batch, length, _ = inputs.shape
        if loss_fn is None or targets is None or targets.shape[1] == 0:
            outputs = self._run_levels(levels, inputs)
            nan = torch.full((batch, length), math.nan, dtype=inputs.dtype, device=inputs.device)
            return outputs, nan
        active = self._active_levels() if inner_gradients else []
        second_order = need_graph and not self.first_order
        # The inner gradient passes through every level from the first active one on (a
        # chain) or only through the active ones (independent branches): tape those.
        taped = (active if self.variant == "independent" or not active
                 else range(min(active), self.num_levels))
        captures = {level: BranchTape() for level in taped}
        outputs = self._run_levels(levels, inputs, captures)
        known = targets.shape[1]
        if not active:
            losses = check_per_token_losses(loss_fn(outputs[:, :known], targets), batch, known)
        else:
            losses, output_gradient = loss_and_output_gradient(
                loss_fn, outputs[:, :known], targets, create_graph=second_order)
            # Backpropagated through the levels by hand, so that torch.compile keeps one
            # graph. First order: the gradients are constants, computed without a graph.
            with torch.set_grad_enabled(second_order):
                if not second_order:
                    output_gradient = output_gradient.detach()
                gradients = layer_output_gradients(self, levels, captures, output_gradient,
                                                   active)
        for level in active:
            dense, low_rank = {}, {}
            # Positions past ``known`` have no loss: G has rows for the first ``known`` only.
            for (weight, bias, layer_input, _), gradient in zip(
                    captures[level].layers, gradients[level], strict=True):
                layer_input = layer_input[:, :known]
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
