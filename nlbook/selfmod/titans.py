"""Self-modifying Titans (arXiv §8.1–8.2, A-eq 83–93): the memory that generates its own
keys, values, learning rates and retention, and writes every memory by DGD."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    check_bool,
    check_choice,
    check_dtype_float,
    check_finite,
    check_instance,
    check_memory,
    check_positive_int,
    check_same_dtype_device,
    check_scalar_in_range,
    check_shape,
    check_torch_generator,
    entry_point,
)
from nlbook.selfmod.chunk_kernel import _anchored_chunk, gated_delta_chunk, gated_hebbian_chunk
from nlbook.selfmod.dgd import silu_derivative

#: How a memory of self-modifying Titans writes (every layer it writes, with retention α):
#: ``"dgd"`` the DGD step (A-eq 57/88, η′ = η/(1 + η‖x‖²), η = softplus: HOPE);
#: ``"gd"`` the plain gradient step on the same L2 objective, W ← αW − η (W x − u) xᵀ, with
#: η = sigmoid in (0, 1) (the paper's "w/o DGD" row of Table 6: it still erases, with step η);
#: ``"hebbian"`` the plain gradient step on the dot-product objective, W ← αW + η u xᵀ, η =
#: softplus unbounded (no erase: ``dgd=False``, a stability note of chapter 7).
WRITE_RULES = ("dgd", "gd", "hebbian")


@dataclass
class SelfModifyingState:
    """The full fast state of :class:`SelfModifyingTitans`, carried across calls.

    Generator bank (memories k, v, η, α) and main memory, each as a *snapshot* (the state at
    the last chunk boundary: it produces keys, values, targets and gradients) and a *running*
    state (after the last processed token). ``position`` counts the tokens seen, so a call may
    start in the middle of a chunk: streaming is exact for every split.

    Shapes (B batch, H heads, d head dim, h memory hidden width):
        generator_first(_snapshot): (B, H, d, 2h + 2) = [S1 of M_k | S1 of M_v | w_η | w_α]
        generator_second(_snapshot): (B, H, 2, h, d) = [S2 of M_k, S2 of M_v]
        memory_first(_snapshot): (B, H, d, h); memory_second(_snapshot): (B, H, h, d)
    """

    generator_first_snapshot: torch.Tensor
    generator_first: torch.Tensor
    generator_second_snapshot: torch.Tensor
    generator_second: torch.Tensor
    memory_first_snapshot: torch.Tensor
    memory_first: torch.Tensor
    memory_second_snapshot: torch.Tensor
    memory_second: torch.Tensor
    position: int = 0

    def detach(self) -> SelfModifyingState:
        """A copy cut from the autograd graph (truncated backprop between calls)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return SelfModifyingState(**{name: value.detach() if torch.is_tensor(value) else value
                                     for name, value in values.items()})


def _memory_apply(z: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Residual MLP memory M(z) = z + silu(z S1) S2 (A-eq 89, row convention)."""
    return z + F.silu(z @ first) @ second


class SelfModifyingTitans(nn.Module):
    """Self-modifying Titans (arXiv §8.1–8.2, final rule A-eq 86–89, chunked A-eq 90–93).

    Per head (width d), with fixed projections x_t = W_x x, q_t = normalize(W_q x):

        k_t = normalize(M_k(x_t)),  v_t = M_v(x_t),
        η_t = softplus(M_η(x_t) + b_η),  α_t = sigmoid(M_α(x_t) + b_α)
        v̂_□ = M_□(v_t)    for □ ∈ {k, v, η, α, memory}          (self-generated targets)
        the written layer W of every memory (output layer of an MLP memory, input x = silu(k S1);
        the linear M_η, M_α, input x = k), with target u (v̂ − k, resp. v̂):
            W ← W_0 + (W − W_0)(α_t I − η′ x xᵀ) + η′ (u − W_0 x) xᵀ,  η′ = η_t/(1 + η_t‖x‖²)
        (A-eq 57/88: the DGD step; retention α acts on the in-context change W − W_0)
        o_t = M_memory,t(q_t);   y = W_o [o_t over heads]

    M_k, M_v, M_memory are residual MLPs z + silu(z S1) S2 (d → h → d); M_η and M_α are linear
    (d → 1). Inside a chunk (``chunk_size_others`` for k, v, η, α; ``chunk_size_memory`` for
    the main memory) every key, value, target and gradient comes from the state that ended the
    previous chunk; the linear erase recurrence is then solved exactly (:func:`gated_delta_chunk`).
    With both chunk sizes 1 this is the token-by-token rule. See the module docstring for every
    choice left open by the paper.

    Args:
        d_model: model width. heads: number of heads H. head_dim: d (default d_model // H).
        hidden: h, the hidden width of the MLP memories (default d).
        chunk_size_memory, chunk_size_others: the two chunk sizes (A §8.2).
        shared_generator_input: M_k and M_v both read x_k = W_x x (the literal A-eq 86, one
            input for every memory). Default False: M_v reads its own x_v = W_v x. With one
            input and the residual memories M(z) = z + …, keys and values start nearly equal
            (cosine 0.93 at initialisation) and the written target v̂ − k nearly vanishes, so
            the memory has nothing to bind (measured on MQAR, chapter 5).
        memory_first_std: std of the main memory's fixed first layer S1 (default 1.0: unit-
            variance pre-activations at unit keys; None: the fan-in scale d^-0.5, with which
            ‖silu(k S1)‖² ≈ 0.19 and a DGD write with η = 1 stores a sixth of its target).
        write_rule: how every memory writes, one of :data:`WRITE_RULES` (default "dgd";
            ``dgd=False`` is "hebbian", kept for the earlier ablation switch).
        generator: torch.Generator for the initialisation.

    Call: ``y, state = layer(x, state=None)`` with x (B, T, d_model), any T ≥ 1; pass the
    returned state to the next call to continue the sequence (exact for any split).
    """

    def __init__(self, d_model: int, heads: int = 1, head_dim: int | None = None,
                 hidden: int | None = None, *, chunk_size_memory: int = 32,
                 chunk_size_others: int = 8, retain_toward_initial: bool = True,
                 write_first_layer: bool = False, dgd: bool = True,
                 self_modifying: bool = True, shared_generator_input: bool = False,
                 memory_first_std: float | None = 1.0, write_rule: str | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("heads", heads)
        check_positive_int("head_dim", head_dim, allow_none=True)
        check_positive_int("hidden", hidden, allow_none=True)
        check_positive_int("chunk_size_memory", chunk_size_memory)
        check_positive_int("chunk_size_others", chunk_size_others)
        check_bool("retain_toward_initial", retain_toward_initial)
        check_bool("write_first_layer", write_first_layer)
        check_bool("shared_generator_input", shared_generator_input)
        if memory_first_std is not None:
            check_scalar_in_range("memory_first_std", memory_first_std, 0.0, math.inf,
                                  low_inclusive=False)
        check_torch_generator("generator", generator, allow_none=True)
        if head_dim is None:
            if d_model % heads:
                raise ValueError(f"heads must divide d_model = {d_model} when head_dim is not "
                                 f"given, got heads = {heads}")
            head_dim = d_model // heads
        hidden = head_dim if hidden is None else hidden
        check_memory("d_model, heads, head_dim and hidden",
                     3 * d_model * heads * head_dim + heads * head_dim * (6 * hidden + 2),
                     what="the parameters")
        self.d_model, self.heads, self.head_dim, self.hidden = d_model, heads, head_dim, hidden
        self.chunk_size_memory, self.chunk_size_others = chunk_size_memory, chunk_size_others
        for name, flag in (("retain_toward_initial", retain_toward_initial),
                           ("write_first_layer", write_first_layer), ("dgd", dgd),
                           ("self_modifying", self_modifying)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be a bool, got {flag!r}")
        if write_rule is None:
            write_rule = "dgd" if dgd else "hebbian"
        check_choice("write_rule", write_rule, WRITE_RULES)
        if not dgd and write_rule != "hebbian":
            raise ValueError(f"dgd=False is write_rule='hebbian'; got write_rule={write_rule!r} "
                             f"with it (give only write_rule)")
        dgd = write_rule == "dgd"
        if write_first_layer and not self_modifying:
            raise ValueError("write_first_layer=True needs self_modifying=True (without "
                             "self-modification there are no generator memories to write)")
        if write_first_layer and write_rule != "dgd":
            # A first layer is written towards a local target pre − ∂L/∂pre, whose DGD step is
            # a gradient step; without DGD's erase that target would add W x xᵀ back in.
            raise ValueError(f"write_rule={write_rule!r} (dgd=False) needs "
                             f"write_first_layer=False (the ablations change the written "
                             f"second layers only)")
        self.retain_toward_initial = retain_toward_initial
        self.write_first_layer = write_first_layer
        self.dgd, self.self_modifying = dgd, self_modifying
        self.write_rule = write_rule
        # DGD and the plain gradient step on the L2 objective erase along the input; the gated
        # Hebbian write (the step on the dot-product objective) does not.
        self._erase = write_rule != "hebbian"
        self.shared_generator_input = shared_generator_input

        def randn(*shape: int, std: float) -> torch.Tensor:
            return torch.randn(*shape, generator=generator) * std

        d, h, width = head_dim, hidden, heads * head_dim
        self.input_projection = nn.Parameter(randn(d_model, width, std=d_model ** -0.5))
        self.query_projection = nn.Parameter(randn(d_model, width, std=d_model ** -0.5))
        self.output_projection = nn.Parameter(randn(width, d_model, std=width ** -0.5))
        # Meta-learned initial states of the memories (per head), row convention S = Wᵀ.
        if self_modifying:
            self.key_memory_first = nn.Parameter(randn(heads, d, h, std=d ** -0.5))
            self.key_memory_second = nn.Parameter(randn(heads, h, d, std=0.5 * h ** -0.5))
            self.value_memory_first = nn.Parameter(randn(heads, d, h, std=d ** -0.5))
            self.value_memory_second = nn.Parameter(randn(heads, h, d, std=0.5 * h ** -0.5))
        if not (self_modifying and shared_generator_input):
            # The value's own input x_v = W_v x: M_v(x_v) (self-modifying) or, in plain
            # Titans, v = normalize(W_v x) (k = normalize(W_x x), η, α linear in W_x x).
            self.value_projection = nn.Parameter(randn(d_model, width, std=d_model ** -0.5))
        self.lr_memory = nn.Parameter(randn(heads, d, 1, std=0.1 * d ** -0.5))
        self.retention_memory = nn.Parameter(randn(heads, d, 1, std=0.1 * d ** -0.5))
        # The main memory's fixed first layer: std 1 gives unit-variance pre-activations at the
        # unit keys it is written and read with (d^-0.5, the usual fan-in scale, makes
        # silu(k S1) so small that a DGD write stores a sixth of its target).
        self.main_memory_first = nn.Parameter(randn(
            heads, d, h, std=d ** -0.5 if memory_first_std is None else memory_first_std))
        self.main_memory_second = nn.Parameter(randn(heads, h, d, std=0.5 * h ** -0.5))
        # η ≈ 1 for DGD (softplus); for the bounded plain step η = sigmoid(·) ≈ 0.1, so that a
        # step on an unnormalised hidden input (‖silu(k S1)‖² ≈ 6 at h = 16) starts stable.
        start = math.log(math.e - 1) if write_rule != "gd" else math.log(0.1 / 0.9)
        self.lr_bias = nn.Parameter(torch.full((heads, 1, 1), start))
        self.retention_bias = nn.Parameter(torch.full((heads, 1, 1), 3.0))          # α ≈ 0.95

    # ---- state -------------------------------------------------------------------------------
    def initial_state(self, batch: int) -> SelfModifyingState:
        """The meta-learned initial state, expanded to ``batch`` sequences (differentiable)."""
        check_positive_int("batch", batch)

        def expand(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.unsqueeze(0).expand(batch, *tensor.shape)

        if self.self_modifying:
            first = expand(torch.cat([self.key_memory_first, self.value_memory_first,
                                      self.lr_memory, self.retention_memory], dim=-1))
            second = expand(torch.stack([self.key_memory_second, self.value_memory_second],
                                        dim=1))
        else:  # fixed linear maps: nothing of the generator bank is written in context
            first = expand(torch.cat([self.lr_memory, self.retention_memory], dim=-1))
            second = self.lr_memory.new_zeros(batch, self.heads, 2, 0, self.head_dim)
        memory_first = expand(self.main_memory_first)
        memory_second = expand(self.main_memory_second)
        return SelfModifyingState(first, first, second, second, memory_first, memory_first,
                                  memory_second, memory_second, 0)

    # ---- pieces ------------------------------------------------------------------------------
    #: +1 writes by gradient descent on each memory's inner objective; −1 (set only by
    #: :func:`nlbook.hope.ascending_writes`, an evaluation switch) by gradient *ascent*.
    write_sign: float = 1.0

    def _step(self, lr: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
        """The step of a write: DGD's η′ = η/(1 + η‖x‖²) (A-eq 57), or the plain gradient
        step's η (``write_rule`` "gd" or "hebbian"); negated under
        :func:`nlbook.hope.ascending_writes`."""
        step = lr / (1 + lr * input_norm) if self.write_rule == "dgd" else lr
        return step if self.write_sign > 0 else -step

    def _learning_rate(self, pre: torch.Tensor) -> torch.Tensor:
        """η_t from the learning-rate memory's output (without its bias): softplus for DGD
        and the Hebbian write (unbounded), sigmoid in (0, 1) for the plain gradient step on
        the L2 objective ("gd": the bound keeps 1 − η‖x‖² from flipping sign at unit keys)."""
        if self.write_rule == "gd":
            return torch.sigmoid(pre + self.lr_bias[..., 0])
        return F.softplus(pre + self.lr_bias[..., 0])

    def _generate(self, x: torch.Tensor, first: torch.Tensor, second: torch.Tensor):
        """k, v, η, α for a chunk of generator inputs x (B, H, 2, C, d) = [x_k; x_v] from a
        generator snapshot (η and α read x_k)."""
        h = self.hidden
        pre = x @ first.unsqueeze(2)                                          # (B,H,2,C,2h+2)
        hidden = F.silu(torch.stack([pre[:, :, 0, :, :h], pre[:, :, 1, :, h:2 * h]], dim=2))
        key_value = x + hidden @ second                                       # (B, H, 2, C, d)
        keys = F.normalize(key_value[:, :, 0], dim=-1)
        lr = self._learning_rate(pre[:, :, 0, :, 2 * h])                      # (B, H, C)
        log_alpha = F.logsigmoid(pre[:, :, 0, :, 2 * h + 1] + self.retention_bias[..., 0])
        return keys, F.normalize(key_value[:, :, 1], dim=-1), lr, log_alpha

    def _generator_chunk(self, x, first_snapshot, second_snapshot, first, second, anchors):
        """Generate k, v, η, α for one chunk and write it into the generator bank, every layer
        included (``write_first_layer=True``; default path: :meth:`_generator_fixed_first`)."""
        h = self.hidden
        keys, values, lr, log_alpha = self._generate(x, first_snapshot, second_snapshot)
        # Self-generated targets v̂ = M(v) and pre-activations at the key, both at the snapshot.
        pre_value = values @ first_snapshot                                   # (B, H, C, 2h+2)
        pre_key = keys @ first_snapshot
        hidden_value = F.silu(torch.stack([pre_value[..., :h], pre_value[..., h:2 * h]], 2))
        targets = values.unsqueeze(2) + hidden_value @ second_snapshot        # (B, H, 2, C, d)
        pre_key_mlp = torch.stack([pre_key[..., :h], pre_key[..., h:2 * h]], 2)  # (B,H,2,C,h)
        hidden_key = F.silu(pre_key_mlp)
        # Local targets (see the class docstring): second layer v̂ − k, first layer
        # a − ∂L/∂a with L = ½‖M(k) − v̂‖², a = k S1, ∂L/∂a = (e S2ᵀ) ⊙ silu′(a), e = M(k) − v̂.
        keys_mlp = keys.unsqueeze(2)
        error = keys_mlp + hidden_key @ second_snapshot - targets             # (B, H, 2, C, d)
        first_targets = pre_key_mlp - (error @ second_snapshot.transpose(-1, -2)) * (
            silu_derivative(pre_key_mlp))
        first_values = torch.cat([first_targets[:, :, 0], first_targets[:, :, 1],
                                  pre_value[..., 2 * h:]], dim=-1)            # (B, H, C, 2h+2)
        key_norm = (keys * keys).sum(-1)
        first, _ = _anchored_chunk(first, anchors[0], keys, first_values,
                                   self._step(lr, key_norm), log_alpha, erase=self._erase)
        hidden_norm = (hidden_key * hidden_key).sum(-1)                      # (B, H, 2, C)
        lr2 = lr.unsqueeze(2)
        second, _ = _anchored_chunk(second, anchors[1], hidden_key, targets - keys_mlp,
                                    self._step(lr2, hidden_norm), log_alpha.unsqueeze(2),
                                    erase=self._erase)
        return (keys, values, lr, log_alpha), first, second

    def _memory_chunk(self, keys, values, queries, lr, log_alpha, first_snapshot,
                      second_snapshot, first, second, anchors):
        """Write one chunk into the main memory, both layers, and read it with the queries
        (``write_first_layer=True``; the default path is :meth:`_memory_fixed_first`)."""
        targets = _memory_apply(values, first_snapshot, second_snapshot)     # v̂ = M(v)
        pre_key = keys @ first_snapshot
        hidden_key = F.silu(pre_key)
        error = keys + hidden_key @ second_snapshot - targets                 # e = M(k) − v̂
        first_targets = pre_key - (error @ second_snapshot.transpose(-1, -2)) * (
            silu_derivative(pre_key))
        key_norm = (keys * keys).sum(-1)
        first, pre_query = _anchored_chunk(first, anchors[0], keys, first_targets,
                                           self._step(lr, key_norm), log_alpha, queries,
                                           erase=self._erase)
        hidden_norm = (hidden_key * hidden_key).sum(-1)
        second, read = _anchored_chunk(second, anchors[1], hidden_key, targets - keys,
                                       self._step(lr, hidden_norm), log_alpha,
                                       F.silu(pre_query), erase=self._erase)
        return queries + read, first, second

    # ---- the two loops: first layers written (general) or fixed (default, faster) ------------
    def _generator_written(self, inputs, state, anchors, return_trace):
        """The generator loop when every layer is written (chunk by chunk, from the state)."""
        first_snap, first = state.generator_first_snapshot, state.generator_first
        second_snap, second = state.generator_second_snapshot, state.generator_second
        generated, trace_states = [], []
        for start, end in self._boundaries(state.position, inputs.shape[3],
                                           self.chunk_size_others):
            out, first, second = self._generator_chunk(inputs[:, :, :, start:end], first_snap,
                                                       second_snap, first, second, anchors)
            generated.append(out)
            if (state.position + end) % self.chunk_size_others == 0:
                first_snap, second_snap = first, second
            if return_trace:
                trace_states.append((state.position + end, self._named_states(first, second)))
        keys, values, lr, log_alpha = (torch.cat(parts, dim=2)
                                       for parts in zip(*generated, strict=True))
        return (keys, values, lr, log_alpha, first_snap, first, second_snap, second,
                trace_states)

    def _memory_written(self, keys, values, queries, lr, log_alpha, state, anchors):
        """The main-memory loop when its first layer is written too."""
        first_snap, first = state.memory_first_snapshot, state.memory_first
        second_snap, second = state.memory_second_snapshot, state.memory_second
        reads = []
        for start, end in self._boundaries(state.position, keys.shape[2],
                                           self.chunk_size_memory):
            span = slice(start, end)
            read, first, second = self._memory_chunk(
                keys[:, :, span], values[:, :, span], queries[:, :, span], lr[:, :, span],
                log_alpha[:, :, span], first_snap, second_snap, first, second, anchors)
            reads.append(read)
            if (state.position + end) % self.chunk_size_memory == 0:
                first_snap, second_snap = first, second
        return torch.cat(reads, dim=2), first_snap, first, second_snap, second

    def _generator_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed input maps (d_model, H·d) of M_k and M_v: W_x and W_v (their own inputs),
        or W_x twice with ``shared_generator_input``."""
        if self.shared_generator_input:
            return self.input_projection, self.input_projection
        return self.input_projection, self.value_projection

    def _folded_first_layers(self) -> torch.Tensor:
        """W_x S1 for M_k and W_v S1 for M_v, (d_model, H·2·h): x_t S1 = x (W S1), per head."""
        fixed_first = torch.stack([self.key_memory_first, self.value_memory_first], dim=1)
        key_input, value_input = self._generator_inputs()
        maps = torch.stack([key_input.view(self.d_model, self.heads, self.head_dim),
                            value_input.view(self.d_model, self.heads, self.head_dim)], dim=2)
        folded = torch.einsum("mhgd,hgdk->mhgk", maps, fixed_first)
        return folded.reshape(self.d_model, -1)

    def _generator_fixed_first(self, pre_hidden, inputs, state, anchors, return_trace,
                               keep_state=True):
        """The generator loop when the MLP memories' first layers are never written.

        Those layers then equal their meta-learned initial values for the whole stream, so
        their work leaves the sequential loop: silu(x_t S1) for M_k and M_v is one matmul over
        all tokens (x_t = W_x x folded into one weight), and only the written parts (the
        second layers, and the linear M_η, M_α) are carried chunk by chunk. Same rule as
        :meth:`_generator_chunk` (tested against the float64 token reference).
        """
        batch, length, _ = pre_hidden.shape
        heads, h = self.heads, self.hidden
        # pre_hidden = [x W_x S1 | x W_v S1] (B, T, H·2·h), from the fused projection in
        # forward; inputs = [x_k; x_v] (B, H, 2, T, d).
        hidden_inputs = F.silu(pre_hidden).view(batch, length, heads, 2, h).permute(0, 2, 3, 1, 4)
        fixed_first = torch.stack([self.key_memory_first, self.value_memory_first], dim=1)
        scalar_anchor = None if anchors[0] is None else anchors[0][..., 2 * h:]
        scalar_snap = state.generator_first_snapshot[..., 2 * h:]             # (B, H, d, 2)
        scalar = state.generator_first[..., 2 * h:]
        second_snap, second = state.generator_second_snapshot, state.generator_second
        generated, trace_states = [], []
        spans = self._boundaries(state.position, length, self.chunk_size_others)
        sizes = [end - start for start, end in spans]
        # split, not slices: the backward of a split is one cat, not a zero-filled (B, H, T, ·)
        # tensor per chunk.
        chunks = zip(spans, inputs.split(sizes, dim=3), hidden_inputs.split(sizes, dim=3),
                     strict=True)
        for (_, end), x_chunk, hidden_chunk in chunks:
            size = x_chunk.shape[3]
            # [k; v] = normalize(x + silu(x S1) S2) for M_k and M_v together: (B, H, 2, C, d).
            key_value = F.normalize(x_chunk + hidden_chunk @ second_snap, dim=-1)
            keys, values = key_value.unbind(2)                                # (B, H, C, d)
            scalars = x_chunk[:, :, 0] @ scalar_snap                          # (B, H, C, 2)
            lr = self._learning_rate(scalars[..., 0])
            log_alpha = F.logsigmoid(scalars[..., 1] + self.retention_bias[..., 0])
            generated.append((keys, values, lr, log_alpha))
            if end == length and not keep_state:
                break  # the last writes would only reach the discarded state
            # Hidden activations of M_k and M_v at the keys and at the values, one matmul.
            # Per-head weights broadcast over the batch: a batched product without the permuted
            # copies that einsum makes here.
            hidden = F.silu(key_value.flatten(2, 3).unsqueeze(2)              # [k; v] (B,H,2C,d)
                            @ fixed_first.unsqueeze(0))                       # (B, H, 2, 2C, h)
            hidden_key, hidden_value = hidden[..., :size, :], hidden[..., size:, :]
            targets = values.unsqueeze(2) + hidden_value @ second_snap        # v̂ = M(v)
            key_norm = (keys * keys).sum(-1)
            scalar, _ = _anchored_chunk(scalar, scalar_anchor, keys, values @ scalar_snap,
                                        self._step(lr, key_norm), log_alpha, erase=self._erase)
            hidden_norm = (hidden_key * hidden_key).sum(-1)                   # (B, H, 2, C)
            lr2 = lr.unsqueeze(2)
            second, _ = _anchored_chunk(second, anchors[1], hidden_key,
                                        targets - keys.unsqueeze(2),
                                        self._step(lr2, hidden_norm), log_alpha.unsqueeze(2),
                                    erase=self._erase)
            if (state.position + end) % self.chunk_size_others == 0:
                scalar_snap, second_snap = scalar, second
            if return_trace:
                trace_states.append((state.position + end, self._named_states(
                    self._with_fixed_first(scalar), second)))
        keys, values, lr, log_alpha = (torch.cat(parts, dim=2)
                                       for parts in zip(*generated, strict=True))
        return (keys, values, lr, log_alpha, self._with_fixed_first(scalar_snap),
                self._with_fixed_first(scalar), second_snap, second, trace_states)

    def _fixed_projections(self, value_inputs, inputs, state, return_trace):
        """Without self-modification (plain Titans): k = normalize(W_x x), v = normalize(W_v x),
        η = softplus(W_x x · w_η + b_η), α = sigmoid(W_x x · w_α + b_α), all fixed linear maps
        of the input (the meta-learned ``lr_memory`` and ``retention_memory`` are never written).
        The generator state passes through unchanged."""
        batch, length, _ = value_inputs.shape
        values = F.normalize(value_inputs.view(batch, length, self.heads, self.head_dim)
                             .transpose(1, 2), dim=-1)
        keys = F.normalize(inputs, dim=-1)
        scalars = inputs @ torch.cat([self.lr_memory, self.retention_memory], dim=-1)
        lr = self._learning_rate(scalars[..., 0])
        log_alpha = F.logsigmoid(scalars[..., 1] + self.retention_bias[..., 0])
        trace_states = ([(state.position + length, {})] if return_trace else [])
        return (keys, values, lr, log_alpha, state.generator_first_snapshot,
                state.generator_first, state.generator_second_snapshot,
                state.generator_second, trace_states)

    def _with_fixed_first(self, scalar: torch.Tensor) -> torch.Tensor:
        """[S1 of M_k | S1 of M_v | w_η | w_α] (B, H, d, 2h+2) from the written w (B, H, d, 2)."""
        fixed = torch.cat([self.key_memory_first, self.value_memory_first], dim=-1)
        return torch.cat([fixed.expand(scalar.shape[0], *fixed.shape), scalar], dim=-1)

    def _memory_fixed_first(self, keys, values, queries, lr, log_alpha, state, anchors):
        """The main-memory loop when its first layer is never written: silu(z S1) for keys,
        values and queries is one matmul over the whole call, and so is everything that does
        not depend on the carried state; only the second layer is carried chunk by chunk
        (rule of :meth:`_memory_chunk`, tested against the float64 token reference).

        The loop carries the in-context change Δ = S2 − A (A the fixed anchor, see
        :func:`_anchored_chunk`), so that the anchor's products are taken once per call:
        target v̂ − k − hₖA = v − k + (h_v − hₖ)A + h_v Δ_snap, read q + h_q A + (kernel's read).
        """
        # Per-head products with the fixed first layer (the meta-learned one: never written),
        # its weights broadcast over the batch (no permuted copies, unlike einsum here).
        length = keys.shape[2]
        hidden_key, hidden_value, hidden_query = F.silu(
            torch.cat([keys, values, queries], dim=2) @ self.main_memory_first.unsqueeze(0)
        ).split(length, dim=2)                                                # (B, H, T, h) each
        beta = self._step(lr, (hidden_key * hidden_key).sum(-1))              # η′ (B, H, T)
        # The target of the written layer: v̂ − k − hₖA (self-generated v̂ = M(v)), or, without
        # self-modification, the value itself: v − k − hₖA (plain Titans).
        base, reads_base = values - keys, queries
        anchor = anchors[1]
        change_snap, change = state.memory_second_snapshot, state.memory_second
        if anchor is not None:
            key_anchor, value_anchor, query_anchor = (
                torch.cat([hidden_key, hidden_value, hidden_query], dim=2)
                @ self.main_memory_second.unsqueeze(0)).split(length, dim=2)  # (B, H, T, d)
            base = base + ((value_anchor - key_anchor) if self.self_modifying else -key_anchor)
            reads_base = reads_base + query_anchor
            change_snap, change = change_snap - anchor, change - anchor
        # split, not slices: the backward of a split is one cat, not a zero-filled (B, H, T, ·)
        # tensor per chunk and per input.
        sizes = [end - start for start, end in self._boundaries(state.position, length,
                                                                self.chunk_size_memory)]
        chunks = zip(*(tensor.split(sizes, dim=2) for tensor in
                       (hidden_key, hidden_value, hidden_query, base, beta, log_alpha)),
                     strict=True)
        reads, position = [], state.position
        kernel = gated_delta_chunk if self._erase else gated_hebbian_chunk
        for chunk_key, chunk_value, chunk_query, chunk_base, chunk_beta, chunk_log_alpha in chunks:
            targets = (chunk_value @ change_snap + chunk_base if self.self_modifying
                       else chunk_base)
            change, read = kernel(change, chunk_key, targets, chunk_beta, chunk_log_alpha,
                                  chunk_query)
            reads.append(read)
            position += chunk_key.shape[2]
            if position % self.chunk_size_memory == 0:
                change_snap = change
        if anchor is not None:
            change_snap, change = change_snap + anchor, change + anchor
        return (reads_base + torch.cat(reads, dim=2), state.memory_first_snapshot,
                state.memory_first, change_snap, change)

    @staticmethod
    def _boundaries(position: int, length: int, chunk: int) -> list[tuple[int, int]]:
        """Chunk spans [start, end) of this call, aligned to global multiples of ``chunk``."""
        spans, start = [], 0
        while start < length:
            end = min(length, start + chunk - (position + start) % chunk)
            spans.append((start, end))
            start = end
        return spans

    # ---- forward -----------------------------------------------------------------------------
    @entry_point
    def forward(self, x: torch.Tensor, state: SelfModifyingState | None = None, *,
                return_trace: bool = False, keep_state: bool = True):
        """x (B, T, d_model) → (y (B, T, d_model), state[, trace]).

        ``keep_state=False`` (a training step that discards the state): the generator's
        writes after the last chunk of the call, which only the state would carry on, are
        skipped, and the returned state is ``None``. The output is unchanged.

        ``trace`` (for plots) holds per-token ``lr`` η_t and ``retention`` α_t (B, H, T), and
        ``states``: a list of (tokens seen, {memory name: (B, H, ...) state}) after every
        generator chunk.
        """
        check_shape("x", x, (None, None, self.d_model), "(B, T, d_model)")
        check_dtype_float("x", x)
        check_same_dtype_device("input_projection", self.input_projection, x=x)
        check_finite("x", x)
        check_bool("return_trace", return_trace)
        check_bool("keep_state", keep_state)
        batch, length, _ = x.shape
        if length == 0 or batch == 0:
            raise ValueError(f"x must hold at least one sequence and one token (B, T >= 1), got "
                             f"shape {tuple(x.shape)}")
        if state is None:
            state = self.initial_state(batch)
        else:
            self._check_state(state, batch)
        heads, d = self.heads, self.head_dim
        if self.retain_toward_initial:
            anchor = self.initial_state(batch)
            generator_anchors = (anchor.generator_first, anchor.generator_second)
            memory_anchors = (anchor.memory_first, anchor.memory_second)
        else:
            generator_anchors = memory_anchors = (None, None)
        # One matmul for every projection of x: W_x, W_q, W_v (unless M_v shares x_k) and
        # (fixed first layers) W_x S1, W_v S1.
        width = heads * d
        weights = [self.input_projection, self.query_projection]
        own_value_input = not (self.self_modifying and self.shared_generator_input)
        if own_value_input:
            weights.append(self.value_projection)
        if self.self_modifying and not self.write_first_layer:
            weights.append(self._folded_first_layers())
        projected = x @ torch.cat(weights, dim=1)
        # split, not slices: its backward is one cat, not a zero-filled tensor per slice.
        sizes = [width] * (3 if own_value_input else 2)
        projected = projected.split([*sizes, projected.shape[-1] - sum(sizes)], dim=-1)

        def heads_of(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(batch, length, heads, d).transpose(1, 2)

        inputs = heads_of(projected[0])
        queries = F.normalize(heads_of(projected[1]), dim=-1)

        # 1) The generator bank does not read the main memory: run it over the whole call.
        if not self.self_modifying:
            generated = self._fixed_projections(projected[2], inputs, state, return_trace)
        else:
            # [x_k; x_v] (B, H, 2, T, d): M_k reads x_k = W_x x, M_v its own x_v = W_v x.
            value_inputs = heads_of(projected[2]) if own_value_input else inputs
            generator_inputs = torch.stack([inputs, value_inputs], dim=2)
            if self.write_first_layer:
                generated = self._generator_written(generator_inputs, state,
                                                    generator_anchors, return_trace)
            else:
                generated = self._generator_fixed_first(projected[-1], generator_inputs,
                                                        state, generator_anchors,
                                                        return_trace,
                                                        keep_state or return_trace)
        (keys, values, lr, log_alpha, first_snap, first, second_snap, second,
         trace_states) = generated
        # 2) The main memory, with its own (usually longer) chunks.
        run_memory = (self._memory_written if self.write_first_layer
                      else self._memory_fixed_first)
        reads, mem_first_snap, mem_first, mem_second_snap, mem_second = run_memory(
            keys, values, queries, lr, log_alpha, state, memory_anchors)
        output = reads.transpose(1, 2).reshape(batch, length, heads * d)
        y = output @ self.output_projection
        new_state = SelfModifyingState(first_snap, first, second_snap, second, mem_first_snap,
                                       mem_first, mem_second_snap, mem_second,
                                       state.position + length)
        if not return_trace:
            return y, (new_state if keep_state else None)
        trace = {"lr": lr, "retention": log_alpha.exp(), "keys": keys, "values": values,
                 "states": trace_states,
                 "memory": self._named_states(new_state.generator_first,
                                              new_state.generator_second)
                 | {"memory_first": mem_first, "memory_second": mem_second}}
        return y, new_state, trace

    def _check_state(self, state: SelfModifyingState, batch: int) -> None:
        """A carried state of this layer (its shapes, dtype, device) for ``batch`` sequences
        (not while torch.compile traces: the training forward passes the layer's own)."""
        if torch.compiler.is_compiling():
            return
        check_instance("state", state, SelfModifyingState,
                       expected="a SelfModifyingState (returned by this layer) or None")
        batch_of_state = getattr(state.generator_first, "shape", (None,))[0]
        if batch_of_state != batch:
            raise ValueError(f"state must be for batch {batch} (of x), got a state for batch "
                             f"{batch_of_state}")
        heads, d, h = self.heads, self.head_dim, self.hidden
        written = h if self.self_modifying else 0  # plain Titans: only w_η, w_α are carried
        shapes = {"generator_first": (batch, heads, d, 2 * written + 2),
                  "generator_second": (batch, heads, 2, written, d),
                  "memory_first": (batch, heads, d, h), "memory_second": (batch, heads, h, d)}
        for name, shape in shapes.items():
            for suffix in ("", "_snapshot"):
                value = getattr(state, name + suffix)
                if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                    raise ValueError(f"state.{name + suffix} must have shape {shape} (this layer, "
                                     f"batch {batch}), got "
                                     f"{getattr(value, 'shape', type(value).__name__)}")
                check_same_dtype_device("input_projection", self.input_projection,
                                        **{f"state.{name + suffix}": value})
        if isinstance(state.position, bool) or not isinstance(state.position, int) \
                or state.position < 0:
            raise ValueError(f"state.position must be an int >= 0, got {state.position!r}")

    def _named_states(self, first: torch.Tensor, second: torch.Tensor) -> dict:
        if not self.self_modifying:  # fixed maps: only the (never written) scalar weights
            return {"lr": first[..., 0], "retention": first[..., 1]}
        h = self.hidden
        return {"key_first": first[..., :h], "key_second": second[:, :, 0],
                "value_first": first[..., h:2 * h], "value_second": second[:, :, 1],
                "lr": first[..., 2 * h], "retention": first[..., 2 * h + 1]}
