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
# # Chapter 1 · Associative memory: every sequence layer is a tiny optimiser
#
# Nested Learning starts from one observation: a sequence layer that *stores* tokens is
# solving an optimisation problem, one gradient step per token. Linear attention, DeltaNet,
# Titans and even softmax attention are the same object, an **associative memory**, that differ
# only in the *objective* they minimise and the *optimiser* they use on it. Once you see this,
# "architecture" and "optimiser" stop being different things, and the rest of the course
# (optimisers as memories, multi-timescale memories, self-modifying memories, HOPE) follows.
# In the language of chapter 0, these memories are the fastest **level** of a model: they are
# written at every token, while the weights that produce their keys and values change only once
# per training step. Notation: [glossary](GLOSSARY.md).
#
# **Learning objectives.** After this notebook you can
# 1. write a memory as `argmin` of an inner objective and derive its update rule;
# 2. explain why linear attention is *Hebbian* (dot-product objective) and the delta rule is
#    *error-correcting* (L2 objective), and predict which wins on key overwrite and on capacity;
# 3. read gates (β, α) and Titans' momentum ("surprise") as optimiser hyper-parameters;
# 4. see softmax attention as the exact, non-parametric solution of an L2 objective;
# 5. check that the chunkwise (parallel) form computes exactly what the token loop computes.
#
# **Time:** about 70 minutes of study (the code runs in under a minute on a laptop CPU).
#
# **Prerequisites:** matrix products, gradients of simple functions, PyTorch tensors.

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

from nlbook import memory, recall, viz, widgets
from nlbook.bench import time_call

torch.set_default_dtype(torch.float64)  # this chapter checks identities to 1e-12
generator = torch.Generator().manual_seed(0)

# %% [markdown]
# ## 1. A memory is the solution of an inner problem
#
# Given keys $k_1,\dots,k_t$ and values $v_1,\dots,v_t$, an associative memory is a map
# $M$ that sends each key to its value. Nested Learning (Def. 1, arXiv eq. 6) defines it as
# the solution of an **inner objective** $\tilde{\mathcal L}$:
#
# $$M^\star = \arg\min_M \; \tilde{\mathcal L}\big(M(K);\, V\big).$$
#
# A recurrent layer cannot afford to solve this exactly at every token, so it takes **one
# gradient step per token** from the previous memory. Throughout the course the memory is a
# matrix $S \in \mathbb R^{d_k\times d_v}$ and it is read with $o_t = S_t^\top q_t$ (after the
# write at step $t$; the convention of flash-linear-attention). Every function in
# `nlbook.memory` takes `q, k` of shape (B, H, T, d_k), `v` of shape (B, H, T, d_v), per-token
# gates of shape (B, H, T), and returns `(outputs, final_state)`.
#
# ## 2. Linear attention = one gradient step on a dot-product objective
#
# Take $\tilde{\mathcal L}_t(S) = -\langle S^\top k_t, v_t\rangle$ ("make the read of $k_t$
# point along $v_t$"). Its gradient is $-k_t v_t^\top$, *whatever S holds*, so one step of size
# 1 gives the **Hebbian** rule (arXiv eq. 64):
#
# $$S_t = S_{t-1} + k_t v_t^\top, \qquad o_t = S_t^\top q_t .$$
#
# That is exactly (causal, unnormalised) linear attention: $o_t = \sum_{i\le t} (q_t^\top
# k_i)\, v_i$. Let us check it against `torch.autograd` and against the attention form.

# %%
B, H, T, d_k, d_v = 1, 1, 12, 8, 8
q = torch.randn(B, H, T, d_k, generator=generator)
k = F.normalize(torch.randn(B, H, T, d_k, generator=generator), dim=-1)
v = torch.randn(B, H, T, d_v, generator=generator)

outputs, final_state = memory.linear_attention(q, k, v)

# (a) One gradient step on -<Sᵀk, v>, computed by autograd, token by token.
state = torch.zeros(d_k, d_v)
for t in range(T):
    state = state.detach().requires_grad_()
    inner_loss = -(state.T @ k[0, 0, t]) @ v[0, 0, t]
    (gradient,) = torch.autograd.grad(inner_loss, state)
    state = state - 1.0 * gradient
print("autograd GD steps vs linear_attention state:",
      (state - final_state[0, 0]).abs().max().item())

# (b) The attention form: o_t = Σ_{i≤t} (q_tᵀ k_i) v_i, i.e. (Q Kᵀ ⊙ causal mask) V.
causal = torch.ones(T, T).tril()
attention_form = (q[0, 0] @ k[0, 0].T * causal) @ v[0, 0]
print("attention form vs recurrent form:",
      (attention_form - outputs[0, 0]).abs().max().item())
assert torch.allclose(attention_form, outputs[0, 0])

# %% [markdown]
# ## 3. The delta rule = one gradient step on L2 regression
#
# Now ask the memory to *regress* values: $\tilde{\mathcal L}_t(S) = \tfrac12\|S^\top k_t -
# v_t\|^2$. The gradient $k_t\,(S^\top k_t - v_t)^\top$ depends on what is stored, and one
# step of size $\beta_t$ gives the **delta rule** (DeltaNet; arXiv eq. 65):
#
# $$S_t = S_{t-1} - \beta_t k_t (S_{t-1}^\top k_t - v_t)^\top
#       = (I - \beta_t k_t k_t^\top)\, S_{t-1} + \beta_t k_t v_t^\top .$$
#
# The factor $(I-\beta_t k_t k_t^\top)$ **erases** what the memory currently returns for
# $k_t$ before writing $v_t$. With a unit key and $\beta_t=1$ the old value is replaced
# exactly. Same check with autograd:

# %%
beta = torch.rand(B, H, T, generator=generator)
outputs, final_state = memory.delta_rule(q, k, v, beta)

state = torch.zeros(d_k, d_v)
for t in range(T):
    state = state.detach().requires_grad_()
    inner_loss = 0.5 * (state.T @ k[0, 0, t] - v[0, 0, t]).square().sum()
    (gradient,) = torch.autograd.grad(inner_loss, state)
    state = state - beta[0, 0, t] * gradient
print("autograd GD steps vs delta_rule state:", (state - final_state[0, 0]).abs().max().item())
assert torch.allclose(state, final_state[0, 0])

# %% [markdown]
# ## 4. Gates are optimiser hyper-parameters; forgetting is weight decay
#
# Adding a retention term $\frac{1-\alpha_t}{2}\|S\|^2$ (weight decay on the memory) scales
# the old state by $\alpha_t \in (0,1]$ before the step: **gated** linear attention
# ($S_t=\alpha_t S_{t-1}+k_tv_t^\top$; RetNet, GLA, Mamba-2) and the **gated delta rule**
# ($S_t=\alpha_t(I-\beta_tk_tk_t^\top)S_{t-1}+\beta_tk_tv_t^\top$; Gated DeltaNet). In this
# course's delta rule, α **retains** (1 keeps everything): NL's convention. Titans, below,
# uses α for **forgetting**; the docstrings always say which.
#
# ## 5. Titans: a memory with momentum ("surprise")
#
# Titans keeps the L2 objective but optimises it with **momentum and weight decay** (Titans
# eq. 13-14). In Titans' letters, θ is the learning rate, η the momentum and α the forget rate:
#
# $$S_t = \eta_t S_{t-1} - \theta_t \nabla\ell(M_{t-1}; k_t, v_t), \qquad
#   M_t = (1-\alpha_t) M_{t-1} + S_t .$$
#
# $S_t$ is the "surprise": the past surprise carried by momentum plus the momentary surprise
# (the gradient). With η = 0 and α = 0 it *is* the delta rule with β = θ:

# %%
zeros = torch.zeros(B, H, T)
titans_out, _ = memory.titans_memory(q, k, v, beta, zeros, zeros, chunk_size=None)
delta_out, _ = memory.delta_rule(q, k, v, beta)
print("Titans(η=0, α=0) vs delta rule:", (titans_out - delta_out).abs().max().item())

# %% [markdown]
# Titans trains fast by taking **every gradient of a chunk at the state that entered the
# chunk** (Titans §3.2). That makes a chunk parallel, but it is a *different model* from the
# exact online rule, unlike the delta rule's chunkwise form (section 9), which is exact. The
# difference is not small when learning rates are large:

# %%
ones = torch.ones(B, H, T)
lr, momentum_gate, forget = 0.5 * ones, 0.8 * ones, 0.02 * ones
exact, _ = memory.titans_memory(q, k, v, lr, momentum_gate, forget, chunk_size=None)
for chunk_size in (1, 4, 12):
    chunked, _ = memory.titans_memory(q, k, v, lr, momentum_gate, forget, chunk_size=chunk_size)
    frozen_loop, _ = memory.reference_titans_memory(q, k, v, lr, momentum_gate, forget,
                                                    frozen_chunk_size=chunk_size)
    print(f"C={chunk_size:2d}: |chunked - frozen-gradient loop| = "
          f"{(chunked - frozen_loop).abs().max().item():.1e}   "
          f"|chunked - exact online| = {(chunked - exact).abs().max().item():.3f}")

# %% [markdown]
# ## 6. Softmax attention: the non-parametric solution
#
# Instead of one gradient step, solve a *weighted* L2 problem exactly for each query
# (arXiv eq. 62-63): $m^\star(q)=\arg\min_m\sum_{i\le t}s(k_i,q)\|v_i-m\|^2$ with
# $s(k,q)=e^{q^\top k/\sqrt d}$. The answer is the Nadaraya-Watson average
# $\sum_i \mathrm{softmax}_i(q^\top k_i/\sqrt d)\,v_i$: softmax attention. It never compresses:
# it caches every token (an update frequency of "infinity"), which is why its memory grows
# with the context. `memory.softmax_attention` is PyTorch's `scaled_dot_product_attention`:

# %%
sdpa = memory.softmax_attention(q, k, v)
written_out = memory.softmax_attention_reference(q, k, v)
print("scaled_dot_product_attention vs Nadaraya-Watson:", (sdpa - written_out).abs().max().item())

# %% [markdown]
# ## 7. Experiment: which objective stores better? It depends on the regime
#
# Two recall tasks of our own (not from the papers), decoded by picking the stored value closest
# (in cosine) to the read $S^\top k$. Keys and values are random unit vectors in $d = 64$;
# `nlbook.recall` builds the streams and the rules with the gates printed below.
#
# **E1, key overwrite.** 16 keys, 256 writes, each giving a random key a *fresh* value. Ask
# every key for its **latest** value. Hebbian memory sums all 16 or so stale values per key;
# the delta rule erases them.

# %%
seeds = list(range(nlbook.smoke(8, 2)))
overwrite = recall.compare_rules(
    lambda seed: recall.key_overwrite_stream(16, 256, 64, seed=seed), seeds)
print(f"E1 key overwrite (d=64, 16 keys, 256 writes), mean over {len(seeds)} seeds")
for label, (accuracy, error) in overwrite.items():
    print(f"  {label:45s} recall {accuracy:5.2f}   read-out MSE {error:7.3f}")

# %% [markdown]
# **E2, capacity.** N *distinct* keys, each written once. Now there is nothing to overwrite,
# and the picture flips: random keys in 64 dimensions are nearly orthogonal, so the Hebbian
# sum's cross-talk stays small, while the one-pass delta rule, once N > d, erases part of older
# directions with every write: it is **recency-biased**. The least-squares memory (the best
# linear memory in hindsight) shows what a single matrix could hold.

# %%
pair_counts = nlbook.smoke([16, 32, 64, 96, 128, 192, 256], [32, 128])
capacity_rules = {label: recall.RULES[label] for label in
                  ["Hebbian (linear attention)", "delta rule, β = 1", "delta rule, β = 0.5",
                   "Titans: momentum 0.9, lr 0.1, forget 0"]}
capacity_rules["least squares (hindsight)"] = {"kind": "least squares"}
capacity = {label: [] for label in capacity_rules}
for pair_count in pair_counts:
    table = recall.compare_rules(
        lambda seed, n=pair_count: recall.capacity_stream(n, 64, seed=seed), seeds,
        capacity_rules)
    for label, (accuracy, _) in table.items():
        capacity[label].append(accuracy)
viz.plot_recall_comparison(pair_counts, capacity, xlabel="distinct pairs N (d = 64)",
                           title="E2: capacity with distinct random keys", reference_x=64)

# %% [markdown]
# **What we measured, and in which regime it holds.** On key overwrite the L2 objective wins
# outright (delta rule ≈ 1.00 against ≈ 0.10 for Hebbian memory). On capacity with distinct
# random keys and nearest-value decoding, the Hebbian memory is *not* worse: it keeps ≈ 0.99
# recall at N = 2d, where the one-pass delta rule with β = 1 has dropped to about half.
# The paper's argument for L2 objectives is about overwriting and correcting, not about raw
# capacity with random keys. A notebook that only ran E2 would "refute" the paper by
# accident; one that only ran E1 would overclaim. Read-out MSE (printed in E1) tells the same
# story more sharply, and one thing more: the Hebbian read is off by ≈ 19 (it returns the sum
# of every value ever written to the key, plus cross-talk) against ≈ 0.2 for the delta rule
# with β = 1, and that 0.2 shows what recall hides: even the delta rule's read is not exact,
# because 16 random keys in 64 dimensions are not orthogonal, so the other keys leak into every
# read. Recall only asks whether the right value is the nearest one; both numbers are reported.
#
# ## 8. Explorer: watch a memory fill up
#
# Pick a rule and its gates, then scrub through the E1 stream. Left: the memory matrix after
# that token. Middle: for every key, the distance between what the memory returns and that
# key's latest value (orange: the key just written). Right: the fraction of keys written so
# far that are recalled correctly.

# %%
stream = recall.key_overwrite_stream(n_keys=8, n_writes=nlbook.smoke(96, 24), dim=16, seed=1)


def explore_memory(rule: str, gate: float, step: int):
    """The widget callback: run one rule on the stream and draw token `step`."""
    settings = {"Hebbian": ("linear", {"decay": gate}), "delta": ("delta", {"beta": gate}),
                "Titans": ("titans", {"lr": gate, "momentum": 0.5, "forget": 0.01})}[rule]
    states = recall.run_rule(stream, settings[0], **settings[1])
    trace = recall.recall_trace(stream, states)
    return viz.plot_memory_explorer(states, trace["error"], trace["recall"], step,
                                    key_ids=stream.key_ids,
                                    title=f"{rule} (gate {gate:.2f}) on 8 keys in d = 16")


explore_memory("delta", 1.0, step=20)  # called once directly: a broken plot fails here

# %%
widgets.explore(
    explore_memory,
    {"rule": widgets.dropdown(["Hebbian", "delta", "Titans"], "delta", "rule"),
     "gate": widgets.float_slider(1.0, 0.05, 1.0, 0.05, "decay / β / lr"),
     "step": widgets.int_slider(20, 0, stream.keys.shape[0] - 1, description="token")},
    play="step",
)

# %% [markdown]
# ## 9. The chunkwise form: same numbers, far fewer sequential steps
#
# A token loop does $T$ small sequential updates, and autograd through it is slow. The
# **chunkwise** form splits the sequence into chunks of $C$ tokens, computes everything
# inside a chunk with matrix products and only loops over the $T/C$ chunks. For the delta
# rule it uses the WY representation of the product of the $(I-\beta k k^\top)$ factors
# (Bischof and Van Loan, 1987; the chunkwise DeltaNet algorithm of Yang et al., "Parallelizing
# Linear Transformers with the Delta Rule over Sequence Length", NeurIPS 2024). Write
# $K, V, Q$ for the chunk's keys, values and queries as rows (C × d), $\beta$ for its steps and
# $S_0$ for the state that enters the chunk:
#
# $$A=\mathrm{strict\_lower}(\mathrm{diag}(\beta)KK^\top),\quad
#   [W\,|\,U]=(I+A)^{-1}[\mathrm{diag}(\beta)K\,|\,\mathrm{diag}(\beta)V],\quad
#   U'=U-WS_0,$$
# $$O = QS_0 + (QK^\top\odot\text{causal})\,U', \qquad S = S_0 + K^\top U'.$$
#
# It is exact, not an approximation: in float64 it matches the loop to rounding error, for
# any chunk size and any $T$ (the last chunk is padded with tokens that change nothing).

# %%
shape = nlbook.smoke((16, 4, 256, 32), (2, 2, 64, 16))
q = torch.randn(*shape, generator=generator)
k = F.normalize(torch.randn(*shape, generator=generator), dim=-1)
v = torch.randn(*shape, generator=generator)
beta = torch.rand(shape[:3], generator=generator)
decay = 0.9 + 0.1 * torch.rand(shape[:3], generator=generator)
reference_out, reference_state = memory.delta_rule(q, k, v, beta, decay=decay)
for chunk_size in (1, 7, 16, 64):
    fast_out, fast_state = memory.delta_rule(q, k, v, beta, decay=decay, chunk_size=chunk_size)
    output_gap = (fast_out - reference_out).abs().max().item()
    state_gap = (fast_state - reference_state).abs().max().item()
    print(f"C = {chunk_size:2d}: max |Δ output| = {output_gap:.1e}, "
          f"max |Δ state| = {state_gap:.1e}")

# %% [markdown]
# How much faster? One forward + backward in float32 on one thread (the full benchmark is
# `python -m nlbook.bench memory`). The ratio, not the milliseconds, is the result to compare
# across machines.

# %%
def forward_backward(rule, chunk_size):
    inputs = [x.float().requires_grad_() for x in (q, k, v)]
    if rule == "linear attention":
        out, _ = memory.linear_attention(*inputs, decay=decay.float(), chunk_size=chunk_size)
    else:
        out, _ = memory.delta_rule(*inputs, beta.float(), decay=decay.float(),
                                   chunk_size=chunk_size)
    out.square().sum().backward()


labels = ["linear attention", "gated delta rule"]
loop_times = [time_call(lambda r=rule: forward_backward(r, None), repeats=3) for rule in labels]
chunk_times = [time_call(lambda r=rule: forward_backward(r, 16), repeats=3) for rule in labels]
viz.plot_speedups(labels, loop_times, chunk_times)

# %% [markdown]
# ## 10. Exercises
#
# Two kinds. **Predict, then run:** decide what will happen and write your letter in
# `prediction` *before* you run the cell; the cell runs the experiment and `ex.answer` says
# whether you were right and why. **Implement:** write the function in its cell and run it; the
# checker names what is wrong (it reports "not done yet" while the stub is untouched). Stuck?
# `ex.solution("name")` prints a solution; try your own first.
#
# **Question 1 · overwrite (predict, then run).** A unit key $k$ is written twice into an empty
# memory with $\beta = 1$ and no decay: first with the value $v_1$, then with $v_2$. What does
# each memory return for $k$, i.e. what is $S^\top k$?
#
# (a) both memories return $v_2$ · (b) the Hebbian memory returns $v_1 + v_2$, the delta rule
# $v_2$ · (c) the Hebbian memory returns $v_2$, the delta rule $v_1 + v_2$ · (d) both return
# $(v_1 + v_2)/2$

# %%
from nlbook.exercises import associative_memory as ex

prediction = None  # your prediction: "a", "b", "c" or "d"

unit_key = F.normalize(torch.randn(4, generator=generator), dim=0)
keys = unit_key.expand(1, 1, 2, 4).contiguous()  # the same key twice: (B, H, T, d_k)
values = torch.randn(1, 1, 2, 3, generator=generator)  # v₁, then v₂
_, hebbian_state = memory.linear_attention(keys, keys, values)
_, delta_state = memory.delta_rule(keys, keys, values, torch.ones(1, 1, 2))
print("v₁:", values[0, 0, 0].numpy().round(3), " v₂:", values[0, 0, 1].numpy().round(3))
print("Hebbian memory returns", (hebbian_state[0, 0].T @ unit_key).numpy().round(3))
print("delta rule returns    ", (delta_state[0, 0].T @ unit_key).numpy().round(3))
ex.answer("overwrite", prediction)

# %% [markdown]
# **Question 2 · half a step (predict, then run).** The delta rule with $\beta = 0.5$ writes the
# same pair $(k, v)$, with a unit key, twice into an empty memory. What does $S^\top k$ return
# after the second write?
#
# (a) $v$ · (b) $0.75\,v$ · (c) $0.5\,v$ · (d) $0.25\,v$

# %%
prediction = None  # "a", "b", "c" or "d"

same_value = values[:, :, :1].expand(1, 1, 2, 3).contiguous()  # v twice
_, half_state = memory.delta_rule(keys, keys, same_value, torch.full((1, 1, 2), 0.5))
print("Sᵀk ÷ v after two writes:", (half_state[0, 0].T @ unit_key / same_value[0, 0, 0])
      .numpy().round(4))
ex.answer("half_step", prediction)

# %% [markdown]
# **Exercise 1 · the gated delta rule (implement).** Write one step of section 4's gated delta
# rule for a single head: `delta_step(S, k, v, beta, decay)` with `S` of shape (d_k, d_v), `k`
# of shape (d_k,), `v` of shape (d_v,) and two floats, returning the new `S`.

# %%
def delta_step(S, k, v, beta, decay):
    raise NotImplementedError("your code here")


ex.check_delta_step(delta_step)

# %% [markdown]
# **Exercise 2 · Titans (implement).** Write one step of Titans' linear memory (section 5):
# `titans_step(M, S, k, v, lr, momentum, forget)` returning the pair `(M_new, S_new)`. Careful
# with the letters: here α (`forget`) forgets.

# %%
def titans_step(M, S, k, v, lr, momentum, forget):
    raise NotImplementedError("your code here")


ex.check_titans_step(titans_step)

# %% [markdown]
# **Question 3 · decay (predict, then run).** In the explorer (section 8), the Hebbian rule with
# decay 1 recalls few keys. As the decay goes down from 1 to 0.3, what happens to its recall,
# averaged over the stream? Predict, then run the cell (or try the explorer first).
#
# (a) it rises steadily · (b) it falls steadily · (c) it first rises, then falls ·
# (d) it does not change

# %%
prediction = None  # "a", "b", "c" or "d"

for gate in (1.0, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3):
    trace = recall.recall_trace(stream, recall.run_rule(stream, "linear", decay=gate))
    print(f"Hebbian, decay {gate:4.2f}: mean recall over the stream {trace['recall'].mean():.2f}")
ex.answer("decay", prediction)

# %% [markdown]
# ## Summary
#
# - A memory is `argmin` of an inner objective; a recurrent layer takes one optimiser step per
#   token. Dot-product objective → Hebbian/linear attention; L2 objective → delta rule;
#   momentum and weight decay → Titans; exact weighted L2 → softmax attention.
# - Which objective is "better" depends on the regime: the L2 objective wins decisively when
#   keys are overwritten (E1), while with distinct random keys Hebbian memory keeps higher
#   recall past N = d because the one-pass delta rule is recency-biased (E2).
# - The chunkwise delta rule is exact and several times faster; Titans' chunking is an
#   approximation whose chunk size is part of the model.
#
# **Next:** chapter 2 turns the same lens on optimisers: momentum, Adam and Muon are
# associative memories of the gradient stream.
#
# **Where this deviates from the papers.** No feature map φ and no q scaling inside the
# memory functions (a model adds them around). Titans' memory here is linear (L_M = 1); the
# paper's deep MLP memory appears in chapter 4. Recall numbers are our own measurements at
# d = 64 (section 7), not results from the papers.
