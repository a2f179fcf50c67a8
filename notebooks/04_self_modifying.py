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
# with DGD: **self-modifying Titans**, the first half of the HOPE block (chapter 5).
#
# **Learning objectives.** After this chapter you can
# 1. derive DGD from the proximal L2 step with Sherman–Morrison, and spot the NeurIPS typo;
# 2. say why the erase term helps on correlated inputs (and measure it);
# 3. write a self-modifying layer that changes its own weights (rank 1 and rank k);
# 4. run self-modifying Titans step by step and watch every memory, $\eta_t$ and $\alpha_t$
#    evolve.
#
# **Time:** about 45 minutes. **Prerequisites:** chapter 1 (delta rule, Titans).

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

import nlbook.viz as viz
from nlbook import selfmod, smoke, widgets
from nlbook.exercises import self_modifying as ex

# %% [markdown]
# ## 1 · From gradient descent to DGD
#
# **Idea.** For a linear layer $y = W x$, a GD step is one proximal step on a *dot-product*
# objective, $\arg\min_W \langle W x, \nabla_y L\rangle + \lVert W - W_t\rVert^2/(2\eta)$: the
# answer $W x_t$ does not matter, only the gradient. DGD instead regresses the layer's output
# onto the target $u = -\nabla_y L$ (A-eq 56):
#
# $$W_{t+1} = \arg\min_W \tfrac12\lVert W x_t - u_t\rVert^2 + \frac{\lVert W - W_t\rVert^2}{2\eta}
#   = (W_t + \eta\, u x^\top)(I + \eta\, x x^\top)^{-1}.$$
#
# **Sherman–Morrison:** $(I + \eta\, x x^\top)^{-1} = I - \eta' x x^\top$ with
# $\boldsymbol{\eta' = \eta / (1 + \eta\lVert x\rVert^2)}$, so
#
# $$W_{t+1} = W_t (I - \eta' x x^\top) - \eta'\, \nabla_y L\, x^\top
#   \qquad\text{(arXiv A-eq 57).}$$
#
# The first term *erases* what $W$ stores along $x$ before the second writes.

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
# writes $\eta' = \eta/(1 + \eta)$, which is right only for $\lVert x\rVert = 1$. Several public
# repositories copied one of the two (reference notes §8 item 2).

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
# ### Why the erase term helps on correlated inputs
#
# Online linear regression, one pair $(x_t, y_t = W^* x_t)$ per step, with inputs that drift
# slowly ($x_t = \rho\, x_{t-1} + \sqrt{1-\rho^2}\, \xi_t$, $\rho = 0.95$,
# $\lVert x\rVert^2 \approx d = 16$). GD adds $\eta\, (y - W x) x^\top$; DGD takes the exact
# proximal step (target $u = y_t$), which first removes the old answer along $x_t$.

# %%
stream = selfmod.correlated_stream_experiment(length=smoke(600, 150), dim=16, correlation=0.95,
                                              lrs=(0.01, 0.05, 0.1, 1.0, 10.0))
for rule in ("gd", "dgd"):
    finals = {lr: float(errors[-50:].mean()) for lr, errors in stream[rule].items()}
    print(rule.upper(), " ".join(f"η={lr:g}: {err:.3g}" for lr, err in finals.items()))
viz.plot_gd_vs_dgd_stream(stream)

# %% [markdown]
# What we measure (mean relative error over the last 50 steps, printed above): GD diverges as
# soon as $\eta\lVert x\rVert^2 > 2$ ($\eta \ge 0.1$ here), because correlated inputs push the
# same direction again and again; DGD is stable for *every* $\eta$, since
# $\eta'\lVert x\rVert^2 < 1$ always. At its best step size GD is about
# as good as DGD: the gain is robustness, not a lower floor. DGD on one linear layer is the
# normalised LMS / Longhorn step.
#
# **DGD with a linear memory and target $v$ is the delta rule** with step $\beta = \eta'$
# (reference §3.2).
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
# A-eq 86–89: every projection except q becomes a memory that is written in context.
#
# - $k_t = M_k(x_t)$, $v_t = M_v(x_t)$, $\eta_t = \mathrm{softplus}(M_\eta(x_t))$,
#   $\alpha_t = \mathrm{sigmoid}(M_\alpha(x_t))$; $q$ fixed;
# - each memory makes its **own target** $\hat v_\square = M_\square(v_t)$ and is trained on
#   $(k_t, \hat v_\square)$;
# - each is updated by DGD with retention (A-eq 88); the main memory is read, $o_t = M(q_t)$;
# - chunkwise (A-eq 90–93): inside a chunk everything comes from the state that ended the
#   *previous* chunk ($C\lfloor (t-1)/C\rfloor$; the printed $C\lceil t/C\rceil$ would read the
#   future); the linear erase
#   recurrence inside the chunk is solved exactly. Two chunk sizes: one for the main memory,
#   one for the others.
#
# Open choices (the paper leaves them to us; all in `nlbook.selfmod`'s docstring):
#
# | open choice | made here | why |
# |---|---|---|
# | L2 vs dot-product | exact proximal L2 step (A-eq 92 form) | A-eq 93 erases twice |
# | rank-1 term on | the written layer, own input | see next row |
# | layer written | MLP output layer; linear $M_\eta,M_\alpha$ | 1st layer diverged (chunk 8) |
# | $\eta$ activation / range | softplus, $(0, \infty)$ | $\eta'\lVert x\rVert^2 < 1$ anyway |
# | $\alpha$ activation / range | sigmoid, $(0,1)$, ≈ 0.95 at init | erase eigenvalue in $(-1,1)$ |
# | what $\alpha$ retains | the in-context change $W - W_0$ | $\alpha W$ collapsed to identity |
# | stop-gradient on $\hat v$ | inner: fixed target; outer: none | grads reach every init |
# | momentum | none (A-eq 88 has none) | chunk = exact gated delta rule |
# | $q, k, v$ | $q$ fixed; $q, k, v$ ℓ2-normalised | raw $v$: gain × $\lVert v\rVert$ per write |
# | chunk sizes | 32 (main), 8 (others) by default | [KMC] uses 64/8 |
#
# **Check:** with both chunk sizes 1 the fast path equals an independent float64 token loop; a
# stream cut anywhere equals one call.

# %%
titans = selfmod.SelfModifyingTitans(16, heads=2, chunk_size_memory=1, chunk_size_others=1,
                                     generator=generator).double()
tokens = torch.randn(2, 12, 16, dtype=torch.float64, generator=generator)
fast_out, _ = titans(tokens)
slow_out = selfmod.reference_self_modifying_titans(titans, tokens)
print(f"chunk sizes 1: max |fast - token loop| = {(fast_out - slow_out).abs().max():.2e}")
titans.chunk_size_memory, titans.chunk_size_others = 8, 4
first_part, state = titans(tokens[:, :5])
second_part, state = titans(tokens[:, 5:], state)
whole, _ = titans(tokens)
print(f"split at 5 (mid-chunk): max difference = "
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
        for name, column in (("η", -2), ("α", -1)):
            change = state.generator_first[0, 0, :, column] - start.generator_first[0, 0, :, column]
            track[name].append(change.norm().item())
print({name: round(values[-1], 4) for name, values in track.items()})
viz.plot_selfmod_trace(torch.tensor(rates), torch.tensor(retentions),
                       {name: torch.tensor(v) for name, v in track.items()}, step=length - 1)

# %% [markdown]
# Every memory moves within the context, and $\eta_t$, $\alpha_t$ vary token by token although
# nothing has been trained yet (the initial states are random). The changes saturate:
# retention forgets the in-context change back towards the meta-learned state at rate
# $\alpha$.
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
#   $\eta/(1+\eta)$ needs $\lVert x\rVert = 1$; the NeurIPS $W(I - x x^\top)$ is a typo). It keeps
#   online learning stable on correlated inputs for every $\eta$; with a linear memory it is
#   the delta rule.
# - A self-modifying layer writes rank-k changes of its own weights from its input.
# - Self-modifying Titans makes $k$, $v$, $\eta$ and $\alpha$ memories that generate their own
#   targets and learn in context; chunking uses the state that ended the previous chunk, and
#   the outer loss reaches every memory's initial state because no write is detached.
#
# **Next:** chapter 5 puts `SelfModifyingTitans` in front of a Continuum Memory System: HOPE.
#
# **Where this deviates from the paper:** the in-context write goes to the output layer of each
# MLP memory (the paper does not say which layer); retention $\alpha$ acts on the in-context
# change $W - W_0$ rather than on $W$ (A-eq 88's $\alpha W$ collapses the memories to the identity
# in our runs); $v$ is ℓ2-normalised; no momentum; the read uses the state after the token's own
# write.
