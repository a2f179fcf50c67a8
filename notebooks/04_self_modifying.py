# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 4 · Self-modifying memories and Delta Gradient Descent
#
# Gradient descent treats every sample as if it were independent of what the weights already
# store. On a stream of correlated tokens that is a poor fit: the same direction is pushed again
# and again. Nested Learning (arXiv 2512.24695, §4.5) replaces the dot-product view of a GD step
# with an L2 regression solved *exactly*: **Delta Gradient Descent** (DGD), which first erases
# what the weights answer along the current input and then writes. §8 then builds memories that
# produce their own keys, values, learning rates and retention, and train themselves in context
# with DGD: **self-modifying Titans**, the first half of the HOPE block (chapter 5). Its memories
# are written at every token: in HOPE they are the fastest level, level 1 (chapter 0).
# Notation: [glossary](GLOSSARY.md).
#
# **Learning objectives.** After this chapter you can
# 1. derive DGD from the proximal L2 step with Sherman–Morrison, and spot the NeurIPS typo;
# 2. say why the erase term helps on correlated inputs (and measure it), and why A-eq 57 run as
#    printed, with the target $u = -\nabla_y L$, settles at half the answer;
# 3. write a self-modifying layer that changes its own weights (rank 1 and rank k);
# 4. run one token, then one chunk, of self-modifying Titans by hand, check it against the fast
#    form, and watch every memory, $\eta_t$ and $\alpha_t$ evolve.
#
# **Time:** about 80 minutes of study. **Prerequisites:** chapter 1 (delta rule, Titans), and
# chapter 2's view of a gradient step as a memory write.

# %%
# Setup. On Colab: fetch the course and install nlbook into this kernel (plain Python on
# purpose: magics inside `if` break the paired .py file). Locally `pip install -r
# requirements.txt` has already installed it.
import os
import subprocess
import sys

if "google.colab" in sys.modules and not os.path.isdir("/content/nlbook"):
    NLBOOK_REPOSITORY = "https://github.com/nlbook/nlbook"  # the course's home; edit for a fork
    subprocess.run(["git", "clone", "--depth", "1", NLBOOK_REPOSITORY, "/content/nlbook"],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/nlbook"],
                   check=True)
    sys.path.insert(0, "/content/nlbook")

import nlbook

nlbook.setup(seed=0)

# %%
import torch
import torch.nn.functional as F

import nlbook.viz as viz
from nlbook import selfmod, smoke, widgets
from nlbook.exercises import self_modifying as ex

# %% [markdown]
# ## 1 · From gradient descent to DGD
#
# **Idea.** For a linear layer $y = W x$, a GD step is one proximal step on a *dot-product*
# objective, $\arg\min_W \langle W x, \nabla_y L\rangle + \lVert W - W_t\rVert^2/(2\eta)$: the
# answer $W x_t$ does not matter, only the gradient. DGD instead regresses the layer's output
# onto a target $u$ (A-eq 56, where the paper takes $u = -\nabla_y L$, the layer's local
# surprise of chapter 2):
#
# $$W_{t+1} = \arg\min_W \tfrac12\lVert W x_t - u_t\rVert^2 + \frac{\lVert W - W_t\rVert^2}{2\eta}
#   = (W_t + \eta\, u x^\top)(I + \eta\, x x^\top)^{-1}.$$
#
# **Sherman–Morrison:** $(I + \eta\, x x^\top)^{-1} = I - \eta' x x^\top$ with
# $\boldsymbol{\eta' = \eta / (1 + \eta\lVert x\rVert^2)}$, so
#
# $$W_{t+1} = W_t (I - \eta' x x^\top) + \eta'\, u\, x^\top, \quad\text{and with }
#   u = -\nabla_y L:\quad W_{t+1} = W_t (I - \eta' x x^\top) - \eta'\, \nabla_y L\, x^\top
#   \qquad\text{(arXiv A-eq 57).}$$
#
# The first term *erases* what $W$ stores along $x$ before the second writes.
# `selfmod.dgd_step(W, x, grad_y, lr)` computes the second form; to regress onto a known target
# value $u$, pass `grad_y = −u`.

# %%
generator = torch.Generator().manual_seed(0)
W = torch.randn(5, 4, dtype=torch.float64, generator=generator)
x = torch.randn(4, dtype=torch.float64, generator=generator)
x = 2.0 * x / x.norm()  # ‖x‖ = 2: not the unit norm the paper assumes
grad_y = torch.randn(5, dtype=torch.float64, generator=generator)
fast = selfmod.dgd_step(W, x, grad_y, lr=0.7)
closed = selfmod.dgd_proximal_closed_form(W, x, grad_y, lr=0.7)
print(f"max |dgd_step - closed form| = {(fast - closed).abs().max():.2e}")
assert (fast - closed).abs().max() < 1e-10

# %% [markdown]
# ### The typo and what it does
#
# The NeurIPS print (N-eq 29) has $W_t(I - x x^\top)$: no $\eta'$ on the erase. With unit $x$
# that wipes the whole $x$-direction at every step whatever $\eta$ is; with $\lVert x\rVert^2 > 2$
# the factor $1 - \lVert x\rVert^2 < -1$ flips sign and the weights blow up. The arXiv version
# writes $\eta' = \eta/(1 + \eta)$, which is right only for $\lVert x\rVert = 1$. When you read
# a reproduction, check which of the two prints it copied.

# %%
lr = 0.7
eye = torch.eye(4, dtype=torch.float64)
paper_lr = lr / (1 + lr)  # the arXiv η′, assuming ‖x‖ = 1
arxiv_form = W @ (eye - paper_lr * torch.outer(x, x)) - paper_lr * torch.outer(grad_y, x)
neurips_form = W @ (eye - torch.outer(x, x)) - lr * torch.outer(grad_y, x)
print(f"‖x‖ = 2: error of η/(1+η)        {(arxiv_form - closed).abs().max():.3f}")
print(f"‖x‖ = 2: error of W(I - x xᵀ)    {(neurips_form - closed).abs().max():.3f}")
weights = W.clone()
for _ in range(10):  # the NeurIPS erase applied ten times with ‖x‖² = 4: factor (1 - 4)^10
    weights = weights @ (eye - torch.outer(x, x))
print(f"ten NeurIPS erases: ‖W‖ grows from {W.norm():.1f} to {weights.norm():.3g}")

# %% [markdown]
# ### Why the erase term helps on correlated inputs, and which target to regress onto
#
# Online linear regression, one pair $(x_t, y_t = W^* x_t)$ per step, with inputs that drift
# slowly ($x_t = \rho\, x_{t-1} + \sqrt{1-\rho^2}\, \xi_t$, $\rho = 0.95$,
# $\lVert x\rVert^2 \approx d = 16$), loss $L = \tfrac12\lVert W x_t - y_t\rVert^2$, so
# $\nabla_y L = W x_t - y_t$. Three rules see the same stream, from $W = 0$:
#
# - **GD**: $W - \eta\, (W x - y) x^\top$.
# - **DGD, target $u = y_t$** (the course's form): the exact proximal step of the regression
#   onto the known target, $W (I - \eta' x x^\top) + \eta' y x^\top$. It first removes the old
#   answer along $x_t$, then writes $y_t$. This is the form every memory of HOPE uses (its
#   targets are $\hat v$).
# - **DGD as printed, $u = -\nabla_y L$** (A-eq 56–57 literally):
#   $W (I - \eta' x x^\top) - \eta' (W x - y) x^\top$.

# %%
stream = selfmod.correlated_stream_experiment(length=smoke(600, 150), dim=16, correlation=0.95,
                                              lrs=(0.01, 0.05, 0.1, 1.0, 10.0))
finals = {rule: {lr: float(errors[-50:].mean()) for lr, errors in per_lr.items()}
          for rule, per_lr in stream.items()}
print("mean relative error ‖W x − y‖²/‖y‖² over the last 50 steps")
for rule, per_lr in finals.items():
    print(f"{rule:12s}", " ".join(f"η={lr:g}: {error:9.3g}" for lr, error in per_lr.items()))
viz.plot_gd_vs_dgd_stream(stream)

# %% [markdown]
# **What we measure** (full size, 600 steps): GD diverges as soon as $\eta\lVert x\rVert^2 > 2$
# ($\eta \ge 0.1$ here), because correlated inputs push the same direction again and again; at
# its best step size ($\eta = 0.05$: 0.002) it is about as good as DGD. DGD with target $y$
# reaches 0.002–0.003 for every $\eta \ge 0.05$ and never diverges: the gain is robustness, not
# a lower floor (on one linear layer it is the normalised LMS / Longhorn step). **DGD as printed
# settles at 0.25–0.35 for every $\eta$.**
#
# Why, along the current input $x$ (write $a = \eta'\lVert x\rVert^2 \in (0, 1)$):
#
# - target $y$: $W_{\text{new}}\, x = (1 - a)\, W x + a\, y$. The answer moves towards $y$; the
#   error $W - W^*$ is multiplied by $I - \eta' x x^\top$, whose eigenvalues lie in $(0, 1]$:
#   **$\lVert W - W^*\rVert$ never grows, for every $\eta$**. That is the precise sense in which
#   this DGD is stable for every step size.
# - target $u = -\nabla_y L = y - W x$: $W_{\text{new}}\, x = (1 - 2a)\, W x + a\, y$. The
#   residual already subtracts the current answer, and the erase term subtracts it once more.
#   The fixed point is $W x = y/2$ (the output equals its own target $y - W x$), a relative
#   error of exactly 1/4. The factor $1 - 2a$ keeps it bounded for every $\eta$ too, but once
#   $\eta\lVert x\rVert^2 > 1$ it is negative: the answer overshoots and oscillates around
#   $y/2$ (0.35 at $\eta = 10$).
#
# A one-pair check of both fixed points:

# %%
pair_x = torch.randn(4, dtype=torch.float64, generator=generator)
pair_y = torch.randn(5, dtype=torch.float64, generator=generator)
target_form = torch.zeros(5, 4, dtype=torch.float64)
printed_form = torch.zeros(5, 4, dtype=torch.float64)
for _ in range(100):
    target_form = selfmod.dgd_step(target_form, pair_x, -pair_y, 0.5)                 # u = y
    printed_form = selfmod.dgd_step(printed_form, pair_x, printed_form @ pair_x - pair_y, 0.5)
print(f"u = y:        W x / y = {(target_form @ pair_x / pair_y).mean():.4f}")
print(f"u = −∇_y L:   W x / y = {(printed_form @ pair_x / pair_y).mean():.4f}")
assert torch.allclose(printed_form @ pair_x, pair_y / 2)

# %% [markdown]
# **Which one HOPE uses, and why.** A-eq 56 is written for a layer inside a network, which has
# no target of its own, only the surprise $-\nabla_y L$ that backpropagation hands it; chapter 2
# read that layer as a memory of its surprise, and A-eq 57 writes the surprise itself as the
# value. A memory that *does* have a target (Titans' $v$, self-modifying Titans' $\hat v$)
# should regress onto that target, $u = \hat v$: that is the exact proximal step of its L2
# objective, the gated delta rule of A-eq 92. Taking $\nabla L$ of that same objective as the
# value, as A-eq 88 and A-eq 93 read literally, erases twice,
# $M(\alpha I - 2\eta\, k k^\top) + \eta\, \hat v k^\top$, and halves the target exactly as
# above. So `nlbook.selfmod` (and with it HOPE) writes every memory with target $u = \hat v$
# ($u = \hat v - k$ for the residual MLP memories).
#
# **DGD with a linear memory and target $v$ is the delta rule** with step $\beta = \eta'$.
# Chapter 1's `nlbook.memory.delta_rule` agrees:

# %%
from nlbook.memory import delta_rule

length, d = 12, 4
keys = torch.nn.functional.normalize(torch.randn(1, 1, length, d, dtype=torch.float64,
                                                 generator=generator), dim=-1)
values = torch.randn(1, 1, length, d, dtype=torch.float64, generator=generator)
queries = torch.randn(1, 1, length, d, dtype=torch.float64, generator=generator)
eta = 0.8
memory = torch.zeros(d, d, dtype=torch.float64)  # W: (d_v, d_k)
reads = []
for t in range(length):
    memory = selfmod.dgd_step(memory, keys[0, 0, t], -values[0, 0, t], eta)  # target u = v
    reads.append(memory @ queries[0, 0, t])
beta = torch.full((1, 1, length), eta / (1 + eta), dtype=torch.float64)  # η′ for unit keys
delta_reads, _ = delta_rule(queries, keys, values, beta)
print(f"max |DGD loop - delta_rule| = {(torch.stack(reads) - delta_reads[0, 0]).abs().max():.2e}")

# %% [markdown]
# ## 2 · A self-modifying layer
#
# A layer that writes its own weights from its input: at every token it makes `rank` unit keys
# $\kappa_j = \mathrm{normalize}(P_j x_t)$, self-generated targets $u_j = W_{t-1}(V_j x_t)$ and a
# step size $\eta_t = \mathrm{softplus}(w \cdot x_t + b)$, then takes the exact proximal step on
# those pairs (Woodbury; rank 1 is DGD), and reads $y_t = W_t x_t$:
#
# $$W_t = W_{t-1} - \eta\, (W_{t-1} K - U)(I + \eta\, K^\top K)^{-1} K^\top.$$

# %%
for rank in (1, 3):
    layer = selfmod.SelfModifyingLinear(8, 6, rank=rank, generator=generator).double()
    inputs = torch.randn(1, 10, 8, dtype=torch.float64, generator=generator)
    outputs, history = layer(inputs, return_weights=True)
    changes = history[0, 1:] - history[0, :-1]
    ranks = torch.linalg.matrix_rank(changes, atol=1e-9).tolist()
    print(f"rank {rank}: rank of W_t - W_(t-1) per token = {ranks}")
    assert all(r == rank for r in ranks)

# %% [markdown]
# ## 3 · Self-modifying Titans, step by step
#
# ### 3.1 · The rule, for one head (A-eq 86–89)
#
# Every projection except $q$ becomes a memory written in context. With fixed projections
# $x_t = W_x x$ and $q_t = \mathrm{normalize}(W_q x)$:
#
# - generate: $k_t = \mathrm{normalize}(M_k(x_t))$, $v_t = \mathrm{normalize}(M_v(x_t))$,
#   $\eta_t = \mathrm{softplus}(M_\eta(x_t) + b_\eta)$,
#   $\alpha_t = \mathrm{sigmoid}(M_\alpha(x_t) + b_\alpha)$;
# - every memory $\square \in \{k, v, \eta, \alpha, \text{memory}\}$ makes its **own target**
#   $\hat v_\square = M_\square(v_t)$ and is written towards it at the key $k_t$, by DGD with
#   retention $\alpha_t$ (A-eq 88, the target form of section 1);
# - read the main memory after the write, $o_t = M_{\text{memory},\,t}(q_t)$ (the paper prints
#   $M_{t-1}$; the course reads after the write, as every memory since chapter 1), and project,
#   $y_t = W_o\, o_t$.
#
# $M_k$, $M_v$ and $M_{\text{memory}}$ are residual MLPs $M(z) = z + W_2\,\mathrm{silu}(W_1 z)$
# (A-eq 89). Only $W_2$ is written in context (input $h = \mathrm{silu}(W_1 k_t)$, target
# $\hat v - k_t$, so that $M(k_t)$ moves towards $\hat v$); $W_1$ keeps its meta-learned value.
# $M_\eta$ and $M_\alpha$ are linear maps $w \cdot z$ (input $k_t$, target $\hat v$). Retention
# acts on the in-context change:
#
# $$W \leftarrow W_0 + (W - W_0)(\alpha I - \eta' h h^\top) + \eta' (u - W_0 h)\, h^\top.$$
#
# `selfmod.reference_self_modifying_titans` is this rule as a slow float64 loop over sequences,
# heads and tokens; `selfmod.SelfModifyingTitans` is the fast form. Before using the fast form,
# we write the rule by hand: one token, then one chunk.
#
# ### 3.2 · One token by hand
#
# A one-head layer ($d = 8$, memory hidden width 4). Its parameters are the meta-learned
# initial states of the memories, stored in the row convention of chapter 1; `column` turns them
# into the $W$ of $y = W x$.

# %%
titans = selfmod.SelfModifyingTitans(8, heads=1, hidden=4, chunk_size_memory=1,
                                     chunk_size_others=1, generator=generator).double()
sequence = torch.randn(1, 6, 8, dtype=torch.float64, generator=generator)
weights = {name: parameter.detach() for name, parameter in titans.named_parameters()}


def column(name):
    """Head 0's initial state of a memory layer as W (d_out, d_in): the row state transposed."""
    return weights[name][0].T


initial = {"k": [column("key_memory_first"), column("key_memory_second")],
           "v": [column("value_memory_first"), column("value_memory_second")],
           "η": [column("lr_memory")], "α": [column("retention_memory")],
           "memory": [column("main_memory_first"), column("main_memory_second")]}


def apply(memory, z):
    """M(z): z + W_2 silu(W_1 z) for an MLP memory (A-eq 89), w · z for M_η and M_α."""
    if len(memory) == 1:
        return memory[0] @ z
    return z + memory[1] @ F.silu(memory[0] @ z)


def write(weight, weight_0, layer_input, target, eta, alpha):
    """DGD towards ``target`` (grad_y = −u), retention α on the in-context change W − W_0."""
    shifted = target - weight_0 @ layer_input
    return weight_0 + selfmod.dgd_step(weight - weight_0, layer_input, -shifted, eta,
                                       retention=alpha)


def token_step(running, snapshot, token):
    """One token: keys, values, η, α and targets from ``snapshot``, writes into ``running``."""
    x_t = weights["input_projection"].T @ token
    q_t = F.normalize(weights["query_projection"].T @ token, dim=0)
    k_t = F.normalize(apply(snapshot["k"], x_t), dim=0)
    v_t = F.normalize(apply(snapshot["v"], x_t), dim=0)
    eta = F.softplus(apply(snapshot["η"], x_t)[0] + weights["lr_bias"].flatten()[0])
    alpha = torch.sigmoid(apply(snapshot["α"], x_t)[0] + weights["retention_bias"].flatten()[0])
    new = {}
    for name, memory in snapshot.items():
        target = apply(memory, v_t)                          # v̂ = M(v_t): a fixed inner target
        if len(memory) == 1:                                  # M_η, M_α: w · k_t → v̂
            new[name] = [write(running[name][0], initial[name][0], k_t, target, eta, alpha)]
        else:                                                 # W_2 at input silu(W_1 k_t)
            hidden = F.silu(memory[0] @ k_t)
            new[name] = [running[name][0],
                         write(running[name][1], initial[name][1], hidden, target - k_t, eta,
                               alpha)]
    read = apply(new["memory"], q_t)                          # o_t after token t's write
    return new, weights["output_projection"].T @ read, (eta, alpha)


state, by_hand, (eta, alpha) = token_step(initial, initial, sequence[0, 0])
reference = selfmod.reference_self_modifying_titans(titans, sequence[:, :1])[0, 0]
fast_form, _ = titans(sequence[:, :1])
print(f"token 0: η = {eta:.3f}, α = {alpha:.3f}")
print(f"max |by hand − reference loop| = {(by_hand - reference).abs().max():.1e}")
print(f"max |by hand − fast form|      = {(by_hand - fast_form[0, 0]).abs().max():.1e}")
assert (by_hand - reference).abs().max() < 1e-12
assert (by_hand - fast_form[0, 0]).abs().max() < 1e-10
for name in ("k", "memory"):
    change = state[name][1] - initial[name][1]
    rank = torch.linalg.matrix_rank(change, atol=1e-12).item()
    print(f"M_{name}: rank of the first write {rank}, "
          f"‖W_2 − W_2,0‖ = {change.norm():.3f}")

# %% [markdown]
# Each write is rank 1 (one key per token), and every memory wrote itself: the k memory changed
# the map that will produce the next keys.
#
# ### 3.3 · One chunk by hand
#
# Token by token the rule is sequential: the keys of token $t + 1$ come from $M_k$ after token
# $t$'s write. To train on long sequences, the paper splits them into chunks (A-eq 90–93):
# **inside a chunk, every key, value, $\eta$, $\alpha$ and target comes from the state that ended
# the previous chunk** (the *snapshot*, the state at $C\lfloor (t-1)/C\rfloor$; the printed
# $C\lceil t/C\rceil$ would read the future), while the *running* state is still written token by
# token and read after each write. With $C = 3$, the six tokens are two chunks:

# %%
chunk = 3
running, snapshot, outputs = initial, initial, []
for t in range(6):
    running, y_t, _ = token_step(running, snapshot, sequence[0, t])
    outputs.append(y_t)
    if (t + 1) % chunk == 0:  # the chunk closes: the next chunk generates from this state
        snapshot = running
by_hand = torch.stack(outputs)
titans.chunk_size_memory = titans.chunk_size_others = chunk
reference = selfmod.reference_self_modifying_titans(titans, sequence, chunk, chunk)[0]
fast_form, _ = titans(sequence)
print(f"chunk 3, max |by hand − reference loop| = {(by_hand - reference).abs().max():.1e}")
print(f"chunk 3, max |by hand − fast form|      = {(by_hand - fast_form[0]).abs().max():.1e}")
assert (by_hand - fast_form[0]).abs().max() < 1e-10
token_by_token = selfmod.reference_self_modifying_titans(titans, sequence)[0]
print(f"chunk 3 vs chunk 1 (a different model): {(by_hand - token_by_token).abs().max():.1e}")

# %% [markdown]
# The chunk is part of the model (chunk 3 and chunk 1 give different outputs), like Titans'
# chunks in chapter 1. What it buys: given the snapshot, every token's key $h_t$, target $u_t$,
# step $\eta'_t$ and retention $\alpha_t$ are known *before* the chunk is written, so the $C$
# writes form a linear recurrence (row convention)
#
# $$S_t = (\alpha_t I - \eta'_t h_t h_t^\top)\, S_{t-1} + \eta'_t\, h_t u_t^\top.$$
#
# The fast form solves it for the whole chunk at once, `selfmod.gated_delta_chunk`: the gated
# delta rule in chapter 1's triangular (WY) form. Check it against the $C$ sequential writes:

# %%
size, width = 5, 4
chunk_keys = F.normalize(torch.randn(size, width, dtype=torch.float64, generator=generator),
                         dim=-1)
chunk_targets = torch.randn(size, width, dtype=torch.float64, generator=generator)
steps = 0.5 * torch.rand(size, dtype=torch.float64, generator=generator)
retention = 0.9 + 0.1 * torch.rand(size, dtype=torch.float64, generator=generator)
start = torch.randn(width, width, dtype=torch.float64, generator=generator)
sequential = start
for key, target, step, keep in zip(chunk_keys, chunk_targets, steps, retention, strict=True):
    sequential = (keep * torch.eye(width, dtype=torch.float64)
                  - step * torch.outer(key, key)) @ sequential \
        + step * torch.outer(key, target)
at_once, _ = selfmod.gated_delta_chunk(start, chunk_keys, chunk_targets, steps, retention.log())
print(f"max |one call − {size} sequential writes| = {(at_once - sequential).abs().max():.1e}")
assert (at_once - sequential).abs().max() < 1e-12

# %% [markdown]
# ### 3.4 · The fast form and its choices
#
# `SelfModifyingTitans` runs the generator memories (k, v, η, α) with one chunk size and the
# main memory with another (A §8.2: "two chunk sizes"), carries snapshots and running states
# across calls (a stream cut anywhere equals one call), and keeps the never-written first layers
# out of the chunk loop. The choices the paper leaves open (all in `nlbook.selfmod`'s docstring):
#
# | open choice | made here | why |
# |---|---|---|
# | L2 vs dot-product | proximal L2 step to $\hat v$ (A-eq 92) | A-eq 88/93 erase twice (§ 1) |
# | rank-1 term on | the written layer, own input | see next row |
# | layer written | MLP output layer; linear $M_\eta$, $M_\alpha$ | 1st layer diverged (chunk 8) |
# | $\eta$ activation / range | softplus, $(0, \infty)$ | $\eta'\lVert x\rVert^2 < 1$ anyway |
# | $\alpha$ activation / range | sigmoid, $(0, 1)$, 0.95 at init | erase eigenvalue in $(-1, 1)$ |
# | what $\alpha$ retains | the in-context change $W - W_0$ | $\alpha W$ collapsed to identity |
# | stop-gradient on $\hat v$ | inner: fixed target; outer: none | grads reach every init |
# | momentum | none (A-eq 88 has none) | chunk = exact gated delta rule |
# | $q, k, v$ | $q$ fixed; $q, k, v$ ℓ2-normalised | raw $v$: gain × $\lVert v\rVert$ per write |
# | chunk sizes | 32 main, 8 others; HopeBlock: its own | the paper gives none |
#
# **Check:** with two different chunk sizes, a stream cut in the middle of a chunk equals one
# call.

# %%
titans.chunk_size_memory, titans.chunk_size_others = 4, 2
first_part, carried = titans(sequence[:, :3])
second_part, carried = titans(sequence[:, 3:], carried)
whole, _ = titans(sequence)
print(f"split at 3 (mid-chunk): max difference = "
      f"{(torch.cat([first_part, second_part], 1) - whole).abs().max():.2e}")

# %% [markdown]
# ### Experiment: watch every memory change within one context
#
# We stream a sequence one token at a time (exact, as just checked) and record $\eta_t$,
# $\alpha_t$ and the size of each memory's in-context change $\lVert S_t - S_0\rVert$.

# %%
length = smoke(200, 40)
watch = selfmod.SelfModifyingTitans(32, heads=2, chunk_size_memory=8, chunk_size_others=4,
                                    generator=generator)
sequence = torch.randn(1, length, 32, generator=generator)
start = watch.initial_state(1)
names = {"k": ("generator_second", 0), "v": ("generator_second", 1),
         "memory": ("memory_second", None)}
track = {name: [] for name in [*names, "η", "α"]}
rates, retentions, state = [], [], None
with torch.no_grad():
    for t in range(length):
        _, state, trace = watch(sequence[:, t:t + 1], state, return_trace=True)
        rates.append(trace["lr"][0, 0, 0].item())
        retentions.append(trace["retention"][0, 0, 0].item())
        for name, (field, index) in names.items():
            now, then = getattr(state, field)[0, 0], getattr(start, field)[0, 0]
            change = now - then if index is None else now[index] - then[index]
            track[name].append(change.norm().item())
        for name, column_index in (("η", -2), ("α", -1)):
            change = (state.generator_first[0, 0, :, column_index]
                      - start.generator_first[0, 0, :, column_index])
            track[name].append(change.norm().item())
print({name: round(values[-1], 4) for name, values in track.items()})
print(f"η_t over the context: {min(rates):.3f} … {max(rates):.3f};  "
      f"α_t: {min(retentions):.4f} … {max(retentions):.4f}")
viz.plot_selfmod_trace(torch.tensor(rates), torch.tensor(retentions),
                       {name: torch.tensor(v) for name, v in track.items()}, step=length - 1)

# %% [markdown]
# Every memory moves within the context although nothing has been trained yet (the initial
# states are random). $\eta_t$ varies token by token; $\alpha_t$ barely does (printed range):
# $M_\alpha$ starts with small weights (std $0.1/\sqrt d$) behind a bias of 3, so before training
# $\mathrm{sigmoid}(M_\alpha(x) + 3)$ stays near 0.95 whatever the token, and only training
# (chapter 5) can make the retention depend on the input. The changes saturate: retention
# forgets the in-context change back towards the meta-learned state at rate $\alpha$.
#
# ## 4 · Explorer
#
# Drag (or play) the token slider to watch $\eta_t$, $\alpha_t$ and each memory's change build
# up.

# %%
widgets.explore(
    viz.plot_selfmod_trace,
    {"step": widgets.int_slider(length // 2, 0, length - 1, 1, "token")},
    fixed={"lr": torch.tensor(rates), "retention": torch.tensor(retentions),
           "changes": {name: torch.tensor(v) for name, v in track.items()}},
    play="step",
)

# %% [markdown]
# ## 5 · Exercises
#
# Two kinds. **Predict, then run:** decide what will happen and write your letter in
# `prediction` *before* you run the cell; the cell runs the experiment and `ex.answer` says
# whether you were right and why. **Implement:** write the function in its cell and run it; the
# checker names what is wrong (it reports "not done yet" while the stub is untouched). Stuck?
# `ex.solution("name")` prints a solution; try your own first.
#
# **Question 1 · an enormous step (predict, then run).** Take one DGD step with
# $\eta = 10^6$ on an input $x$ with $\lVert x\rVert = 2$. What does the new layer answer for
# that input, $W_{\text{new}}\, x$?
#
# (a) about $W x$: a step that big does nothing · (b) something huge: the weights blow up ·
# (c) exactly the target $u = -\nabla_y L$ · (d) zero

# %%
prediction = None  # your prediction: "a", "b", "c" or "d"

W_before = torch.randn(5, 4, dtype=torch.float64, generator=generator)
x_two = torch.randn(4, dtype=torch.float64, generator=generator)
x_two = 2.0 * x_two / x_two.norm()  # ‖x‖ = 2
grad_y_here = torch.randn(5, dtype=torch.float64, generator=generator)
W_after = selfmod.dgd_step(W_before, x_two, grad_y_here, lr=1e6)
print("W_new x     :", (W_after @ x_two).numpy().round(4))
print("u = −∇_y L  :", (-grad_y_here).numpy().round(4))
print(f"‖W_new − W‖ = {(W_after - W_before).norm():.3f}; a GD step of the same η would move W by "
      f"{1e6 * torch.outer(grad_y_here, x_two).norm():.3g}")
ex.answer("huge_step", prediction)

# %% [markdown]
# **Question 2 · rank 1 per token (predict, then run).** A rank-1 self-modifying layer with 8
# inputs and 6 outputs (section 2) writes its weights at each of 10 tokens. What is the rank
# of its total change $W_{10} - W_0$?
#
# (a) 1 · (b) 6 · (c) 10 · (d) 0

# %%
prediction = None  # "a", "b", "c" or "d"

layer = selfmod.SelfModifyingLinear(8, 6, rank=1, generator=generator).double()
_, history = layer(torch.randn(1, 10, 8, dtype=torch.float64, generator=generator),
                   return_weights=True)  # history[0, t]: the weights after token t + 1
weights = torch.cat([layer.initial_weight.detach()[None], history[0]])  # W_0, W_1, ..., W_10
print("rank of each token's change:",
      torch.linalg.matrix_rank(weights[1:] - weights[:-1], atol=1e-9).tolist())
print("rank of W_10 − W_0:", torch.linalg.matrix_rank(weights[-1] - weights[0]).item())
ex.answer("rank", prediction)

# %% [markdown]
# **Exercise 1 · the effective step (implement).** Write the effective step $\eta'$ of DGD for a
# step size `lr` and an input `x` (a 1-D tensor), as a float.

# %%
def effective_step(lr, x):
    raise NotImplementedError("your code here")


ex.check_effective_step(effective_step)

# %% [markdown]
# **Exercise 2 · one DGD step (implement).** Write `dgd_step(W, x, grad_y, lr)`: one step of
# A-eq 57 for `W` (d_out, d_in), `x` (d_in,) and `grad_y` (d_out,), returning the new `W`.

# %%
def dgd_step(W, x, grad_y, lr):
    raise NotImplementedError("your code here")


ex.check_dgd_step(dgd_step)

# %% [markdown]
# ## Summary
#
# - DGD is the *exact* proximal step of an L2 regression: GD plus an input-dependent erase,
#   with $\eta' = \eta/(1 + \eta\lVert x\rVert^2)$ for any $\lVert x\rVert$ (the printed
#   $\eta/(1+\eta)$ needs $\lVert x\rVert = 1$; the NeurIPS $W(I - x x^\top)$ is a typo).
#   Regressing onto a target $u = y$, its error $\lVert W - W^*\rVert$ never grows, for every
#   $\eta$, on correlated inputs where GD diverges; with a linear memory it is the delta rule.
# - A-eq 57 run as printed, with $u = -\nabla_y L$, erases twice and settles at $W x = y/2$
#   (relative error 0.25–0.35 against 0.002): it stores the surprise, not the target. HOPE's
#   memories, which have targets $\hat v$, use the target form.
# - A self-modifying layer writes rank-k changes of its own weights from its input.
# - Self-modifying Titans makes $k$, $v$, $\eta$ and $\alpha$ memories that generate their own
#   targets and learn in context; one token is five DGD writes and a read, one chunk takes every
#   key and target from the state that ended the previous chunk (a linear recurrence, solved at
#   once), and the outer loss reaches every memory's initial state because no write is detached.
#
# **Next:** chapter 5 puts `SelfModifyingTitans` in front of a Continuum Memory System: HOPE.
#
# **Where this deviates from the paper:** DGD regresses onto the target value ($u = y$,
# $u = \hat v$) rather than $u = -\nabla_y L$ (both are shown above); the in-context write goes to
# the output layer of each MLP memory (the paper does not say which layer); retention $\alpha$
# acts on the in-context change $W - W_0$ rather than on $W$ (A-eq 88's $\alpha W$ collapses the
# memories to the identity in our runs); $v$ is ℓ2-normalised; no momentum; the read uses the
# state after the token's own write.
