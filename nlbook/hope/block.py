"""The HOPE block (arXiv A-eq 94–97): causal convolution → self-modifying Titans → CMS,
with the choices the paper leaves open stated in :mod:`nlbook.hope`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    check_bool,
    check_callable,
    check_dtype_float,
    check_finite,
    check_instance,
    check_int,
    check_int_sequence,
    check_memory,
    check_positive_int,
    check_scalar_in_range,
    check_shape,
    check_torch_generator,
    describe,
    entry_point,
)
from nlbook.cms import CMSRecord, CMSState, ContinuumMemory
from nlbook.hope.mixers import (
    AttentionState,
    GatedDeltaRule,
    GatedLinearAttention,
    LinearAttentionState,
    SlidingWindowAttention,
)
from nlbook.selfmod import SelfModifyingState, SelfModifyingTitans

#: What can read the context in a block: the paper's self-modifying Titans (HOPE), softmax
#: attention (Hope-Attention, arXiv §8.3), linear attention (chapter 7's ablation) or the gated
#: delta rule (the recall baseline of chapter 5).
MIXERS = ("titans", "attention", "linear_attention", "delta")


#: How the convolution's taps start: ``"random"`` (uniform in ±1/√w, PyTorch's Conv1d default)
#: or ``"identity"`` (a_{w−1} = 1, other taps 0).
CONV_INITS = ("random", "identity")


class CausalDepthwiseConv(nn.Module):
    """y_t = Σ_{j=0}^{w−1} a_j ⊙ x_{t−w+1+j}: a causal depth-wise 1-D convolution (window w).

    Shapes: x (B, T, d) → y (B, T, d). ``buffer`` (B, w−1, d) holds the last w−1 inputs of the
    previous call (zeros at the start of a stream), so streaming is exact.

    ``init="random"`` (default) draws every tap uniformly in ±1/√w, so each channel starts
    with some of the previous tokens in it: the memory behind it can then bind a token to the
    one before it (a key to its value) from the first step. ``init="identity"`` (a_{w−1} = 1,
    other taps 0) starts as if there were no convolution: the taps that would carry the
    previous token start at 0 and must grow before any memory can bind. Measured on MQAR
    (chapter 5, RESULTS.md): the gated delta rule in this block with the identity start stayed
    at chance for 1,000 steps (cosine schedule); HOPE with only this start undone binds, but
    later than with the random start.
    """

    def __init__(self, dim: int, window: int = 4, *, init: str = "random",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_positive_int("dim", dim)
        check_positive_int("window", window)
        if init not in CONV_INITS:
            raise ValueError(f"init must be one of {CONV_INITS}, got {init!r}")
        check_torch_generator("generator", generator, allow_none=True)
        check_memory("dim and window", dim * window, what="the weights")
        self.dim, self.window = dim, window
        if init == "random":
            bound = window ** -0.5
            weight = (2 * torch.rand(dim, window, generator=generator) - 1) * bound
        else:
            weight = torch.zeros(dim, window)
            weight[:, -1] = 1.0
        self.weight = nn.Parameter(weight)

    def initial_buffer(self, x: torch.Tensor) -> torch.Tensor:
        check_shape("x", x, (None, None, self.dim), "(B, T, d)")
        return x.new_zeros(x.shape[0], self.window - 1, self.dim)

    @entry_point
    def forward(self, x: torch.Tensor, buffer: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, d) → (y (B, T, d), new buffer (B, w−1, d))."""
        check_shape("x", x, (None, None, self.dim), "(B, T, d)")
        check_dtype_float("x", x)
        if x.dtype != self.weight.dtype or x.device != self.weight.device:
            raise ValueError(f"x must have the weights' dtype {self.weight.dtype} and device "
                             f"{self.weight.device} (convert the module with .to()), got "
                             f"{x.dtype} on {x.device}")
        check_finite("x", x)
        if buffer is None:
            buffer = self.initial_buffer(x)
        else:
            check_shape("buffer", buffer, (x.shape[0], self.window - 1, self.dim),
                        "(B, w-1, d) with B of x and w the window")
            if buffer.dtype != x.dtype or buffer.device != x.device:
                raise ValueError(f"buffer must have the dtype and device of x ({x.dtype}, "
                                 f"{x.device}), got {buffer.dtype} on {buffer.device}")
            check_finite("buffer", buffer)
        if x.shape[1] == 0:  # nothing to convolve: the buffer carries over unchanged
            return x, buffer
        padded = torch.cat([buffer, x], dim=1)                               # (B, w−1+T, d)
        y = F.conv1d(padded.transpose(1, 2), self.weight.unsqueeze(1), groups=self.dim)
        return y.transpose(1, 2), padded[:, padded.shape[1] - (self.window - 1):]


# --------------------------------------------------------------------------------------------
# The HOPE block


@dataclass
class HopeBlockState:
    """What one block carries between calls: the convolution buffer (B, w−1, d), the
    self-modifying Titans state and the CMS state (with its pending position)."""

    conv: torch.Tensor
    titans: SelfModifyingState | AttentionState | LinearAttentionState
    cms: CMSState

    def detach(self) -> HopeBlockState:
        return HopeBlockState(self.conv.detach(), self.titans.detach(), self.cms.detach())


@dataclass
class HopeBlockOutput:
    """Result of :meth:`HopeBlock.forward`: output (B, T, d), the new state, the CMS's per-token
    in-context losses (B, T) (NaN where no target was known) and, with ``return_trace``, the
    self-modifying Titans trace (see :meth:`nlbook.selfmod.SelfModifyingTitans.forward`)."""

    output: torch.Tensor
    state: HopeBlockState
    cms_losses: torch.Tensor
    titans_trace: dict | None = None


class HopeBlock(nn.Module):
    """One HOPE block (arXiv A-eq 94–97): conv → self-modifying Titans → CMS (see module doc).

    Args:
        d_model: width d.
        heads: heads H of the self-modifying Titans. head_dim: d_h (default d / H).
        memory_hidden: hidden width of the Titans' MLP memories (default d_h / 2: speed).
        chunk_size_memory, chunk_size_others: the Titans' two chunk sizes (A §8.2).
        cms_chunk_sizes, cms_learning_rates: C_j and η_j per CMS block, in chain order
            (block 0 reads the Titans' output; η = 0: the block changes only through the outer
            optimizer). The CMS's levels sort the blocks by frequency, level 1 the fastest
            (``block.cms.level_of_block``): with the defaults block 1 (every 32 tokens) is
            level 1 and block 0 (η = 0) level 2.
        cms_hidden_dim: hidden width of every CMS MLP (default 2 d).
        conv_window: window of the causal depth-wise convolution (0 or 1: none).
        conv_init: how its taps start, ``"random"`` or ``"identity"`` (see
            :class:`CausalDepthwiseConv`: with the identity nothing in the block learns to
            bind a key to its value on MQAR).
        first_order: first-order in-context CMS updates (see the module docstring).
        mixer: what reads the context: ``"titans"`` (self-modifying Titans, HOPE),
            ``"attention"`` (sliding-window softmax attention over ``attention_window``
            tokens: the paper's Hope-Attention) or ``"linear_attention"`` (gated linear
            attention); the state field keeps the name ``titans`` for every mixer.
        dgd, self_modifying, write_rule: self-modifying Titans' ablation switches
            (``write_rule="gd"``: the plain gradient step on the same L2 objective, η bounded,
            the paper's "w/o DGD"; ``dgd=False`` = ``write_rule="hebbian"``: the gradient step
            on the dot-product objective, no erase; ``self_modifying=False``: fixed linear k, v,
            η, α projections and the value as the memory's target, i.e. plain Titans).
        shared_generator_input, memory_first_std: how self-modifying Titans starts (see
            :class:`nlbook.selfmod.SelfModifyingTitans`): M_v reads x_k instead of its own
            input; the std of the main memory's fixed first layer (None: d^-0.5).
        generator: torch.Generator for the initialisation.

    Call: ``out = block(x, targets, loss_fn=..., state=..., pending_target=...)`` with the
    CMS's conventions (nlbook.cms): targets (B, T) or (B, T−1) (the last one then pending),
    ``loss_fn(outputs (B, n, d), targets (B, n)) -> (B, n)``; without targets the CMS runs
    frozen at the state's parameters.
    """

    def __init__(self, d_model: int, heads: int, *, head_dim: int | None = None,
                 memory_hidden: int | None = None, chunk_size_memory: int = 64,
                 chunk_size_others: int = 32, cms_chunk_sizes: Sequence[int] = (256, 32),
                 cms_learning_rates: Sequence[float] = (0.0, 1e-2),
                 cms_hidden_dim: int | None = None, conv_window: int = 4,
                 conv_init: str = "random", first_order: bool = True, mixer: str = "titans",
                 attention_window: int = 64, dgd: bool = True, self_modifying: bool = True,
                 write_rule: str | None = None,
                 shared_generator_input: bool = False, memory_first_std: float | None = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        # Checked here with their public names (the parts would call them hidden, window, ...).
        check_positive_int("d_model", d_model)
        check_positive_int("heads", heads)
        check_positive_int("head_dim", head_dim, allow_none=True)
        check_positive_int("memory_hidden", memory_hidden, allow_none=True)
        check_positive_int("chunk_size_memory", chunk_size_memory)
        check_positive_int("chunk_size_others", chunk_size_others)
        cms_chunk_sizes = check_int_sequence("cms_chunk_sizes", cms_chunk_sizes, low=1)
        if isinstance(cms_learning_rates, (str, bytes)) or not isinstance(
                cms_learning_rates, (list, tuple)):
            raise ValueError(f"cms_learning_rates must be a list or tuple of numbers >= 0, got "
                             f"{describe(cms_learning_rates)}")
        if len(cms_learning_rates) != len(cms_chunk_sizes):
            raise ValueError(f"cms_learning_rates must have one entry per CMS level "
                             f"({len(cms_chunk_sizes)} in cms_chunk_sizes), got "
                             f"{len(cms_learning_rates)}")
        for index, rate in enumerate(cms_learning_rates):
            check_scalar_in_range(f"cms_learning_rates[{index}]", rate, 0.0, math.inf)
        check_positive_int("cms_hidden_dim", cms_hidden_dim, allow_none=True)
        check_int("conv_window", conv_window, low=0)
        check_bool("first_order", first_order)
        check_torch_generator("generator", generator, allow_none=True)
        if head_dim is None and d_model % heads:
            raise ValueError(f"heads must divide d_model = {d_model} when head_dim is not "
                             f"given, got heads = {heads}")
        width = d_model // heads if head_dim is None else head_dim
        hidden = max(1, width // 2) if memory_hidden is None else memory_hidden
        cms_width = 2 * d_model if cms_hidden_dim is None else cms_hidden_dim
        check_memory("d_model, heads, head_dim, memory_hidden, cms_hidden_dim and conv_window",
                     3 * d_model * heads * width + heads * width * (6 * hidden + 2)
                     + len(cms_chunk_sizes) * (2 * d_model + 1) * (cms_width + 1)
                     + d_model * (conv_window + 1), what="the parameters")
        self.d_model = d_model
        self.norm = nn.LayerNorm(d_model, bias=False)
        if conv_init not in CONV_INITS:
            raise ValueError(f"conv_init must be one of {CONV_INITS}, got {conv_init!r}")
        self.conv = (CausalDepthwiseConv(d_model, conv_window, init=conv_init,
                                         generator=generator) if conv_window > 1 else None)
        if head_dim is None and d_model % heads == 0:
            head_dim = d_model // heads
        if memory_hidden is None and head_dim is not None:
            memory_hidden = max(1, head_dim // 2)
        if mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {MIXERS}, got {mixer!r}")
        self.mixer_name = mixer
        if mixer == "titans":
            self.titans = SelfModifyingTitans(d_model, heads, head_dim, memory_hidden,
                                              chunk_size_memory=chunk_size_memory,
                                              chunk_size_others=chunk_size_others,
                                              dgd=dgd, self_modifying=self_modifying,
                                              write_rule=write_rule,
                                              shared_generator_input=shared_generator_input,
                                              memory_first_std=memory_first_std,
                                              generator=generator)
        elif mixer == "attention":
            self.attention = SlidingWindowAttention(d_model, heads, head_dim,
                                                    window=attention_window, generator=generator)
        elif mixer == "linear_attention":
            self.linear_attention = GatedLinearAttention(d_model, heads, head_dim,
                                                         chunk_size=chunk_size_memory,
                                                         generator=generator)
        else:
            self.delta = GatedDeltaRule(d_model, heads, head_dim, chunk_size=chunk_size_memory,
                                        generator=generator)
        self.cms = ContinuumMemory(d_model, list(cms_chunk_sizes), list(cms_learning_rates),
                                   hidden_dim=(2 * d_model if cms_hidden_dim is None
                                               else cms_hidden_dim),
                                   variant="sequential", residual=True, pre_norm=True,
                                   generator=generator, first_order=first_order)

    @property
    def mixer(self) -> nn.Module:
        """The module that reads the context (see ``mixer`` in the class docstring)."""
        return getattr(self, self.mixer_name)

    def initial_state(self, x: torch.Tensor) -> HopeBlockState:
        """The state at the start of a stream, for input x (B, T, d) (its batch, dtype)."""
        self._check_input(x)
        batch = x.shape[0]
        conv = (self.conv.initial_buffer(x) if self.conv is not None
                else x.new_zeros(batch, 0, self.d_model))
        return HopeBlockState(conv, self.mixer.initial_state(batch),
                              self.cms.initial_state(batch))

    def _check_input(self, x) -> None:
        check_shape("x", x, (None, None, self.d_model), "(B, T, d_model)")
        check_dtype_float("x", x)
        reference = self.norm.weight
        if x.dtype != reference.dtype or x.device != reference.device:
            raise ValueError(f"x must have the block's dtype {reference.dtype} and device "
                             f"{reference.device} (convert the block with .to(), e.g. "
                             f".double()), got {x.dtype} on {x.device}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must hold at least one sequence and one token (B, T >= 1), "
                             f"got shape {tuple(x.shape)}")

    def _check_state(self, state, x: torch.Tensor) -> None:
        check_instance("state", state, HopeBlockState,
                       expected="a HopeBlockState (returned by this block) or None")
        window = 0 if self.conv is None else self.conv.window - 1
        if not isinstance(state.conv, torch.Tensor) or tuple(state.conv.shape) != (
                x.shape[0], window, self.d_model):
            raise ValueError(f"state.conv must have shape (B, w-1, d) = "
                             f"{(x.shape[0], window, self.d_model)} with B of x, got "
                             f"{describe(state.conv)}")

    @entry_point
    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, *,
                loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                state: HopeBlockState | None = None, pending_target: torch.Tensor | None = None,
                record: CMSRecord | None = None, return_trace: bool = False,
                dropout: float = 0.0, keep_state: bool = True) -> HopeBlockOutput:
        """x (B, T, d) → :class:`HopeBlockOutput` (output (B, T, d), new state, CMS losses).

        ``keep_state=False`` (a training step): work that only the returned state would carry
        on is skipped, and the state is ``None``; the output is unchanged."""
        self._check_input(x)
        check_finite("x", x)
        check_callable("loss_fn", loss_fn, allow_none=True)
        check_bool("return_trace", return_trace)
        check_bool("keep_state", keep_state)
        check_scalar_in_range("dropout", dropout, 0.0, 1.0, high_inclusive=False)
        if state is not None:
            self._check_state(state, x)
        fresh = state is None
        if state is None:
            state = self.initial_state(x)
        hidden = self.norm(x)
        conv_buffer = state.conv
        if self.conv is not None:
            hidden, conv_buffer = self.conv(hidden, state.conv)
        trace = None
        if return_trace:
            memory_out, titans_state, trace = self.mixer(hidden, state.titans,
                                                         return_trace=True)
        else:
            memory_out, titans_state = self.mixer(hidden, state.titans, keep_state=keep_state)
        x = x + F.dropout(memory_out, dropout, self.training)
        # A fresh stream passes no CMS state: the CMS then starts from its shared parameters
        # without expanding them over the batch (cheaper, same values).
        cms_out = self.cms(x, targets, loss_fn=loss_fn, state=None if fresh else state.cms,
                           pending_target=pending_target, record=record,
                           keep_state=keep_state)
        new_state = (HopeBlockState(conv_buffer, titans_state, cms_out.state) if keep_state
                     else None)
        return HopeBlockOutput(cms_out.output, new_state, cms_out.losses, trace)
