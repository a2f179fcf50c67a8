"""DGD, the exact proximal step of an L2 regression (arXiv §4.5, A-eq 54–57), and a
self-modifying linear layer built from it (the simple entry point of chapter 4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nlbook._checks import (
    ArgumentTypeError,
    check_bool,
    check_finite,
    check_int,
    check_memory,
    check_positive_int,
    check_same_dtype_device,
    check_scalar_in_range,
    check_shape,
    check_tensor,
    describe,
    entry_point,
)


def _check_step_size(name: str, value, W: torch.Tensor, low: float, high: float,
                     *, low_inclusive: bool) -> torch.Tensor:
    """``value`` (a number or a tensor broadcastable to W's leading dims (...), without
    growing them) in the interval, as a tensor of W's dtype and device."""
    lead = tuple(W.shape[:-2])
    expected = ("be positive and finite" if math.isinf(high) else
                f"lie in {'(' if not low_inclusive else '['}{low}, {high}]")
    if isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name} must be a real tensor, got dtype {value.dtype}")
        try:
            fits = torch.broadcast_shapes(value.shape, lead) == lead
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"{name} must be a number or a tensor broadcastable to the leading "
                             f"dims (...) = {lead} of W, got shape {tuple(value.shape)}")
        tensor = value.to(dtype=W.dtype, device=W.device)
        values = tensor.detach()
        above = values > low if not low_inclusive else values >= low
        if not bool((above & (values <= high) & torch.isfinite(values)).all()):
            raise ValueError(f"{name} must {expected}, got values in "
                             f"[{values.min().item():.4g}, {values.max().item():.4g}]")
        return tensor
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a number or a tensor, got {describe(value)}")
    if not (math.isfinite(value) and (value > low if not low_inclusive else value >= low)
            and value <= high):
        raise ValueError(f"{name} must {expected}, got {value!r}")
    return torch.as_tensor(value, dtype=W.dtype, device=W.device)


def _check_layer_step(W, x, grad_y, x_name: str = "x", grad_name: str = "grad_y",
                      pairs: bool = False) -> None:
    """W (..., d_out, d_in); x (..., d_in) or X (..., r, d_in); grad_y likewise with d_out."""
    check_tensor("W", W, layout="(..., d_out, d_in)", dtype="float")
    if W.ndim < 2:
        raise ValueError(f"W must have at least 2 dimensions (..., d_out, d_in), got shape "
                         f"{tuple(W.shape)}")
    lead, (d_out, d_in) = tuple(W.shape[:-2]), W.shape[-2:]
    rows = (None,) if pairs else ()
    check_shape(x_name, x, (*lead, *rows, d_in),
                f"(..., {'r, ' if pairs else ''}d_in) with (..., d_in) of W")
    rows = (x.shape[-2],) if pairs else ()
    check_shape(grad_name, grad_y, (*lead, *rows, d_out),
                f"(..., {'r, ' if pairs else ''}d_out) of W and {x_name}")
    check_same_dtype_device("W", W, **{x_name: x, grad_name: grad_y})
    for name, tensor in ((x_name, x), (grad_name, grad_y)):
        check_finite(name, tensor)


def _check_conditioning(lr: torch.Tensor, squared_norm: torch.Tensor, dtype: torch.dtype,
                        function: str, x_name: str) -> None:
    """Refuse an ``lr`` for which I + lr x xᵀ is numerically singular in ``dtype``.

    Its eigenvalues are 1 and 1 + lr‖x‖²: once lr‖x‖² exceeds 1/eps of the dtype, the 1 is
    rounded away and the inverse (solve) fails or not depending on the linear-algebra library.
    A clear refusal whatever the library decides. ``squared_norm`` (...,) is ‖x‖² (the trace
    of X Xᵀ for several inputs, an upper bound of its largest eigenvalue)."""
    product = lr.detach().double() * squared_norm.detach().double()
    if product.numel() == 0:
        return
    spread = product.max()
    limit = 1.0 / torch.finfo(dtype).eps
    if not bool(torch.isfinite(spread)) or float(spread) > limit:
        raise ValueError(f"lr and {x_name} are too large together for {function} in {dtype}: "
                         f"lr·‖{x_name}‖² = {float(spread):.3g} exceeds 1/eps = {limit:.3g}, so "
                         f"I + lr {x_name} {x_name}ᵀ is numerically singular; use a smaller lr "
                         f"or float64 (dgd_step computes the same step without an inverse)")


def _solved(compute, function: str):
    """``compute()``; a linear-algebra failure that the conditioning check missed becomes a
    ValueError naming lr (the check is a bound, the library decides)."""
    try:
        return compute()
    except torch.linalg.LinAlgError as error:
        raise ValueError(f"lr makes the system of {function} singular in this dtype "
                         f"({str(error).splitlines()[0][:120]}); use a smaller lr or "
                         f"float64") from None


@entry_point
def dgd_step(W: torch.Tensor, x: torch.Tensor, grad_y: torch.Tensor, lr, *,
             retention=1.0) -> torch.Tensor:
    """One Delta Gradient Descent step (arXiv A-eq 57), optionally with retention α (A-eq 88).

    W_new = W (α I − η′ x xᵀ) − η′ grad_y xᵀ,   η′ = lr / (1 + lr ‖x‖²).

    With α = 1 this is the *exact* solution of the proximal L2 regression step (A-eq 56)
    argmin_W ½‖W x − u‖² + (1/2 lr)‖W − W_old‖², u = −grad_y, i.e.
    (W_old + lr u xᵀ)(I + lr x xᵀ)⁻¹, by Sherman–Morrison. The NeurIPS print (N-eq 29) drops η′
    from the decay term; that is a typo (it erases the whole x-direction at every step, and
    flips its sign once ‖x‖² > 2). The arXiv print writes η′ = η/(1 + η), exact for ‖x‖ = 1.

    Which target: A-eq 56 regresses onto u = −∇_y L (pass the loss gradient as ``grad_y``);
    to regress a layer onto a known target value u (the course's experiments, and every memory
    of HOPE, whose target is the self-generated v̂), pass ``grad_y = −u``. The two differ: see
    :func:`correlated_stream_experiment`.

    Args:
        W: (..., d_out, d_in) weights.
        x: (..., d_in) the layer's input.
        grad_y: (..., d_out) gradient of the loss at the layer's output y = W x.
        lr: step size η > 0, a float or a tensor broadcastable to the leading dims (...).
        retention: α in [0, 1], a float or a tensor broadcastable to (...); 1 gives plain DGD.

    Returns:
        (..., d_out, d_in) the updated weights.

    Raises:
        ValueError: naming the argument, for shapes that do not fit W, non-finite inputs, an
            ``lr`` that is not positive and finite, a ``retention`` outside [0, 1], or an
            ``lr``/``retention`` tensor that would broadcast W's leading dims to a new shape.
    """
    _check_layer_step(W, x, grad_y)
    lr_tensor = _check_step_size("lr", lr, W, 0.0, math.inf, low_inclusive=False)
    alpha = _check_step_size("retention", retention, W, 0.0, 1.0, low_inclusive=True)
    lr_prime = lr_tensor / (1 + lr_tensor * (x * x).sum(-1))          # (...)
    lr_prime = lr_prime[..., None, None]
    alpha = alpha[..., None, None] if alpha.ndim else alpha
    W_x = (W @ x[..., :, None])                                       # (..., d_out, 1)
    return alpha * W - lr_prime * (W_x + grad_y[..., :, None]) @ x[..., None, :]


@entry_point
def dgd_proximal_closed_form(W: torch.Tensor, x: torch.Tensor, grad_y: torch.Tensor,
                             lr: float) -> torch.Tensor:
    """The proximal L2 step solved by a matrix inverse: (W + η u xᵀ)(I + η x xᵀ)⁻¹, u = −grad_y.

    A slow reference for :func:`dgd_step` (arXiv A-eq 56, before Sherman–Morrison).
    Shapes as in :func:`dgd_step` (no batching needed).
    """
    _check_layer_step(W, x, grad_y)
    lr = _check_step_size("lr", lr, W, 0.0, math.inf, low_inclusive=False)
    _check_conditioning(lr, (x * x).sum(-1), W.dtype, "dgd_proximal_closed_form", "x")
    lr = lr[..., None, None] if lr.ndim else lr
    eye = torch.eye(x.shape[-1], dtype=W.dtype, device=W.device)
    u = -grad_y
    outer_xx = x[..., :, None] * x[..., None, :]
    inverse = _solved(lambda: torch.linalg.inv(eye + lr * outer_xx), "dgd_proximal_closed_form")
    return (W + lr * u[..., :, None] * x[..., None, :]) @ inverse


@entry_point
def dgd_step_rank_k(W: torch.Tensor, X: torch.Tensor, grad_Y: torch.Tensor, lr) -> torch.Tensor:
    """The exact proximal step on r input/target pairs at once (rank-r DGD, via Woodbury).

    argmin_W ½ Σ_j ‖W x_j − u_j‖² + (1/2η)‖W − W_old‖² = (W_old + η U Xᵀ)(I + η X Xᵀ)⁻¹
               = W_old − η (W_old X − U)(I_r + η XᵀX)⁻¹ Xᵀ,   U = −grad_Y,

    where X (d_in, r) holds the inputs as columns. For r = 1 this is :func:`dgd_step`; for
    r > 1 it differs from r sequential rank-1 steps (the pairs are fitted jointly).

    Args:
        W: (..., d_out, d_in). X: (..., r, d_in) the r inputs. grad_Y: (..., r, d_out).
        lr: η > 0, a float or a tensor broadcastable to (...).

    Returns:
        (..., d_out, d_in).
    """
    _check_layer_step(W, X, grad_Y, "X", "grad_Y", pairs=True)
    if X.shape[-2] < 1:
        raise ValueError(f"X must hold at least one input (r >= 1), got shape {tuple(X.shape)}")
    lr_tensor = _check_step_size("lr", lr, W, 0.0, math.inf, low_inclusive=False)
    _check_conditioning(lr_tensor, (X * X).sum((-2, -1)), W.dtype, "dgd_step_rank_k", "X")
    lr_tensor = lr_tensor[..., None, None] if lr_tensor.ndim else lr_tensor
    rank = X.shape[-2]
    gram = torch.eye(rank, dtype=W.dtype, device=W.device) + lr_tensor * X @ X.transpose(-1, -2)
    residual = W @ X.transpose(-1, -2) + grad_Y.transpose(-1, -2)     # W X − U: (..., d_out, r)
    solved = _solved(lambda: torch.linalg.solve(gram, residual, left=False), "dgd_step_rank_k")
    return W - lr_tensor * solved @ X


#: The rules of :func:`correlated_stream_experiment`.
STREAM_RULES = ("gd", "dgd", "dgd_literal")


def correlated_stream_experiment(length: int = 400, dim: int = 16, correlation: float = 0.95,
                                 lrs: tuple[float, ...] = (0.1, 0.5, 1.0, 4.0), seed: int = 0,
                                 noise: float = 0.0,
                                 rules: tuple[str, ...] = STREAM_RULES) -> dict:
    """Online linear regression on a stream of correlated inputs: GD vs DGD (arXiv §4.5).

    Inputs x_t = ρ x_{t−1} + √(1−ρ²) ξ_t (ξ standard normal, ‖x‖² ≈ d), targets
    y_t = W* x_t (+ noise). Each rule sees one pair per step, starting from W = 0, with the
    loss L = ½‖W x_t − y_t‖² (so ∇_y L = W x_t − y_t):

    - ``"gd"``: W − η (W x_t − y_t) x_tᵀ.
    - ``"dgd"`` (the course's form, the one HOPE's memories use): the exact proximal step of
      the regression onto the target u = y_t, :func:`dgd_step` with grad_y = −y_t:
      W (I − η′ x xᵀ) + η′ y xᵀ. It erases the old answer along x_t, then writes y_t; along x_t
      it contracts towards the target, W_new x = (1 − η′‖x‖²) W x + η′‖x‖² y, so the error
      ‖W − W*‖_F never grows, for every η (the factor 1 − η′‖x‖² lies in (0, 1)).
    - ``"dgd_literal"``: A-eq 57 as printed, u = −∇_y L (A-eq 56): :func:`dgd_step` with
      grad_y = W x_t − y_t, i.e. W (I − 2η′ x xᵀ) + η′ y xᵀ. The residual already subtracts
      the current answer W x, and the erase term subtracts it once more: along x_t,
      W_new x = (1 − 2η′‖x‖²) W x + η′‖x‖² y, whose fixed point is W x = y/2. It stays bounded
      for every η (|1 − 2η′‖x‖²| < 1), but it settles at half the target, and once
      η′‖x‖² > ½ (η‖x‖² > 1) the factor is negative: the answer overshoots and oscillates.

    Returns {rule: {lr: errors}} for the ``rules`` asked, with the prediction error
    ‖W_{t−1} x_t − y_t‖² / ‖y_t‖² *before* each step (T,), in float64 (a diverged run is
    clamped at 1e6).
    """
    check_positive_int("length", length)
    check_positive_int("dim", dim)
    check_scalar_in_range("correlation", correlation, -1.0, 1.0)
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, (tuple, list)) or not lrs:
        raise ArgumentTypeError(f"lrs must be a non-empty tuple or list of positive numbers, "
                                f"got {describe(lrs)}")
    for index, lr in enumerate(lrs):
        check_scalar_in_range(f"lrs[{index}]", lr, 0.0, math.inf, low_inclusive=False)
    check_int("seed", seed, low=0)
    check_scalar_in_range("noise", noise, 0.0, math.inf)
    check_memory("length and dim", 3 * length * dim + dim * dim, bytes_per_element=8)
    for rule in rules:
        if rule not in STREAM_RULES:
            raise ValueError(f"rules must be drawn from {STREAM_RULES}, got {rule!r}")
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(dim, dim, dtype=torch.float64, generator=generator) / math.sqrt(dim)
    inputs = torch.empty(length, dim, dtype=torch.float64)
    current = torch.randn(dim, dtype=torch.float64, generator=generator)
    for t in range(length):
        fresh = torch.randn(dim, dtype=torch.float64, generator=generator)
        current = correlation * current + math.sqrt(1 - correlation ** 2) * fresh
        inputs[t] = current
    outputs = inputs @ target.T
    outputs = outputs + noise * torch.randn(length, dim, dtype=torch.float64,
                                            generator=generator)
    results: dict = {rule: {} for rule in rules}
    for lr in lrs:
        for rule in rules:
            weight = torch.zeros(dim, dim, dtype=torch.float64)
            errors = torch.empty(length, dtype=torch.float64)
            for t in range(length):
                x_t, y_t = inputs[t], outputs[t]
                grad_y = weight @ x_t - y_t                                  # ∇_y L
                errors[t] = grad_y.square().sum() / y_t.square().sum()
                if rule == "gd":
                    weight = weight - lr * torch.outer(grad_y, x_t)
                elif rule == "dgd":
                    weight = dgd_step(weight, x_t, -y_t, lr)      # regress onto u = y_t
                else:
                    weight = dgd_step(weight, x_t, grad_y, lr)    # u = −∇_y L (A-eq 57)
            results[rule][lr] = errors.nan_to_num(nan=1e6, posinf=1e6).clamp(max=1e6)
    return results


def silu_derivative(a: torch.Tensor) -> torch.Tensor:
    """d silu(a) / da = s (1 + a (1 − s)), s = sigmoid(a)."""
    check_tensor("a", a, dtype="float")
    s = torch.sigmoid(a)
    return s * (1 + a * (1 - s))


# --------------------------------------------------------------------------------------------
# A self-modifying linear layer (the simple entry point)


class SelfModifyingLinear(nn.Module):
    """A linear layer y_t = W_t x_t that rewrites its own weights from its input by DGD.

    At every token the layer makes ``rank`` unit keys κ_j = normalize(P_j x_t) and targets
    u_j = W_{t−1}(V_j x_t) (self-generated: its own answer to a transformed input, A-eq 83–85
    in miniature), a step size η_t = softplus(w_η·x_t + b_η), and writes the exact proximal
    change (:func:`dgd_step_rank_k`; rank 1 is :func:`dgd_step`, A-eq 57):

        W_t = W_{t−1} − η_t (W_{t−1} K − U)(I + η_t KᵀK)⁻¹ Kᵀ,   then y_t = W_t x_t.

    The change W_t − W_{t−1} has rank ≤ ``rank``. W_0, P, V, w_η, b_η are trained by the outer
    loss (backprop flows through every write). A plain token loop: this layer is for teaching.

    Shapes: x (B, T, d_in) → y (B, T, d_out); weights per sequence (B, d_out, d_in).
    """

    def __init__(self, d_in: int, d_out: int, rank: int = 1, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_positive_int("d_in", d_in)
        check_positive_int("d_out", d_out)
        check_positive_int("rank", rank)
        if rank > d_in:
            raise ValueError(f"rank must be at most d_in = {d_in}, got {rank}")
        check_memory("d_in, d_out and rank", d_out * d_in + 2 * rank * d_in * d_in,
                     what="the parameters")
        self.d_in, self.d_out, self.rank = d_in, d_out, rank
        scale = 1 / math.sqrt(d_in)
        self.initial_weight = nn.Parameter(torch.randn(d_out, d_in, generator=generator) * scale)
        self.key_projection = nn.Parameter(
            torch.randn(rank, d_in, d_in, generator=generator) * scale)
        self.value_projection = nn.Parameter(
            torch.randn(rank, d_in, d_in, generator=generator) * scale)
        self.lr_weight = nn.Parameter(torch.zeros(d_in))
        self.lr_bias = nn.Parameter(torch.tensor(math.log(math.e - 1)))  # softplus⁻¹(1)

    @entry_point
    def forward(self, x: torch.Tensor, *, return_weights: bool = False):
        """x (B, T, d_in) → y (B, T, d_out) [, weights (B, T, d_out, d_in) after each write]."""
        check_shape("x", x, (None, None, self.d_in), "(B, T, d_in)")
        check_same_dtype_device("initial_weight", self.initial_weight, x=x)
        check_finite("x", x)
        check_bool("return_weights", return_weights)
        if x.shape[1] < 1:
            raise ValueError(f"x must hold at least one token (T >= 1), got shape "
                             f"{tuple(x.shape)}")
        batch, length, _ = x.shape
        weight = self.initial_weight.expand(batch, -1, -1)
        outputs, history = [], []
        for t in range(length):
            x_t = x[:, t]                                                    # (B, d_in)
            keys = F.normalize(torch.einsum("rij,bj->bri", self.key_projection, x_t), dim=-1)
            probes = torch.einsum("rij,bj->bri", self.value_projection, x_t)
            targets = probes @ weight.transpose(-1, -2)                      # (B, r, d_out)
            lr = F.softplus(x_t @ self.lr_weight + self.lr_bias)             # (B,)
            weight = dgd_step_rank_k(weight, keys, -targets, lr)
            outputs.append((weight @ x_t[..., None])[..., 0])
            if return_weights:
                history.append(weight)
        y = torch.stack(outputs, dim=1)
        return (y, torch.stack(history, dim=1)) if return_weights else y
