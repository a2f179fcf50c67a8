"""The in-context Continuum Memory System (arXiv A-eq 70–74): ContinuumMemory."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    ArgumentTypeError,
    check_bool,
    check_callable,
    check_dtype_float,
    check_finite,
    check_instance,
    check_memory,
    check_ndim,
    check_positive_int,
    check_scalar_in_range,
    check_torch_generator,
    data_checks_enabled,
    describe,
    entry_point,
)
from nlbook.cms.fast_weights import _affine, _BlockTensors
from nlbook.cms.inner_gradient import (
    BranchTape,
    check_per_token_losses,
    layer_output_gradients,
    loss_and_output_gradient,
)
from nlbook.cms.state import (
    _ACTIVATIONS,
    VARIANTS,
    BlockParameters,
    CMSOutput,
    CMSRecord,
    CMSState,
    LossFn,
    _check_chunk_sizes,
    nested_reset_periods,
)
from nlbook.levels import Component, assign_levels, level_label


def _rename_old_block_keys(state_dict, prefix, local_metadata, strict, missing_keys,
                            unexpected_keys, error_msgs) -> None:
    """Load a state dict saved when the blocks were called ``levels``."""
    old = prefix + "levels."
    for key in [key for key in state_dict if key.startswith(old)]:
        state_dict[prefix + "blocks." + key[len(old):]] = state_dict.pop(key)


class ContinuumMemory(nn.Module):
    """In-context Continuum Memory System: (B, T, d) -> (B, T, d) with per-sequence fast blocks.

    Args:
        dim: model width d.
        chunk_sizes: C_j per block (positive ints), in chain order (block 0 sees the input).
        learning_rates: η_j ≥ 0 per block (arXiv A-eq 71: one rate per block, outside the sum).
        hidden_dim: MLP width (default 4·d); ignored when ``linear``.
        linear: each block is W x + b instead of an MLP (the linear-regression toys).
        variant: ``"sequential"``, ``"independent"`` or ``"nested"`` (see the module docstring).
        reset_every: per block a context length after which it is re-initialised to its
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

    The initial (meta) parameters are ``self.blocks[j][name]`` (nn.Parameters, trained by an
    outer optimizer through the in-context updates); the fast parameters live in the
    :class:`CMSState` and are (B, *shape) per block.

    Blocks and levels. ``blocks``, the per-block arguments, :class:`CMSState` and
    :class:`CMSRecord` follow the **chain order** (block 0 sees the input). A *level* is the
    paper's (Def. 2/3): blocks sorted by update frequency, level 1 the fastest
    (:attr:`level_of_block`, :meth:`blocks_of_level`, :meth:`block_labels`). Block j's
    frequency is 1/C_j updates per token, or 0 when η_j = 0 (only the outer optimizer changes
    it: the CMS's slowest level). Blocks of equal frequency share a level. The chain order need
    not follow the frequency: HOPE's CMS is (η = 0, then every 32 tokens), so its block 0 is
    level 2 and its block 1 level 1.
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
        num_blocks = len(chunk_sizes)
        if isinstance(learning_rates, (str, bytes)) or not isinstance(learning_rates, Sequence):
            raise ValueError(
                f"learning_rates must be a sequence of numbers, got {learning_rates!r}")
        if len(learning_rates) != num_blocks:
            raise ValueError(f"learning_rates must have one entry per block ({num_blocks}), "
                             f"got {len(learning_rates)}")
        for index, rate in enumerate(learning_rates):
            check_scalar_in_range(f"learning_rates[{index}]", rate, 0.0, math.inf)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        for name, flag in (("linear", linear), ("residual", residual), ("pre_norm", pre_norm),
                           ("first_order", first_order)):
            check_bool(name, flag)
        check_torch_generator("generator", generator, allow_none=True)
        if dtype is not None and (not isinstance(dtype, torch.dtype)
                                  or not dtype.is_floating_point or dtype.is_complex):
            raise ArgumentTypeError(f"dtype must be a floating-point torch.dtype or None, got "
                                    f"{describe(dtype)}")
        if reset_every is None:
            reset_every = (nested_reset_periods(chunk_sizes) if variant == "nested"
                           else [None] * num_blocks)
        if isinstance(reset_every, (str, bytes)) or not isinstance(reset_every, Sequence):
            raise ArgumentTypeError(f"reset_every must be a sequence of positive ints or None "
                                    f"(one per block), got {describe(reset_every)}")
        if len(reset_every) != num_blocks:
            raise ValueError(f"reset_every must have one entry per block ({num_blocks}), "
                             f"got {len(reset_every)}")
        for index, period in enumerate(reset_every):
            check_positive_int(f"reset_every[{index}]", period, allow_none=True)  # type: ignore[arg-type]
        hidden_dim = 4 * dim if hidden_dim is None else hidden_dim
        check_positive_int("hidden_dim", hidden_dim)
        check_scalar_in_range("init_scale", init_scale, 0.0, math.inf)
        check_memory("dim, hidden_dim and chunk_sizes",
                     num_blocks * (dim * (dim + 1) if linear else (2 * dim + 1) * (hidden_dim + 1)),
                     what="the parameters")

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

        blocks = []
        for _ in range(num_blocks):
            if linear:
                blocks.append(nn.ParameterDict({"weight": normal(dim, dim), "bias": zeros(dim)}))
            else:
                blocks.append(nn.ParameterDict({
                    "w_in": normal(hidden_dim, dim), "b_in": zeros(hidden_dim),
                    "w_out": normal(dim, hidden_dim), "b_out": zeros(dim)}))
        self.blocks = nn.ModuleList(blocks)
        self.aggregation = nn.Parameter(torch.ones(num_blocks, **factory)) \
            if variant == "independent" else None
        # Checkpoints written before the rename store the blocks under "levels.".
        self._register_load_state_dict_pre_hook(_rename_old_block_keys)

    @property
    def num_blocks(self) -> int:
        """K, the number of blocks in the chain."""
        return len(self.chunk_sizes)

    # ---- levels (arXiv Def. 2/3): the blocks sorted by update frequency ---------------------

    @property
    def update_frequencies(self) -> tuple[float, ...]:
        """Per block (chain order) its in-context updates per token: 1/C_j, or 0.0 when η_j = 0."""
        return tuple(1.0 / size if rate != 0.0 else 0.0
                     for size, rate in zip(self.chunk_sizes, self.learning_rates, strict=True))

    @property
    def level_of_block(self) -> tuple[int, ...]:
        """Per block (chain order) its level, 1 = the fastest (:func:`nlbook.levels.assign_levels`
        on the blocks' frequencies; blocks are independent at equal frequency)."""
        components = [Component(f"block {index}", frequency)
                      for index, frequency in enumerate(self.update_frequencies)]
        levels = assign_levels(components)
        return tuple(levels[component.name] for component in components)

    @property
    def num_levels(self) -> int:
        """The number of distinct levels (≤ :attr:`num_blocks`)."""
        return max(self.level_of_block)

    def blocks_of_level(self, level: int) -> tuple[int, ...]:
        """The blocks (chain indices) at ``level`` (1 = fastest)."""
        if isinstance(level, bool) or not isinstance(level, int) \
                or not 1 <= level <= self.num_levels:
            raise ValueError(f"level must be an int in [1, {self.num_levels}], got {level!r}")
        return tuple(index for index, own in enumerate(self.level_of_block) if own == level)

    def block_labels(self) -> list[str]:
        """Per block (chain order) the label that plots and widgets show, e.g.
        ``"level 1 (every 32 tokens)"`` (:func:`nlbook.levels.level_label`)."""
        return [level_label(level, size if rate != 0.0 else None)
                for level, size, rate in zip(self.level_of_block, self.chunk_sizes,
                                             self.learning_rates, strict=True)]

    @property
    def levels(self) -> nn.ModuleList:
        """Deprecated name of :attr:`blocks` (the chain, not the levels: see the class doc)."""
        warnings.warn("ContinuumMemory.levels is the chain of blocks and was renamed blocks; "
                      "a level is a frequency class (level_of_block, blocks_of_level)",
                      DeprecationWarning, stacklevel=2)
        return self.blocks

    # ---- the model: a chain of blocks evaluated at per-sequence parameters ----------------

    def _check_inputs(self, name: str, inputs) -> None:
        check_ndim(name, inputs, 3, "(B, n, d)")
        check_dtype_float(name, inputs)
        reference = next(iter(self.blocks[0].values()))
        if inputs.shape[-1] != self.dim:
            raise ValueError(f"{name} must have shape (B, n, d) with d = {self.dim}, got "
                             f"{tuple(inputs.shape)}")
        if inputs.dtype != reference.dtype or inputs.device != reference.device:
            raise ValueError(f"{name} must have the parameters' dtype {reference.dtype} and "
                             f"device {reference.device}, got {inputs.dtype} on {inputs.device}")
        check_finite(name, inputs)

    def _check_block_parameters(self, name: str, level: int, parameters, batch: int) -> None:
        """Block ``level``'s parameters: its names, each (B, *shape) or the shared (*shape)."""
        if not isinstance(parameters, dict) or set(parameters) != set(self.blocks[level]):
            raise ValueError(f"{name} must be a dict with the names {sorted(self.blocks[level])} "
                             f"of block {level}, got {describe(parameters)}"
                             + (f" with {sorted(parameters)}" if isinstance(parameters, dict)
                                else ""))
        for key, value in parameters.items():
            shape = tuple(self.blocks[level][key].shape)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) not in (
                    shape, (batch, *shape)):
                raise ValueError(f"{name}[{key!r}] must have shape (B, *shape) = "
                                 f"{(batch, *shape)} (B of the inputs), got {describe(value)}")

    def _check_parameter_list(self, name: str, parameters, batch: int) -> None:
        if isinstance(parameters, (str, bytes, dict)) or not isinstance(parameters, Sequence) \
                or len(parameters) != self.num_blocks:
            raise ValueError(f"{name} must be a list of {self.num_blocks} dicts (one per block), "
                             f"got {describe(parameters)}")
        for level, level_parameters in enumerate(parameters):
            self._check_block_parameters(f"{name}[{level}]", level, level_parameters, batch)

    @entry_point
    def branch(self, parameters: BlockParameters, inputs: torch.Tensor) -> torch.Tensor:
        """MLP of one block without the residual: (B, n, d) -> (B, n, d), parameters (B, ...)."""
        self._check_inputs("inputs", inputs)
        matches = [level for level in range(self.num_blocks)
                   if isinstance(parameters, dict) and set(parameters) == set(self.blocks[level])]
        self._check_block_parameters("parameters", matches[0] if matches else 0, parameters,
                                     inputs.shape[0])
        return self._branch(_BlockTensors(dict(parameters)), inputs, None)

    def _branch(self, block: _BlockTensors, inputs: torch.Tensor,
                capture: BranchTape | None) -> torch.Tensor:
        """:meth:`branch` at possibly factored parameters; ``capture`` keeps the branch input
        and, per affine layer, (weight name, bias name, layer input, layer output) for the
        inner gradients (:mod:`nlbook.cms.inner_gradient`)."""
        if capture is not None:
            capture.branch_input = inputs
        hidden = F.layer_norm(inputs, inputs.shape[-1:]) if self.pre_norm else inputs
        if self.linear:
            return self._layer(block, "weight", "bias", hidden, capture)
        hidden = self._layer(block, "w_in", "b_in", hidden, capture)
        hidden = _ACTIVATIONS[self.activation](hidden)
        return self._layer(block, "w_out", "b_out", hidden, capture)

    @staticmethod
    def _layer(block: _BlockTensors, weight: str, bias: str, inputs: torch.Tensor,
               capture: BranchTape | None) -> torch.Tensor:
        output = _affine(inputs, block.dense[weight], block.dense[bias])
        if weight in block.low_rank:
            left, right = block.low_rank[weight]
            output = output + (inputs @ right.transpose(1, 2)) @ left    # x (W + Gᵀ X)ᵀ
        if capture is not None:
            capture.layers.append((weight, bias, inputs, output))
        return output

    @entry_point
    def apply_parameters(self, parameters: Sequence[BlockParameters],
                         inputs: torch.Tensor) -> torch.Tensor:
        """The CMS output (A-eq 70 / 74) with fixed per-block parameters, no update:
        (B, n, d) -> (B, n, d). ``state.parameters`` can be passed to evaluate a stream's
        current memory on held-out inputs."""
        self._check_inputs("inputs", inputs)
        self._check_parameter_list("parameters", parameters, inputs.shape[0])
        return self._run_blocks([_BlockTensors(dict(level)) for level in parameters], inputs)

    def _run_blocks(self, blocks: Sequence[_BlockTensors], inputs: torch.Tensor,
               captures: dict[int, BranchTape] | None = None) -> torch.Tensor:
        """:meth:`apply_parameters` at possibly factored parameters (``captures``: per block
        index a :class:`BranchTape` for :meth:`_branch`)."""
        captures = captures or {}
        if self.variant == "independent":
            assert self.aggregation is not None
            total = inputs if self.residual else torch.zeros_like(inputs)
            for index, block in enumerate(blocks):
                total = total + self.aggregation[index] * self._branch(block, inputs,
                                                                       captures.get(index))
            return total
        hidden = inputs
        for index, block in enumerate(blocks):
            update = self._branch(block, hidden, captures.get(index))
            hidden = hidden + update if self.residual else update
        return hidden

    # ---- state ----------------------------------------------------------------------------

    def initial_parameters(self, block: int, batch: int) -> BlockParameters:
        """Block ``block``'s initial (meta) parameters seen as per-sequence (B, *shape) tensors
        (an expand: differentiable, and every update makes a separate tensor per sequence)."""
        if isinstance(block, bool) or not isinstance(block, int) \
                or not 0 <= block < self.num_blocks:
            raise ValueError(f"block must be an int in [0, {self.num_blocks}), got {block!r}")
        check_positive_int("batch", batch)
        return {name: value.unsqueeze(0).expand(batch, *value.shape)
                for name, value in self.blocks[block].items()}

    def initial_state(self, batch: int) -> CMSState:
        """The state at the start of a stream of ``batch`` sequences (position 0)."""
        check_positive_int("batch", batch)
        return CMSState([self.initial_parameters(block, batch) for block in range(self.num_blocks)],
                        [None] * self.num_blocks, 0, None)

    def _active_blocks(self) -> list[int]:
        return [block for block, rate in enumerate(self.learning_rates) if rate != 0.0]

    def _next_boundary(self, position: int) -> float:
        """Smallest token count > position at which some active block closes or resets."""
        best = math.inf
        for block in self._active_blocks():
            for period in (self.chunk_sizes[block], self.reset_every[block]):
                if period is not None:
                    best = min(best, (position // period + 1) * period)
        return best

    def _shapes(self, block: int) -> dict[str, torch.Size]:
        return {name: value.shape for name, value in self.blocks[block].items()}

    def _close(self, blocks: list[_BlockTensors], sums: list[_BlockTensors | None],
               count: int, record: CMSRecord | None, batch: int) -> None:
        """Apply every update whose chunk closes at token count ``count`` (A-eq 71), then the
        nested resets (A-eq 72). Mutates the two lists."""
        for block in self._active_blocks():
            if count % self.chunk_sizes[block] == 0 and sums[block] is not None:
                rate = self.learning_rates[block]
                blocks[block] = blocks[block].plus(sums[block], -rate)   # θ ← θ − η Σ ∇
                if record is not None:
                    record.log_update(block, count, {
                        name: -rate * value for name, value
                        in sums[block].materialize(batch, self._shapes(block)).items()})
                sums[block] = None
            period = self.reset_every[block]
            if period is not None and count % period == 0:
                blocks[block] = _BlockTensors(dict(self.blocks[block].items()))
                sums[block] = None
                if record is not None:
                    record.log_reset(block, count)

    def _segment(self, blocks: list[_BlockTensors], inputs: torch.Tensor,
                 targets: torch.Tensor | None, loss_fn: LossFn | None, need_graph: bool,
                 sums: list[_BlockTensors | None], inner_gradients: bool = True):
        """Outputs of a segment in which no block changes, the per-token losses of its first
        ``targets.shape[1]`` positions, and their gradient sums added into ``sums``.

        Σ_t ∇loss_t at shared parameters = ∇ Σ_t loss_t (every block is token-wise), and the
        loss of sequence b depends only on sequence b's parameters, so one backward pass gives
        every block's per-sequence chunk sum. It is taken at each affine layer's output
        (g_t = ∂L/∂z_t, written out by hand in :mod:`nlbook.cms.inner_gradient`): the weight's
        sum is Σ_t g_t x_tᵀ, kept as the factors (G, X), and the bias's is Σ_t g_t (see
        :class:`_BlockTensors`). The updates stay differentiable w.r.t. the initial parameters
        and the inputs (second order) when the caller records a graph and ``first_order`` is
        off. ``inner_gradients=False``: outputs and losses only.
        """
        batch, length, _ = inputs.shape
        if loss_fn is None or targets is None or targets.shape[1] == 0:
            outputs = self._run_blocks(blocks, inputs)
            nan = torch.full((batch, length), math.nan, dtype=inputs.dtype, device=inputs.device)
            return outputs, nan
        active = self._active_blocks() if inner_gradients else []
        second_order = need_graph and not self.first_order
        # The inner gradient passes through every block from the first active one on (a
        # chain) or only through the active ones (independent branches): tape those.
        taped = (active if self.variant == "independent" or not active
                 else range(min(active), self.num_blocks))
        captures = {block: BranchTape() for block in taped}
        outputs = self._run_blocks(blocks, inputs, captures)
        known = targets.shape[1]
        if not active:
            losses = check_per_token_losses(loss_fn(outputs[:, :known], targets), batch, known)
        else:
            losses, output_gradient = loss_and_output_gradient(
                loss_fn, outputs[:, :known], targets, create_graph=second_order)
            # Backpropagated through the blocks by hand, so that torch.compile keeps one
            # graph. First order: the gradients are constants, computed without a graph.
            with torch.set_grad_enabled(second_order):
                if not second_order:
                    output_gradient = output_gradient.detach()
                gradients = layer_output_gradients(self, blocks, captures, output_gradient,
                                                   active)
        for block in active:
            dense, low_rank = {}, {}
            # Positions past ``known`` have no loss: G has rows for the first ``known`` only.
            for (weight, bias, layer_input, _), gradient in zip(
                    captures[block].layers, gradients[block], strict=True):
                layer_input = layer_input[:, :known]
                if not second_order:
                    layer_input = layer_input.detach()
                low_rank[weight] = (gradient, layer_input)
                dense[bias] = gradient.sum(1)
            new = _BlockTensors(dense, low_rank)
            sums[block] = new if sums[block] is None else sums[block].plus(new)
        if known < length:
            nan = torch.full((batch, length - known), math.nan, dtype=losses.dtype,
                             device=losses.device)
            losses = torch.cat([losses, nan], dim=1)
        if not need_graph:
            outputs, losses = outputs.detach(), losses.detach()
        return outputs, losses

    def _check_state(self, state: CMSState, batch: int) -> None:
        check_instance("state", state, CMSState, expected="a CMSState (from this CMS) or None")
        try:
            first = next(iter(state.parameters[0].values()))
        except (TypeError, IndexError, AttributeError, StopIteration):
            first = None
        if first is not None and getattr(first, "ndim", 0) > next(
                iter(self.blocks[0].values())).ndim and first.shape[0] != batch:
            raise ValueError(f"state holds a different batch size ({first.shape[0]}) than x "
                             f"(B = {batch})")
        self._check_parameter_list("state.parameters", state.parameters, batch)
        sums = state.gradient_sums
        if not isinstance(sums, (list, tuple)) or len(sums) != self.num_blocks:
            raise ValueError(f"state.gradient_sums must hold one entry per block "
                             f"({self.num_blocks}), got {describe(sums)}")
        if isinstance(state.position, bool) or not isinstance(state.position, int) \
                or state.position < 0:
            raise ValueError(f"state.position must be an int >= 0, got {state.position!r}")

    # ---- forward ---------------------------------------------------------------------------

    @entry_point
    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *,
                loss_fn: LossFn | None = None, state: CMSState | None = None,
                pending_target: torch.Tensor | None = None,
                record: CMSRecord | None = None, keep_state: bool = True) -> CMSOutput:
        """Run the CMS over a chunk of stream with in-context updates (A-eq 70–72).

        Args:
            x: (B, T, d) inputs (for HOPE: the output of the self-modifying Titans memory).
            targets: (B, T, ...) target of every position, or (B, T−1, ...) when the last
                position's target is not known yet (it then stays pending in the state).
                ``None``: no update (the blocks run frozen at the state's parameters).
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

        Within a segment in which no block changes (between consecutive chunk boundaries of the
        blocks with η ≠ 0) all tokens are processed in parallel; only segments are sequential.
        Processing a stream in pieces with the carried state equals processing it at once, for
        any split.
        """
        check_ndim("x", x, 3, "(B, T, d)")
        check_dtype_float("x", x)
        batch, length, width = x.shape
        if width != self.dim:
            raise ValueError(
                f"x must have shape (B, T, d) with d = {self.dim}, got {tuple(x.shape)}")
        reference = self.blocks[0][next(iter(self.blocks[0].keys()))]
        if x.dtype != reference.dtype:
            raise ValueError(f"x must have the parameters' dtype {reference.dtype}, got {x.dtype}")
        check_finite("x", x)
        check_callable("loss_fn", loss_fn, allow_none=True)
        check_instance("record", record, CMSRecord, allow_none=True)
        if record is not None and len(record.blocks) != self.num_blocks:
            raise ValueError(f"record must have one entry per block ({self.num_blocks}), got "
                             f"{len(record.blocks)}")
        check_bool("keep_state", keep_state)
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
                                 f"B = {batch}, T = {length} of x, got {tuple(targets.shape)}")
            check_finite("targets", targets)
        if pending_target is not None and not isinstance(pending_target, torch.Tensor):
            raise ArgumentTypeError(f"pending_target must be a tensor (B, ...) or None, got "
                                    f"{describe(pending_target)}")
        if state is None:
            # The shared parameters themselves, not an expand over the batch (see _BlockTensors).
            state = CMSState([dict(level.items()) for level in self.blocks],
                             [None] * self.num_blocks, 0, None)
        else:
            self._check_state(state, batch)
        need_graph = torch.is_grad_enabled()
        parameters = [_BlockTensors(dict(block)) for block in state.parameters]
        sums = [None if block is None else _BlockTensors(dict(block))
                for block in state.gradient_sums]
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
            shapes = [self._shapes(block) for block in range(self.num_blocks)]
            new_state = CMSState(
                [block.materialize(batch, shapes[index]) for index, block in enumerate(parameters)],
                [None if block is None else block.materialize(batch, shapes[index])
                 for index, block in enumerate(sums)], position + length, pending_input)
        output, losses = torch.cat(outputs, 1), torch.cat(losses, 1)
        # The outermost call only (and never while compiling): inside HOPE a NaN reaches the
        # training loop, which stops with TrainingDivergedError naming the step.
        if data_checks_enabled():
            self._check_finite_result(output, losses[:, :known], pending_loss, position, length)
        return CMSOutput(output, losses, new_state, pending_loss)

    def _check_finite_result(self, output: torch.Tensor, losses: torch.Tensor,
                             pending_loss: torch.Tensor | None, position: int,
                             length: int) -> None:
        """A clear error, never a silent NaN: the in-context updates can diverge (inner learning
        rates too large for the inputs' scale) and ``loss_fn`` can return NaN."""
        bad_output = ~torch.isfinite(output).all(-1)                     # (B, T)
        bad_loss = ~torch.isfinite(losses)                               # (B, known)
        # A loss that is not finite where the output is: loss_fn's doing (the updates it
        # drives then carry the NaN into the outputs that follow).
        loss_fault = bool((bad_loss & ~bad_output[:, :bad_loss.shape[1]]).any()) or (
            pending_loss is not None and not bool(torch.isfinite(pending_loss).all()))
        if loss_fault:
            raise ValueError(
                f"loss_fn returned non-finite per-token losses (NaN or inf) in tokens "
                f"{position}..{position + length} of the stream for finite outputs: the "
                f"in-context updates would be NaN. Check loss_fn and the targets")
        if bool(bad_output.any()):
            raise ValueError(
                f"the in-context state became non-finite (NaN or inf) in tokens "
                f"{position}..{position + length} of the stream: the inner updates diverged. "
                f"Use smaller learning_rates (now {list(self.learning_rates)}) or inputs x of "
                f"a smaller scale (e.g. normalised)")
