"""The chunk kernel of self-modifying Titans: a gated delta rule with the paper's
(α I − β k kᵀ) erase, solved in parallel over a chunk, with a hand-written backward."""

from __future__ import annotations

import torch

from nlbook._checks import (
    check_finite,
    check_in_range,
    check_int,
    check_memory,
    check_positive_int,
    check_same_dtype_device,
    check_tensor,
    data_checks_enabled,
    entry_point,
)

# Longest stretch the kernel solves at once. A chunk is a unit of the *rule* (its keys and
# targets come from one snapshot); the recurrence inside it is linear, so it can be solved in
# consecutive blocks with the same result (tested). Its C×C work grows as C², and at C = 64 a
# block of 32 was 27% faster forward + backward (one thread; memory kernel, d_k 18, d_v 36).
KERNEL_BLOCK = 32


def block_sizes(length: int, block: int | None = None) -> list[int]:
    """Split ``length`` tokens into kernel blocks of at most ``block`` (default KERNEL_BLOCK)."""
    check_int("length", length, low=0)
    block = KERNEL_BLOCK if block is None else check_positive_int("block", block)
    check_memory("length", length // block, bytes_per_element=8, what="the list of blocks")
    return [block] * (length // block) + ([length % block] if length % block else [])


def _lower_mask(length: int, diagonal: int, like: torch.Tensor) -> torch.Tensor:
    """A (length, length) 0/1 mask of the lower triangle (``diagonal`` as in torch.tril)."""
    return torch.ones(length, length, dtype=like.dtype, device=like.device).tril(diagonal)


def _decay_matrix(log_gamma_previous: torch.Tensor, log_gamma: torch.Tensor) -> torch.Tensor:
    """D[t, i] = γ_{t−1} / γ_i for i < t, else 0: (..., C, C), computed in log space.

    General path: below the diagonal the exponent is ≤ 0; clamping it to ≤ 0 everywhere
    (before masking the upper triangle to 0) keeps exp from overflowing. Under torch.compile
    the general path is always taken: the choice reads tensor values (a graph break), and a
    compiled kernel fuses the C² exps anyway.
    """
    mask = _lower_mask(log_gamma.shape[-1], -1, log_gamma)
    if not torch.compiler.is_compiling() and bool((log_gamma[..., -1] > -60.0).all()):
        # γ_{t−1} · (1/γ_i) from two exps of length C instead of C² exps: safe while 1/γ
        # cannot overflow, i.e. the chunk's total decay stays above e^−60 (α ≈ 0.95 for 64
        # tokens gives e^−3.3).
        return (torch.exp(log_gamma_previous)[..., :, None] * torch.exp(-log_gamma)[..., None, :]
                ).mul_(mask)
    difference = log_gamma_previous[..., :, None] - log_gamma[..., None, :]
    return difference.clamp_(max=0).exp_().mul_(mask)


def _read_decay(decay: torch.Tensor, log_alpha: torch.Tensor) -> torch.Tensor:
    """E[t, i] = γ_t / γ_i for i ≤ t, else 0, from D: E = diag(α) D + I."""
    read_decay = decay * torch.exp(log_alpha)[..., :, None]
    read_decay.diagonal(dim1=-2, dim2=-1).add_(1.0)
    return read_decay


class _GatedDeltaChunk(torch.autograd.Function):
    """The chunk kernel with a hand-written backward (see :func:`gated_delta_chunk`).

    Autograd through the same forward records ~40 nodes per chunk; this backward is the
    derivative written out once (checked by gradcheck and against the token loop in
    tests/test_selfmod.py). Notation: γ_t = Π_{j≤t} α_j, D and E the decay matrices,
    M = diag(β)(K Kᵀ ⊙ D), W = (I + M)⁻¹ diag(β)(U − diag(γ_{t−1}) K S_0).
    """

    @staticmethod
    def forward(ctx, state, keys, values, beta, log_alpha, queries):
        log_gamma = torch.cumsum(log_alpha, dim=-1)                           # (..., C)
        log_gamma_previous = log_gamma - log_alpha                           # log γ_{t−1}
        decay = _decay_matrix(log_gamma_previous, log_gamma)                 # D (..., C, C)
        gram_decay = (keys @ keys.transpose(-1, -2)).mul_(decay)             # K Kᵀ ⊙ D
        system = beta[..., :, None] * gram_decay                             # M, strictly lower
        keys_state = keys @ state                                            # K S_0
        residual = values - torch.exp(log_gamma_previous)[..., None] * keys_state
        # (I + M) W = diag(β) residual; unitriangular: the zero diagonal of M is never read.
        new_values = torch.linalg.solve_triangular(system, beta[..., None] * residual,
                                                   upper=False, unitriangular=True)
        to_end = torch.exp(log_gamma[..., -1:] - log_gamma)                  # γ_C / γ_i
        keys_to_end = keys * to_end[..., None]
        total = torch.exp(log_gamma[..., -1])[..., None, None]               # γ_C
        final = total * state + keys_to_end.transpose(-1, -2) @ new_values
        reads = weighted_query_keys = read_decay = None
        if queries is not None:
            read_decay = _read_decay(decay, log_alpha)
            weighted_query_keys = (queries @ keys.transpose(-1, -2)).mul_(read_decay)  # Q Kᵀ ⊙ E
            reads = (torch.exp(log_gamma)[..., None] * (queries @ state)
                     + weighted_query_keys @ new_values)
        ctx.save_for_backward(state, keys, beta, log_alpha, queries, log_gamma, decay,
                              gram_decay, system, keys_state, residual, new_values, to_end,
                              weighted_query_keys, read_decay)
        return final, reads

    @staticmethod
    def backward(ctx, d_final, d_reads):
        (state, keys, beta, log_alpha, queries, log_gamma, decay, gram_decay, system,
         keys_state, residual, new_values, to_end, weighted_query_keys,
         read_decay) = ctx.saved_tensors
        total = torch.exp(log_gamma[..., -1])
        # Through S_C = γ_C S_0 + Kᵀ diag(γ_C/γ) W.
        d_state = total[..., None, None] * d_final
        d_new_values = (keys * to_end[..., None]) @ d_final
        d_keys = to_end[..., None] * (new_values @ d_final.transpose(-1, -2))
        flow_end = (d_new_values * new_values).sum(-1)                       # ∂/∂log(γ_C/γ_i)
        d_log_gamma = -flow_end
        d_log_total = total * (state * d_final).sum((-1, -2)) + flow_end.sum(-1)
        d_queries = None
        if queries is not None:
            # Through the reads O = diag(γ) Q S_0 + (Q Kᵀ ⊙ E) W.
            gamma = torch.exp(log_gamma)[..., None]
            scaled_d_reads = gamma * d_reads
            d_queries = scaled_d_reads @ state.transpose(-1, -2)
            d_state = d_state + queries.transpose(-1, -2) @ scaled_d_reads
            d_log_gamma = d_log_gamma + ((queries @ state) * scaled_d_reads).sum(-1)
            d_new_values = d_new_values + weighted_query_keys.transpose(-1, -2) @ d_reads
            # read_decay is 0 above the diagonal: no mask needed.
            d_weighted = d_reads @ new_values.transpose(-1, -2)
            d_query_keys = d_weighted * read_decay
            d_queries = d_queries + d_query_keys @ keys
            d_keys = d_keys + d_query_keys.transpose(-1, -2) @ queries
            flow_read = d_weighted.mul_(weighted_query_keys)                 # ∂/∂log E[t, i]
            d_log_gamma = d_log_gamma + flow_read.sum(-1) - flow_read.sum(-2)
        d_log_gamma[..., -1] += d_log_total
        # Through the solve (I + M) W = diag(β) R: the adjoint (I + M)ᵀ d_right = d_W, solved
        # as d_rightᵀ (I + M) = d_Wᵀ (left=False: 2x faster here than the transposed solve).
        d_right = torch.linalg.solve_triangular(
            system, d_new_values.transpose(-1, -2), upper=False, unitriangular=True,
            left=False).transpose(-1, -2)
        d_system = (d_right @ new_values.transpose(-1, -2)).mul_(
            _lower_mask(system.shape[-1], -1, system)).neg_()
        # M = diag(β)(K Kᵀ ⊙ D): one product P = dM ⊙ (K Kᵀ ⊙ D) serves β and log D.
        flow_gram = d_system * gram_decay
        d_beta = (residual * d_right).sum(-1) + flow_gram.sum(-1)
        d_values = beta[..., None] * d_right
        start = torch.exp(log_gamma - log_alpha)                             # γ_{t−1}
        d_log_gamma_previous = -start * (keys_state * d_values).sum(-1)
        d_keys_state = -start[..., None] * d_values
        d_keys = d_keys + d_keys_state @ state.transpose(-1, -2)
        d_state = d_state + keys.transpose(-1, -2) @ d_keys_state
        d_gram = d_system.mul_(decay).mul_(beta[..., :, None])
        d_keys = d_keys + (d_gram + d_gram.transpose(-1, -2)) @ keys       # K Kᵀ is symmetric
        flow_decay = flow_gram.mul_(beta[..., :, None])                      # ∂/∂log D[t, i]
        d_log_gamma_previous = d_log_gamma_previous + flow_decay.sum(-1)
        d_log_gamma = d_log_gamma - flow_decay.sum(-2) + d_log_gamma_previous
        # log γ = cumsum(log α), log γ_{t−1} = log γ_t − log α_t.
        d_log_alpha = (torch.flip(torch.cumsum(torch.flip(d_log_gamma, [-1]), -1), [-1])
                       - d_log_gamma_previous)
        return d_state, d_keys, d_values, d_beta, d_log_alpha, d_queries


def _check_chunk(state, keys, values, beta, log_alpha, queries) -> None:
    """Shapes (..., d_k, d_v), (..., C, d_k), (..., C, d_v), (..., C), (..., C), (..., C, d_k)
    with broadcastable leading dims (...); values only in the outermost call."""
    check_tensor("state", state, layout="(..., d_k, d_v)", dtype="float", finite=False)
    if state.ndim < 2:
        raise ValueError(f"state must have at least 2 dimensions (..., d_k, d_v), got shape "
                         f"{tuple(state.shape)}")
    key_dim, value_dim = state.shape[-2:]
    check_tensor("keys", keys, layout="(..., C, d_k)", finite=False)
    if keys.ndim < 2 or keys.shape[-1] != key_dim or keys.shape[-2] < 1:
        raise ValueError(f"keys must have shape (..., C, d_k) with C >= 1 and d_k = {key_dim} "
                         f"(of state), got {tuple(keys.shape)}")
    length = keys.shape[-2]
    tails = {"values": (length, value_dim), "beta": (length,), "log_alpha": (length,),
             "queries": (length, key_dim)}
    layouts = {"values": "(..., C, d_v)", "beta": "(..., C)", "log_alpha": "(..., C)",
               "queries": "(..., C, d_k)"}
    tensors = {"values": values, "beta": beta, "log_alpha": log_alpha, "queries": queries}
    for name, tensor in tensors.items():
        if tensor is None and name == "queries":
            continue
        check_tensor(name, tensor, layout=layouts[name], finite=False)
        tail = tails[name]
        if tensor.ndim < len(tail) or tuple(tensor.shape[tensor.ndim - len(tail):]) != tail:
            raise ValueError(f"{name} must have shape {layouts[name]} with C = {length} (of "
                             f"keys) and d = {tail[-1]}, got {tuple(tensor.shape)}")
    check_same_dtype_device("state", state, keys=keys, **tensors)
    leads = {"state": state.shape[:-2], "keys": keys.shape[:-2], "values": values.shape[:-2],
             "beta": beta.shape[:-1], "log_alpha": log_alpha.shape[:-1]}
    try:
        lead = torch.broadcast_shapes(*leads.values())
        fits = queries is None or torch.broadcast_shapes(lead, queries.shape[:-2]) == lead
    except RuntimeError:
        lead, fits = None, False
    if lead is None or not fits:
        if queries is not None:
            leads["queries"] = queries.shape[:-2]
        raise ValueError("state, keys, values, beta, log_alpha and queries must have "
                         "leading dims (...) that broadcast (queries' within the others'), got "
                         + ", ".join(f"{name} {tuple(lead)}" for name, lead in leads.items()))
    if data_checks_enabled():
        for name, tensor in (("state", state), ("keys", keys), *tensors.items()):
            if tensor is not None:
                check_finite(name, tensor)
        check_in_range("beta", beta, 0.0, float("inf"))
        check_in_range("log_alpha", log_alpha, float("-inf"), 0.0)


@entry_point
def gated_delta_chunk(state: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                      beta: torch.Tensor, log_alpha: torch.Tensor,
                      queries: torch.Tensor | None = None):
    """Run S_t = (α_t I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t u_tᵀ over one chunk, in parallel.

    This is DGD with retention (A-eq 88) on a layer S = Wᵀ whose keys k_t and targets u_t are
    fixed for the chunk (produced at the chunk's start state). Error form:
    S_t = α_t S_{t−1} + k_t w_tᵀ with w_t = β_t (u_t − S_{t−1}ᵀ k_t); unrolling with
    γ_t = Π_{j≤t} α_j gives the triangular system (I + L) w = β ⊙ (u − γ_{t−1} K S_0),
    L[t, i] = β_t (γ_{t−1}/γ_i) k_t·k_i for i < t, solved at once (WY / UT form).
    The backward is written out by hand (:class:`_GatedDeltaChunk`). A chunk longer than
    ``KERNEL_BLOCK`` is solved in consecutive blocks (same result, less C×C work).

    Args:
        state: (..., d_k, d_v) S_0. keys: (..., C, d_k). values: (..., C, d_v) targets u_t.
        beta: (..., C) effective step β_t = η′_t. log_alpha: (..., C) log retention.
        queries: optional (..., C, d_k); then the reads o_t = S_tᵀ q_t (after the write) are
            returned too.

    Returns:
        (S_C, reads) with S_C (..., d_k, d_v) and reads (..., C, d_v) or None.

    Raises:
        ValueError: naming the argument, for shapes that do not fit (C >= 1; leading dims of
            the state's rank), mixed dtypes or devices, and (in the outermost call) non-finite
            values, beta outside [0, 1] or log_alpha > 0.
    """
    _check_chunk(state, keys, values, beta, log_alpha, queries)
    _check_public_chunk(state, keys, values, beta, log_alpha, queries)
    return _gated_delta(state, keys, values, beta, log_alpha, queries)


def _check_public_chunk(state, keys, values, beta, log_alpha, queries) -> None:
    """What the public kernel adds to :func:`_check_chunk`: every tensor's leading dims (...)
    have as many axes as the state's (size 1 broadcasts; an axis more or fewer would silently
    give a result of another shape), and 0 <= beta <= 1 (the effective step of a unit key:
    beyond 1 the erase overshoots and flips the stored direction)."""
    if not data_checks_enabled():  # called inside nlbook (HOPE's memories): checked there
        return
    lead = state.shape[:-2]
    for name, tensor, tail in (("keys", keys, 2), ("values", values, 2), ("beta", beta, 1),
                               ("log_alpha", log_alpha, 1), ("queries", queries, 2)):
        if tensor is not None and tensor.ndim - tail != len(lead):
            raise ValueError(f"{name} must have {len(lead)} leading dims (...) like state "
                             f"{tuple(state.shape)} (size 1 broadcasts), got shape "
                             f"{tuple(tensor.shape)}")
    check_in_range("beta", beta, 0.0, 1.0)


def _gated_delta(state, keys, values, beta, log_alpha, queries=None):
    """:func:`gated_delta_chunk` without the public checks (HOPE's memories call it with a
    state shared over the batch)."""
    _check_chunk(state, keys, values, beta, log_alpha, queries)
    lead = torch.broadcast_shapes(state.shape[:-2], keys.shape[:-2], values.shape[:-2],
                                  beta.shape[:-1], log_alpha.shape[:-1])
    length = keys.shape[-2]

    def expand(tensor: torch.Tensor, tail: tuple[int, ...]) -> torch.Tensor:
        return tensor.expand(*lead, *tail)

    state = expand(state, state.shape[-2:])
    sizes = block_sizes(length)
    blocks = zip(*(tensor.split(sizes, dim) for tensor, dim in (
        (expand(keys, keys.shape[-2:]), -2), (expand(values, values.shape[-2:]), -2),
        (expand(beta, (length,)), -1), (expand(log_alpha, (length,)), -1))), strict=True)
    query_blocks = ([None] * len(sizes) if queries is None
                    else expand(queries, queries.shape[-2:]).split(sizes, -2))
    reads = []
    for (block_keys, block_values, block_beta, block_log_alpha), block_queries in zip(
            blocks, query_blocks, strict=True):
        state, block_reads = _GatedDeltaChunk.apply(state, block_keys, block_values, block_beta,
                                                    block_log_alpha, block_queries)
        reads.append(block_reads)
    if queries is None:
        return state, None
    return state, reads[0] if len(reads) == 1 else torch.cat(reads, dim=-2)


def _anchored_chunk(state, anchor, keys, values, beta, log_alpha, queries=None, *,
                    erase: bool = True):
    """:func:`gated_delta_chunk` with retention pulling towards ``anchor`` instead of 0.

    S_t = A + (α_t I − β_t k kᵀ)(S_{t−1} − A) + β_t k (u_t − Aᵀk)ᵀ: at α = 1 this is the plain
    DGD step; α < 1 forgets the in-context change S − A. ``anchor=None`` means A = 0.
    ``erase=False``: the same without the erase term −β k kᵀ (:func:`gated_hebbian_chunk`).
    """
    kernel = _gated_delta if erase else gated_hebbian_chunk
    if anchor is None:
        return kernel(state, keys, values, beta, log_alpha, queries)
    final, reads = kernel(state - anchor, keys, values - keys @ anchor, beta, log_alpha,
                          queries)
    if reads is not None:
        reads = reads + queries @ anchor
    return final + anchor, reads


@entry_point
def gated_hebbian_chunk(state: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                        beta: torch.Tensor, log_alpha: torch.Tensor,
                        queries: torch.Tensor | None = None):
    """Run S_t = α_t S_{t−1} + β_t k_t u_tᵀ over one chunk, in parallel: the plain gradient
    step on the dot-product objective −⟨Sᵀk_t, u_t⟩ with retention (no erase term), the
    "without DGD" ablation of :class:`nlbook.selfmod.SelfModifyingTitans` (arXiv Table 6).

    Same arguments and returns as :func:`gated_delta_chunk`. Unrolled with γ_t = Π_{j≤t} α_j:
    S_C = γ_C S_0 + Σ_i (γ_C/γ_i) β_i k_i u_iᵀ and o_t = γ_t S_0ᵀq_t + Σ_{i≤t} (γ_t/γ_i)
    β_i (q_t·k_i) u_i (gated linear attention). Plain differentiable operations: autograd
    gives the backward.
    """
    _check_chunk(state, keys, values, beta, log_alpha, queries)
    log_gamma = torch.cumsum(log_alpha, dim=-1)                               # (..., C)
    weighted = values * beta[..., None]                                        # β_i u_i
    to_end = torch.exp(log_gamma[..., -1:] - log_gamma)                       # γ_C / γ_i
    final = (torch.exp(log_gamma[..., -1])[..., None, None] * state
             + (keys * to_end[..., None]).transpose(-1, -2) @ weighted)
    if queries is None:
        return final, None
    mask = _lower_mask(keys.shape[-2], 0, log_gamma)                           # i ≤ t
    decay = (log_gamma[..., :, None] - log_gamma[..., None, :]).clamp(max=0).exp() * mask
    reads = (torch.exp(log_gamma)[..., None] * (queries @ state)
             + ((queries @ keys.transpose(-1, -2)) * decay) @ weighted)
    return final, reads
