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
# # Chapter 2 · Optimizers are associative memories
#
# Chapter 1 showed that a sequence layer is a memory trained by gradient steps on an inner
# objective. Nested Learning (NL) turns the same lens on the *optimizer*: gradient descent
# stores, in the weights, a map from each input to its "local surprise"; momentum is a second
# memory trained on the stream of gradients; Adam memorises gradients and their squares; Muon
# reads its momentum through a Newton–Schulz non-linearity; and M3 gives the optimizer two
# momentum memories on two time scales. Each of these is a class in `nlbook.optim`, a real
# `torch.optim.Optimizer`, and where PyTorch has the same optimizer we check that ours matches
# it to float64 precision. "Level" means what chapter 0 defines (arXiv §3.2, Def. 2/3): levels
# are ordered by update frequency and level 1 is the fastest, so an optimizer's memories sit
# *below* the weights they update. Notation: [glossary](GLOSSARY.md).
#
# **Learning objectives.** After this chapter you can
# - write an optimizer step as one gradient step on an inner objective, and name its levels;
# - compute exactly how short momentum's memory is (and spot the paper's off-by-one);
# - read Adam as the closed-form answer of an element-wise L2 memory problem;
# - explain preconditioned, delta and deep momentum, Muon and M3, and the choices each one
#   needs where the paper is open;
# - say why M3 as printed in Algorithm 1 does not train a network, and what makes it train;
# - measure, rather than assume, whether a slow momentum level helps on a changing stream.
#
# **Time:** about 90 minutes of study, more if Newton–Schulz and Muon are new to you (the code
# runs in about a minute on a 2-core laptop).
#
# **Prerequisites:** chapter 1 (associative memory, Hebbian vs delta rule), gradient descent
# with momentum, basic PyTorch (`torch.optim`, `backward`).

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
import ipywidgets
import numpy as np
import torch
from IPython.display import display

import nlbook.viz
from nlbook import levels, optim
from nlbook.exercises import nested_optimizers as ex
from nlbook.widgets import dropdown, explore, float_slider

torch.set_default_dtype(torch.float64)  # equivalence checks are printed in float64
TOY_STEPS = nlbook.smoke(300, 40)
STREAM_STEPS = nlbook.smoke(600, 60)
STREAM_SEEDS = nlbook.smoke([0, 1, 2, 3, 4], [0])

# %% [markdown]
# ## 1 · Gradient descent is a memory of "local surprise"
#
# Take one linear layer y = W x inside any network, and let δ = ∂L/∂y be the gradient that
# backpropagation delivers at its output: NL calls it the layer's **local surprise signal**.
# A gradient step on W is
#
# $$W_{t+1} = W_t - \eta\, \delta_t x_t^\top
#   = \arg\min_W \; \langle W x_t, \delta_t\rangle + \tfrac{1}{2\eta}\lVert W - W_t\rVert_F^2
#   \qquad\text{(arXiv eq. 8–9, 29–31)}$$
#
# which is exactly the Hebbian write of chapter 1 with key x_t and value −δ_t. The layer is a
# memory that maps each input to its surprise. One twist: the value δ is produced by the
# network's own current weights, so the memory writes values it generated itself.
#
# Check: the memory write `linear_layer_surprise_step` equals the autograd gradient step.

# %%
generator = torch.Generator().manual_seed(0)
weight = torch.randn(3, 4, generator=generator, requires_grad=True)
inputs = torch.randn(5, 4, generator=generator)
outputs = inputs @ weight.T
loss = (outputs - 1.0).square().sum()
surprise = torch.autograd.grad(loss, outputs, retain_graph=True)[0]  # δ = ∂L/∂y, (B, d_out)
loss.backward()
memory_write = optim.linear_layer_surprise_step(weight.detach(), inputs, surprise, lr=0.1)
difference = (memory_write - (weight.detach() - 0.1 * weight.grad)).abs().max().item()
print(f"memory write vs autograd gradient step: max difference {difference:.1e}")
assert difference < 1e-12

# %% [markdown]
# ## 2 · Momentum is a memory of gradients, one level faster than the weights
#
# SGD with momentum keeps a vector m and writes it into the weights:
#
# $$m_{i+1} = \alpha\, m_i - \eta\, \nabla L(W_i; x_i), \qquad W_{i+1} = W_i + m_{i+1}
#   \qquad\text{(arXiv eq. 33–35)}$$
#
# The first line is one gradient step on the key-less inner objective
# ⟨m, ∇L⟩ + (1 − α)/(2η)‖m‖²: m is a memory trained on the gradient stream, and the weights
# consume its read-out. Both are written once per step, but the weights' step $i$ needs
# $m_{i+1}$, the momentum of the *same* step, so momentum ≻ weights (Def. 2, rule 2): **the
# momentum is level 1 and the weights level 2** (chapter 0 draws this map). Unrolled,
# $m_{i+1} = -\eta \sum_j \alpha^{i-j} g_j$.
#
# `nlbook.optim.MomentumMemory` is written in this form (m holds the −η). It must agree with
# `torch.optim.SGD(lr, momentum)`: we train a small MLP for 100 steps with each, saving and
# reloading the optimizer's `state_dict()` halfway.

# %%
difference = optim.max_difference_to_torch(
    lambda params: optim.MomentumMemory(params, lr=0.05, momentum=0.9),
    lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9))
print(f"MomentumMemory vs torch.optim.SGD, 100 steps: max difference {difference:.1e}")
assert difference < 1e-6

gradients = torch.randn(30, 5, generator=generator)
parameter = torch.zeros(5, requires_grad=True)
momentum_memory = optim.MomentumMemory([parameter], lr=0.1, momentum=0.8)
for gradient in gradients:
    parameter.grad = gradient.clone()
    momentum_memory.step()
unrolled = optim.momentum_weighted_sum(gradients, lr=0.1, momentum=0.8)
stored = momentum_memory.state[parameter]["momentum_memory"]
print(f"memory after 30 writes vs −η Σ α^(T−j) g_j: {(stored - unrolled).abs().max():.1e}")
nlbook.viz.plot_level_map(levels.sgd_momentum_components(), title="SGD with momentum")

# %% [markdown]
# ## 3 · How short is momentum's memory?
#
# In the EMA form the i-th most recent gradient carries weight β^i(1 − β), so the last n
# gradients carry 1 − βⁿ of the total. The paper (arXiv §4.3) says that with β = 0.9 the last
# 6 gradients carry at least half of the mass and the last 43 carry 99%. Counting exactly:

# %%
for n in (6, 7, 43, 44):
    print(f"β = 0.9, last {n:2d} gradients: {optim.momentum_cumulative_weight(0.9, n):.4f}")
for fraction in (0.5, 0.99):
    needed = optim.gradients_for_mass(0.9, fraction)
    print(f"gradients needed for {fraction:.0%} of the mass: {needed}")
assert optim.gradients_for_mass(0.9, 0.5) == 7 and optim.gradients_for_mass(0.9, 0.99) == 44

# %% [markdown]
# The exact numbers are **7 and 44**: the paper's 6 and 43 are off by one (0.9⁶ leaves 53% of
# the mass outside the last 6). The point stands either way: momentum remembers a few dozen
# steps. A gradient seen 100 steps ago, the last time the data looked like *this*, is gone
# (0.9¹⁰⁰ ≈ 3·10⁻⁵). NL reads this as a memory-management problem of the optimizer, and M3
# (section 7) answers it with a second, slower momentum.

# %%
nlbook.viz.plot_momentum_memory_length([0.9, 0.95, 0.99], max_count=nlbook.smoke(500, 100))

# %% [markdown]
# ## 4 · Adam as an associative memory
#
# Per coordinate, ask for the memory m that best maps every past gradient g_i to a common
# value p in the L2 sense (arXiv App. B, eq. 101–):
#
# $$\min_m \sum_{i\le t} (m\, g_i - p)^2 + \lambda m^2
#   \;\Rightarrow\; m^* = \frac{p \sum_i g_i}{\sum_i g_i^2 + \lambda}.$$
#
# With the value p = √(Σ g_i²) and λ → 0 the answer is Σ g_i / √(Σ g_i²): a **sum of
# gradients over the root of a sum of squares**. That is Adam, read with sums and without bias
# correction. Its two moments are memories updated at the same frequency, independently, so
# they form one level (level 1), and the weights that need both are level 2.
# `AdamMemory(moments="sum")` is this reading; the default `moments="ema"` is Adam as everybody
# runs it and matches `torch.optim.Adam`.

# %%
difference = optim.max_difference_to_torch(
    lambda params: optim.AdamMemory(params, lr=0.01, betas=(0.9, 0.999)),
    lambda params: torch.optim.Adam(params, lr=0.01, betas=(0.9, 0.999)))
print(f"AdamMemory vs torch.optim.Adam, 100 steps: max difference {difference:.1e}")
assert difference < 1e-6

beta1, beta2 = 0.9, 0.999
parameter = torch.zeros(5, requires_grad=True)
adam_sums = optim.AdamMemory([parameter], lr=0.1, betas=(beta1, beta2), moments="sum")
for gradient in gradients:
    parameter.grad = gradient.clone()
    adam_sums.step()
state = adam_sums.state[parameter]
adam_read = state["first_moment"] / state["second_moment"].sqrt()  # M/√V
closed_form = gradients.square().sum(0).sqrt() * gradients.sum(0) / (gradients.square().sum(0)
                                                                      + 1e-12)
difference = (adam_read * beta2**0.5 / beta1 - closed_form).abs().max().item()
print(f"Adam (sums) read-out vs the closed-form memory m*: max difference {difference:.1e}")

# %% [markdown]
# ## 5 · More expressive momentum: preconditioned, delta, deep
#
# Momentum's inner objective ⟨m, g⟩ is the simplest possible memory (chapter 1's Hebbian
# rule with no key). NL swaps in richer ones (arXiv §4.4, eq. 46–52):
#
# | memory | inner objective | update | class |
# |---|---|---|---|
# | preconditioned | ⟨m, P_i g_i⟩ | m ← α m − η P_i g_i | `PreconditionedMomentum` (RMS P) |
# | delta (L2) | ½⟨m, ĝ_i⟩² + η⟨m, P g_i⟩ | m ← α m − (m·ĝ)ĝ − η P g | `DeltaMomentum` |
# | deep (DMGD) | ⟨M_φ(G_i), G_i⟩ | φ ← α φ − η ∇_φ ℓ | `DeepMomentum` |
#
# **Delta momentum.** The NeurIPS (eq. 22) and arXiv (eq. 49) versions put the preconditioner
# on different sides, and neither normalises g. We implement the flattened form with the
# **normalised** gradient ĝ = g/‖g‖ in the erase term. Why: the erase matrix (αI − g gᵀ) has
# eigenvalue α − ‖g‖², which leaves (−1, 1) as soon as ‖g‖² > 1 + α, and the memory explodes.

# %%
unit_memory = torch.ones(4) / 2
for label, normalise in (("raw g", False), ("normalised ĝ", True)):
    memory = unit_memory.clone()
    for step in range(20):
        g = torch.tensor([2.0, 0.5, 0.0, 0.0]) if step % 2 == 0 else torch.tensor([0.3, 2.0, 0, 0])
        key = g / g.norm() if normalise else g
        memory = 0.9 * memory - (memory @ key) * key  # the erase term only (η = 0)
    print(f"{label:>13}: ‖m‖ after 20 erase steps with ‖g‖ ≈ 2: {memory.norm():.3g}")

# %% [markdown]
# **Deep momentum (DMGD).** The paper replaces m by an MLP but only sketches its objective
# (⟨m(u), 1⟩, unbounded below). Our choice, stated in the `DeepMomentum` docstring: the memory
# reads M_φ(G) = B + tanh(Ĝ Kᵀ)/√h · Vᵀ and its inner objective is momentum's own dot-product
# objective with keys, ⟨M_φ(G), G⟩. Its gradient in B is G, so B *is* the momentum buffer, and
# the deep part is a linear-attention memory whose keys are learned features of the gradient
# rows. Because tanh is odd, −g recalls like +g: the deep part behaves like a learned
# second-moment memory that lengthens steps along directions seen often. With `memory_lr=0` it
# reduces to plain momentum exactly:

# %%
checks = {
    "PreconditionedMomentum(identity) vs MomentumMemory": (
        lambda params: optim.PreconditionedMomentum(params, lr=0.05, preconditioner="identity"),
        lambda params: optim.MomentumMemory(params, lr=0.05)),
    "DeepMomentum(memory_lr=0) vs MomentumMemory": (
        lambda params: optim.DeepMomentum(params, lr=0.05, memory_lr=0.0),
        lambda params: optim.MomentumMemory(params, lr=0.05)),
}
for label, (ours, reference) in checks.items():
    print(f"{label}: max difference {optim.max_difference_to_torch(ours, reference):.1e}")
delta_vs_sgd = {steps: optim.max_difference_to_torch(
    lambda params: optim.DeltaMomentum(params, lr=0.05, momentum=0.0),
    lambda params: torch.optim.SGD(params, lr=0.05), steps=steps, reload_at=None)
    for steps in (1, 100)}
print(f"DeltaMomentum(α=0) vs SGD: after 1 step {delta_vs_sgd[1]:.1e}, "
      f"after 100 steps {delta_vs_sgd[100]:.1e} (the erase term acts on the old memory)")

# %% [markdown]
# ## 6 · Muon: momentum read through Newton–Schulz
#
# Muon (arXiv eq. 42 and 52) keeps an EMA momentum (one step of size 1 − μ on ½‖m − g‖²) and
# reads it through an output non-linearity σ = NS_k: k Newton–Schulz iterations that push
# every singular value of the update towards 1. NL reads NS itself as a memory that minimises
# ‖OᵀO − I‖²_F by gradient steps (eq. 43–44). `optim.Muon` reproduces `torch.optim.Muon`:
# quintic coefficients (3.4445, −4.7750, 2.0315), Nesterov read-out, the bfloat16 iteration,
# lr scaled by √max(1, rows/cols) and decoupled weight decay.

# %%
matrix = torch.randn(8, 5, generator=generator)
for steps in (0, 1, 3, 5):
    singular = torch.linalg.svdvals(optim.newton_schulz(matrix, steps=steps))
    print(f"NS steps {steps}: singular values in [{singular.min():.3f}, {singular.max():.3f}]")
difference = optim.max_difference_to_torch(
    lambda params: optim.Muon(params, lr=0.02, momentum=0.95, weight_decay=0.1),
    lambda params: torch.optim.Muon(params, lr=0.02, momentum=0.95, weight_decay=0.1),
    bias=False)
print(f"Muon vs torch.optim.Muon, 100 steps (bias-free MLP): max difference {difference:.1e}")
assert difference < 1e-6

# %% [markdown]
# ## 7 · M3: two momentum memories on two time scales
#
# Multi-scale Momentum Muon (arXiv §7.2, **Algorithm 1**) is a Continuum Memory System applied
# to the optimizer. A fast momentum M1 is written every step, a slow one M2 once per chunk of
# f steps with the chunk's gradient sum, and a second moment V normalises both. Levels: M1 and
# V are level 1, the weights level 2, and M2, written less often than the weights, level 3.
#
# $$M_1 \leftarrow M_1 + \beta_1 g_t,\quad V \leftarrow V + \beta_2 g_t^2,\quad
#   \Theta \leftarrow \Theta - \eta\,\frac{\mathrm{NS}(M_1) + \alpha\,\mathrm{NS}(M_2)}{\sqrt{V}
#   + \epsilon},\qquad M_2 \leftarrow M_2 + \beta_3 \textstyle\sum_{\text{chunk}} g_i
#   \text{ every } f \text{ steps.}$$
#
# Choices, where the sources disagree: Algorithm 1 rather than eq. 75 (which has a minus sign
# and β2); √V + ε rather than √(V + ε); **running sums** as written (`moments="sum"`,
# default) with EMAs as an option (`moments="ema"`); the refreshed NS(M2) is first used on the
# step after the chunk ends; 1-D parameters (biases) skip NS. Check: O2 is zero during the
# first chunk, so M3 with α = 1 and α = 0 agree for exactly f steps.

# %%
chunk = 5
weights = {alpha: torch.zeros(3, 4, requires_grad=True) for alpha in (0.0, 1.0)}
m3 = {alpha: optim.M3([weights[alpha]], lr=0.01, alpha=alpha, slow_every=chunk)
      for alpha in weights}
for step in range(2 * chunk):
    gradient = torch.randn(3, 4, generator=generator)
    for alpha in weights:
        weights[alpha].grad = gradient.clone()
        m3[alpha].step()
    gap = (weights[1.0] - weights[0.0]).abs().max().item()
    print(f"step {step + 1:2d}: |M3(α=1) − M3(α=0)| = {gap:.2e}")
nlbook.viz.plot_level_map(levels.m3_components(slow_every=chunk), title="M3's levels")

# %% [markdown]
# ### Why Algorithm 1 as printed does not train a network
#
# NS(M1) has singular values ≈ 1 whatever the size of the gradients (Newton–Schulz starts from
# M1/‖M1‖), while √V carries their size: **the step is homogeneous of degree −1 in the
# gradient**. Multiply the loss by 10 and every step shrinks 10×; a coordinate whose gradient
# is tiny takes a *huge* step, because NS spreads the numerator over the whole matrix while the
# denominator is that coordinate's own. Adam (m/√v) and Muon (NS(m) alone) both have degree 0.
# See it on one gradient stream, scaled by 1 and by 10:

# %%
stream_of_gradients = torch.randn(12, 5, 4, generator=generator)


def m3_displacement(scale, **options):
    """Where M3 moves a zero-initialised (5, 4) parameter after 12 steps of scale·gradients."""
    parameter = torch.zeros(5, 4, requires_grad=True)
    m3_optimizer = optim.M3([parameter], lr=0.01, slow_every=4, eps=1e-30, **options)
    for gradient in stream_of_gradients:
        parameter.grad = scale * gradient
        m3_optimizer.step()
    return parameter.detach()


for label, options in (("Algorithm 1 as printed", {}),
                       ("EMAs, O with the momentum's norm",
                        {"moments": "ema", "orthogonal_scale": "momentum"})):
    small, large = m3_displacement(1.0, **options), m3_displacement(10.0, **options)
    print(f"{label:34s} ‖ΔW‖ with g: {small.norm():.4f}   with 10 g: {large.norm():.4f}")

# %% [markdown]
# On the tiny Transformer of `nlbook.train` (gradients clipped to norm 1, entries about 10⁻³) the
# very first step of Algorithm 1 as printed, at 1/100 of the peak rate in warm-up, moved the
# hidden matrices by 0.02–0.7 per entry, more than their initial size, and the model never
# recovered. Three things were checked:
#
# - *which parameters*: `nlbook.train` gives M3 only the hidden weight matrices (AdamW takes the
#   embedding, norms and biases, as is usual for Muon); not the cause;
# - *the learning-rate scale*: a smaller rate helps (10⁻³ times smaller: 2.36 nats/char after 300
#   steps), but no single rate fits, since the right one depends on the gradients' size;
# - *the orthogonalisation's scale*: Algorithm 1 does not say how large O = NS(M) should be.
#   Giving it the momentum's own Frobenius norm, O = NS(M) ‖M‖_F / ‖NS(M)‖_F, keeps NS's
#   direction and makes (O1 + α O2)/(√V + ε) dimensionless like Adam's m/√v (degree 0, as
#   printed above). With running sums M1 never forgets, and along a persistent direction the
#   step then grows like √t; with EMAs it does not.
#
# So `nlbook.train` (`optimizer="m3"`) builds `M3(moments="ema", orthogonal_scale="momentum")`.
# Measured (300 steps at the default rate 2·10⁻³, validation nats/char): that reading 2.29,
# AdamW 2.46, Muon 2.45; Algorithm 1 as printed 3.35, EMAs alone 3.71, the momentum's norm with
# sums 3.04. The class default stays Algorithm 1 as printed: it is what this chapter teaches and
# tests against the algorithm's two loops, and what the toys below run. Here is the training
# entry point itself, against the bigram baseline (a model that learns nothing but pair counts):

# %%
from nlbook.data import load_corpus
from nlbook.ngram import ngram_baselines
from nlbook.train import TrainConfig, train

corpus = load_corpus()
bigram = ngram_baselines(corpus.train_ids, corpus.val_ids, corpus.vocab_size,
                         orders=())["bigram"]["nats"]
TRANSFORMER_STEPS = nlbook.smoke(300, 10)
for name in ("m3", "adamw"):
    run = train(TrainConfig(optimizer=name, steps=TRANSFORMER_STEPS,
                            eval_interval=TRANSFORMER_STEPS, eval_batches=nlbook.smoke(20, 2)),
                corpus=corpus, progress=False, log=None)
    print(f"tiny Transformer, {name:5s}, {TRANSFORMER_STEPS} steps: validation "
          f"{run.val_loss:.3f} nats/char (bigram line {bigram:.3f})")

# %% [markdown]
# On the toys and the small stream that follow, Algorithm 1 as printed is easy to use, but its
# learning rate lives on a different scale from the others' (η ≈ 1–3 on the toys, 10⁻⁴–10⁻³ on
# the MLP of section 9), for the reason just seen.
#
# ## 8 · Trajectories on two toy problems
#
# An ill-conditioned quadratic (condition number 20, rotated by 30° so no axis is special) and
# the Rosenbrock valley, from fixed starts. Each optimizer gets the learning rate written
# next to it (hand-picked so that each makes progress; not tuned to rank them).

# %%
toy_lrs = {
    "quadratic": {"momentum": 0.01, "adam": 0.1, "preconditioned": 0.01, "delta": 0.03,
                  "deep": 0.01, "muon": 0.03, "m3": 3.0},
    "rosenbrock": {"momentum": 0.001, "adam": 0.1, "preconditioned": 0.03, "delta": 0.001,
                   "deep": 0.001, "muon": 0.03, "m3": 3.0},
}
for problem, lrs in toy_lrs.items():
    runs = {f"{name} (lr {lr})": optim.run_toy_problem(name, problem, lr, 0.9, TOY_STEPS)
            for name, lr in lrs.items()}
    print(problem, {label: f"{losses[-1]:.2e}" for label, (_, losses) in runs.items()})
    display(nlbook.viz.plot_optimizer_trajectories(runs, optim.toy_landscape(problem)))

# %% [markdown]
# ### Explorer
#
# Pick optimizers, a problem, one learning rate (log scale) and the momentum, and watch the
# trajectories and loss curves. Things to try: momentum 0 vs 0.9 on the quadratic; Adam's
# diagonal preconditioning on the rotated valley; delta momentum at large learning rates; M3
# at η ≈ 1 and at η ≈ 0.01.

# %%
def explore_optimizers(optimizers, problem, lr, momentum):
    runs = {name: optim.run_toy_problem(name, problem, lr, momentum, TOY_STEPS)
            for name in optimizers}
    return nlbook.viz.plot_optimizer_trajectories(runs, optim.toy_landscape(problem))


explore_optimizers(("momentum", "adam", "muon"), "quadratic", 0.02, 0.9)

# %%
explore(explore_optimizers, {
    "optimizers": nlbook.widgets.multi_select(optim.OPTIMIZER_NAMES, ("momentum", "adam", "muon"),
                                              "optimizers"),
    "problem": dropdown(list(optim.TOY_PROBLEMS), "quadratic", "problem"),
    "lr": ipywidgets.FloatLogSlider(value=0.02, base=10, min=-4, max=1, step=0.1,
                                    description="lr", continuous_update=False),
    "momentum": float_slider(0.9, 0.0, 0.99, 0.01, "momentum"),
})

# %% [markdown]
# ## 9 · A continual-learning stream: does a slow momentum level help?
#
# NL's argument (arXiv eq. 45): plain momentum forgets old gradient subspaces after a few
# dozen steps, so a slow momentum level should carry knowledge across task changes. We test
# it on a small stream: three linear regression teachers with overlapping subspaces, a tanh
# MLP student, and the task changing every 50 steps (0, 1, 2, 0, 1, 2, ...). We compare
#
# - plain momentum (`MomentumMemory`);
# - M3 with the slow level switched off (α = 0) and on (α = 1), both with sums (Algorithm 1)
#   and with EMAs, slow chunk f = 25.
#
# Each optimizer gets its best learning rate from a small grid (best mean stream loss on
# seed 0), then runs on every seed. Reported: the mean loss on the stream after the first
# cycle, and the mean loss of the final model over all three tasks (forgetting).

# %%
candidates = {
    "momentum": (lambda lr: lambda params: optim.MomentumMemory(params, lr, 0.9),
                 [0.02, 0.05, 0.1]),
}
for moments in ("sum", "ema"):
    for alpha in (0.0, 1.0):
        candidates[f"M3 {moments}, α={alpha:g}"] = (
            lambda lr, moments=moments, alpha=alpha: lambda params: optim.M3(
                params, lr, alpha=alpha, slow_every=25, moments=moments),
            [1e-4, 3e-4, 1e-3])
grid = {f"{label} @ {lr:g}": build(lr) for label, (build, lrs) in candidates.items()
        for lr in lrs}
sweep = optim.continual_stream(grid, steps=STREAM_STEPS, switch_every=50, seed=0)
start = min(150, STREAM_STEPS // 2)
best = {label: min(lrs, key=lambda lr, label=label: sweep[f"{label} @ {lr:g}"]["loss"][start:]
                   .mean()) for label, (_, lrs) in candidates.items()}
print("best learning rate per optimizer:", best)

# %%
chosen = {f"{label} (lr {best[label]:g})": candidates[label][0](best[label]) for label in best}
per_seed = [optim.continual_stream(chosen, steps=STREAM_STEPS, switch_every=50, seed=seed)
            for seed in STREAM_SEEDS]
print(f"{'optimizer':>28} | stream loss after cycle 1 | final loss, mean over tasks")
for label in chosen:
    stream = [result[label]["loss"][start:].mean() for result in per_seed]
    final = [result[label]["final_task_losses"].mean() for result in per_seed]
    print(f"{label:>28} | {np.mean(stream):8.4f} ± {np.std(stream):.4f}"
          f"        | {np.mean(final):8.4f} ± {np.std(final):.4f}")
nlbook.viz.plot_continual_stream(per_seed[0], smooth=10)

# %% [markdown]
# The best learning rates differ, and a smaller rate forgets less by itself. To isolate the
# slow level, compare α = 0 and α = 1 at the *same* learning rate (seed 0, from the sweep):

# %%
print(f"{'M3 variant':>16} | {'lr':>6} | stream α=0 → α=1 | final all-task loss α=0 → α=1")
for moments in ("sum", "ema"):
    for lr in candidates[f"M3 {moments}, α=0"][1]:
        off, on = (sweep[f"M3 {moments}, α={alpha:g} @ {lr:g}"] for alpha in (0.0, 1.0))
        print(f"{moments:>16} | {lr:6g} | {off['loss'][start:].mean():7.3f} → "
              f"{on['loss'][start:].mean():7.3f} | {off['final_task_losses'].mean():9.3f} → "
              f"{on['final_task_losses'].mean():7.3f}")

# %% [markdown]
# **What we measured** (full size: 600 steps, 5 seeds; torch 2.13 on a 2-core CPU):
#
# - Plain momentum (best η = 0.1) has by far the lowest loss on the stream, 0.13 ± 0.02. Every
#   M3 variant, at its best rate, stays between 0.32 and 0.60.
# - The final model's loss over all three tasks is high for everyone: 0.66 ± 0.12 for
#   momentum, 0.40–0.68 for M3. The lowest (M3 with EMAs and the slow level, 0.40) is also the
#   run with a ten times smaller learning rate, which forgets less by itself.
# - At a matched learning rate (the table above, seed 0), switching the slow level on
#   (α = 0 → 1) lowered both losses with sums at η = 10⁻⁴ and 3·10⁻⁴, and raised them at
#   η = 10⁻³. With EMAs it raised the stream loss at all three rates, and moved the final
#   loss by less than the seed-to-seed spread.
#
# So in this regime a slow momentum level gives **no consistent benefit**, and the paper's
# claim is neither confirmed nor refuted: its evidence is ViT and language models at scale
# (arXiv Figs. 11–12), a very different regime from a three-task toy stream. Two mechanisms
# are visible here. M3's NS(M)/√V step scales like η/|g| (section 7), so small-gradient
# coordinates take large steps (these runs use Algorithm 1 as printed, as the toys do). With
# sums, the "fast" M1 never forgets, so the two momenta differ only by a lag of one chunk.
# Chapter 3 (CMS) makes the same point for architectures: update frequency alone does not stop
# forgetting.

# %% [markdown]
# ## 10 · Exercises
#
# Two kinds. **Predict, then run:** decide what will happen and write your letter in
# `prediction` *before* you run the cell; the cell runs the experiment and `ex.answer` says
# whether you were right and why. **Implement:** write the function in its cell and run it; the
# checker names what is wrong (it reports "not done yet" while the stub is untouched). Stuck?
# `ex.solution("name")` prints a solution; try your own first.
#
# **Question 1 · a long memory (predict, then run).** Section 3 counted 44 gradients for 99% of
# the weight at $\beta = 0.9$. With $\beta = 0.99$, how many of the most recent gradients carry
# 90% of an EMA momentum's weight?
#
# (a) about 10 · (b) about 23 · (c) about 230 · (d) about 2,300

# %%
prediction = None  # your prediction: "a", "b", "c" or "d"

needed = optim.gradients_for_mass(0.99, 0.9)
print(f"β = 0.99: the last {needed} gradients carry "
      f"{optim.momentum_cumulative_weight(0.99, needed):.4f} of the weight "
      f"({needed - 1} carry {optim.momentum_cumulative_weight(0.99, needed - 1):.4f})")
ex.answer("long_memory", prediction)

# %% [markdown]
# **Question 2 · scale (predict, then run).** Multiply every gradient of a stream by 100 and
# run Adam again, same learning rate. How far do the parameters travel, compared with the
# original gradients?
#
# (a) 100 times further · (b) 10 times further · (c) the same distance · (d) 100 times less far

# %%
prediction = None  # "a", "b", "c" or "d"

gradient_stream = torch.randn(30, 5, generator=generator)
builders = {"AdamMemory": lambda params: optim.AdamMemory(params, lr=0.01),
            "MomentumMemory": lambda params: optim.MomentumMemory(params, lr=0.01, momentum=0.9)}
for name, build in builders.items():
    travelled = []
    for scale in (1.0, 100.0):
        parameter = torch.zeros(5, requires_grad=True)
        optimizer = build([parameter])
        for gradient in gradient_stream:
            parameter.grad = scale * gradient.clone()
            optimizer.step()
        travelled.append(parameter.detach().norm().item())
    print(f"{name:>14}: gradients × 100 travel {travelled[1] / travelled[0]:8.4f} times as far")
ex.answer("adam_scale", prediction)

# %% [markdown]
# **Exercise 1 · momentum (implement).** Write one step of the momentum memory: given the
# memory `m`, the gradient `g`, the learning rate η and the momentum α, return the new memory
# (arXiv eq. 34).

# %%
def momentum_step(memory, gradient, lr, momentum):
    raise NotImplementedError("your code here")


ex.check_momentum_step(momentum_step)

# %% [markdown]
# **Exercise 2 · how short is the memory (implement).** How many of the most recent gradients
# carry at least a fraction $f$ of an EMA momentum's weight? Return the smallest integer $n$
# with $1 - \beta^n \ge f$ (watch the off-by-one).

# %%
def gradients_for_mass(beta, fraction):
    raise NotImplementedError("your code here")


ex.check_gradients_for_mass(gradients_for_mass)

# %% [markdown]
# **Exercise 3 · delta momentum (implement).** One step of delta momentum on flattened
# vectors (section 5), with the identity preconditioner.

# %%
def delta_momentum_step(memory, gradient, lr, momentum):
    raise NotImplementedError("your code here")


ex.check_delta_momentum_step(delta_momentum_step)

# %% [markdown]
# ## Summary
#
# **What you learned.**
# - A gradient step is a memory write: each layer maps its input to its local surprise δ.
# - Momentum is level 1 and the weights level 2 (Def. 2: same frequency, but the weights' step
#   needs the momentum of the same step); m takes one gradient step per outer step on ⟨m, g⟩
#   with retention α;
#   `MomentumMemory`, `AdamMemory` and `Muon` match `torch.optim` to float64 precision.
# - Momentum's memory is short: 7 gradients carry half its weight at β = 0.9, 44 carry 99%
#   (the paper says 6 and 43).
# - Adam is the closed form of an element-wise L2 memory (sums, no bias correction); richer
#   inner objectives give preconditioned, delta and deep momentum; an output non-linearity
#   gives Muon; two time scales give M3.
# - Algorithm 1 as printed makes steps inversely proportional to the gradient's size; with EMAs
#   and the momentum's norm on NS's output it trains the tiny Transformer below the bigram line
#   (that is what `nlbook.train` runs).
# - On a small continual stream, M3's slow level did not help, as measured above.
#
# **Next chapter.** Chapter 3 takes the multi-time-scale idea from the optimizer into the
# architecture: the Continuum Memory System, a chain of MLP blocks updated at different
# frequencies.
#
# **Where this deviates from the paper (or chooses where it is open).**
# - Delta momentum: flattened form with the normalised gradient in the erase term (neither
#   paper version normalises); per parameter tensor.
# - Deep momentum: the inner objective ⟨M_φ(G), G⟩ with tanh key features, retention on the
#   value weights only and η_mem = 0.1 η by default (the paper gives only an example objective).
# - `MomentumMemory` stores the paper's m (with −η inside): under a learning-rate schedule it
#   differs from `torch.optim.SGD`, which applies the current η to its whole buffer.
# - M3: Algorithm 1 (not eq. 75), √V + ε, sums by default, quintic NS in the parameter's
#   precision, NS skipped for 1-D parameters. For training a network (`nlbook.train`): EMAs and
#   O = NS(M)·‖M‖_F/‖NS(M)‖_F (`orthogonal_scale="momentum"`), which Algorithm 1 leaves open.
# - Muon: the bfloat16 Newton–Schulz of `torch.optim.Muon`, kept to match it exactly.
