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
# # Chapter 0 · Levels: how Nested Learning orders the parts of a learning system
#
# The course is named after one idea: a model *and* its optimiser form a set of nested
# optimisation problems, each with its own objective, its own data and its own update
# frequency. Nested Learning calls them **levels**. Every later chapter uses the word, always with
# the meaning defined here, so this short chapter states the definition as the paper does,
# computes the levels of the systems the course builds, and shows the diagrams the later
# chapters reuse. Notation used anywhere in the course is collected in the
# [glossary](GLOSSARY.md).
#
# **Learning objectives.** After this chapter you can
# 1. state the paper's definition of update frequency and of the order "A is faster than B"
#    (arXiv §3.2, Def. 2 and Def. 3), and sort the parts of a system into levels;
# 2. say why in SGD with momentum the momentum is level 1 and the weights level 2;
# 3. find the levels of Adam, M3, a linear-attention layer trained with momentum, and HOPE;
# 4. read the course's diagrams (level 1, the fastest, always at the bottom) and tell a CMS
#    *block* (a position in its chain) from a *level* (a frequency rank).
#
# **Time:** about 30 minutes (the code runs in a few seconds).
#
# **Prerequisites:** gradient descent with momentum; nothing else. Chapters 2, 3 and 5 come back
# to each example in depth.

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

from nlbook import levels, viz, widgets
from nlbook.cms import ContinuumMemory
from nlbook.levels import Component, assign_levels

torch.set_default_dtype(torch.float64)  # the check below compares to 1e-12

# %% [markdown]
# ## 1 · Update frequency and "faster than" (Def. 2)
#
# Take as unit of time one update step on one data point (one optimiser step, or one token read
# by a memory). The paper defines (arXiv §3.2):
#
# > **Definition 2 (update frequency).** For any component A, parametric (weights, a momentum
# > term) or not (an attention block), its frequency $f_A$ is its number of updates per unit of
# > time.
#
# Components are then ordered: **A is faster than B**, written $A \succ B$, when
#
# 1. $f_A > f_B$, or
# 2. $f_A = f_B$ and computing B's state at time $t$ requires A's state at time $t$.
#
# When neither $A \succ B$ nor $B \succ A$, the two have the same frequency and are computed
# independently of each other (the paper writes $A \overset{f}{=} B$).
#
# ## 2 · Levels (Def. 2 and Def. 3)
#
# The components are sorted into an ordered set of **levels** such that (1) components in one
# level have the same update frequency and (2) **the higher the level, the lower its
# frequency**. Level 1 is the fastest. Def. 3 calls the result a *nested system*: each level is a
# set of optimisation problems, each with its own objective, its own context (the data it is
# optimised on) and its own gradient flow.
#
# In code, `nlbook.levels.assign_levels` does exactly this: a component's level is one more than
# the highest level of everything faster than it (level 1 if nothing is), so two components
# share a level exactly when neither is faster than the other.
#
# **Careful when you read the paper.** Its own example right after Def. 4 (arXiv Fig. 3, a
# Transformer MLP against linear attention) calls the pre-trained, persistent MLP the "first
# level" and the in-context memory the "second level": the reverse of Def. 2's rule. This course
# follows Def. 2 everywhere, in prose, code, plots and widgets.
#
# ## 3 · SGD with momentum: momentum is level 1, the weights level 2
#
# $$m_{i+1} = \alpha\, m_i - \eta\, \nabla L(W_i; x_i), \qquad W_{i+1} = W_i + m_{i+1}
#   \qquad\text{(arXiv eq. 33–35)}$$
#
# Both are written once per step: equal frequency. But the weights' update at step $i$ uses the
# momentum of the *same* step, $m_{i+1}$, so momentum ≻ weights (rule 2): the momentum is level
# 1, the weights level 2. Check it on `torch.optim.SGD`: after one step the change of the weights
# is exactly −η times the *new* momentum buffer (PyTorch's buffer holds $-m/\eta$).

# %%
generator = torch.Generator().manual_seed(0)
weight = torch.randn(4, 3, generator=generator, requires_grad=True)
sgd = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
for step in range(3):
    before = weight.detach().clone()
    sgd.zero_grad()
    (weight.square().sum() + weight.sum()).backward()
    sgd.step()
    buffer = sgd.state[weight]["momentum_buffer"]     # written first, at this very step
    change = weight.detach() - before
    gap = (change - (-0.1 * buffer)).abs().max().item()
    print(f"step {step + 1}: |ΔW − (−η · momentum of this step)| = {gap:.1e}")
    assert gap < 1e-12

system = levels.sgd_momentum_components()
print(assign_levels(system))
assert assign_levels(system) == {"momentum m": 1, "weights W": 2}

# %% [markdown]
# The course draws every level map the same way: one row per level, **level 1 at the bottom**,
# higher (slower) levels above, each level in its own colour, and an arrow where a component
# needs another one's state at the same step.

# %%
viz.plot_level_map(system, title="SGD with momentum (one unit of time = one step)")

# %% [markdown]
# ## 4 · Adam: two memories in one level
#
# Adam's first moment (an average of gradients) and second moment (an average of squared
# gradients) are both written at every step and neither needs the other: they share level 1
# (the paper's example of $A \overset{f}{=} B$). The weights need both at the same step: level 2.
# Chapter 2 reads both moments as associative memories of the gradient stream.

# %%
print(assign_levels(levels.adam_components()))
viz.plot_level_map(levels.adam_components(), title="Adam")

# %% [markdown]
# ## 5 · M3: a momentum slower than the weights
#
# M3 (arXiv §7.2, Algorithm 1; chapter 2) keeps a fast momentum M1 and a second moment V, written
# every step, and a slow momentum M2 written once every f steps. M1 and V are level 1, the
# weights level 2, and M2, updated *less often than the weights*, is level 3: a level is a
# frequency class, not "a part of the optimizer".

# %%
print(assign_levels(levels.m3_components(slow_every=10)))
viz.plot_level_map(levels.m3_components(slow_every=10), title="M3, slow momentum every 10 steps")

# %% [markdown]
# ## 6 · A memory inside the model adds a faster level
#
# Chapter 1's memories (linear attention, the delta rule, Titans) are written at **every token**
# of a sequence, while the optimiser steps once per batch of many tokens. Measured per token,
# the memory is the fastest component. Train a linear-attention layer with SGD + momentum on
# batches of 16 sequences of 64 tokens: the memory state is level 1 (1 update per token), the
# optimiser's momentum level 2 and the weights (the projections $W_k, W_v, W_q$ and the memory's
# initial state) level 3 (1 update per 1,024 tokens, after the momentum of the same step).

# %%
tokens_per_step = 16 * 64
attention = [
    Component("memory state S_t", 1.0, (), "S_t = S_{t−1} + k_t v_tᵀ, every token"),
    Component("momentum m", 1 / tokens_per_step, (), "every optimizer step"),
    Component("weights W_k, W_v, W_q, S_0", 1 / tokens_per_step, ("momentum m",),
              "every optimizer step, from m"),
]
print(assign_levels(attention))
viz.plot_level_map(attention, unit="token",
                   title="linear attention trained with SGD + momentum (unit: one token)")

# %% [markdown]
# ## 7 · HOPE, the model of chapters 5 and 6
#
# HOPE stacks a self-modifying Titans memory (written at every token) and a Continuum Memory
# System, a chain of MLP blocks each updated in context every $C$ tokens, or only by the outer
# optimiser when its in-context rate is 0. Trained by AdamW, the whole model has four levels:

# %%
hope_system = levels.hope_components(cms_chunk_sizes=(256, 32), cms_learning_rates=(0.0, 0.01),
                                      tokens_per_step=16 * 64)
print(assign_levels(hope_system))
viz.plot_level_map(hope_system, unit="token", title="HOPE trained by AdamW (unit: one token)")

# %% [markdown]
# **Blocks and levels.** The CMS is a *chain*: its constructor, its state and its records list
# the blocks in chain order (block 0 reads the input). A level is a frequency rank, and the chain
# order need not follow it. In HOPE's CMS, block 0 has in-context rate 0 (it changes only through
# AdamW) and block 1 is updated every 32 tokens, so block 1 is the CMS's level 1 and block 0 its
# level 2. `ContinuumMemory` exposes both views, and every plot labels a block by its level:

# %%
cms = ContinuumMemory(8, chunk_sizes=[256, 32], learning_rates=[0.0, 0.01], hidden_dim=16)
print("chain order, chunk sizes:", cms.chunk_sizes, " rates:", cms.learning_rates)
print("level of each block:     ", cms.level_of_block)
print("blocks at level 1:       ", cms.blocks_of_level(1))
print("labels used by the plots:", cms.block_labels())
assert cms.level_of_block == (2, 1)
viz.plot_cms_chain(cms.chunk_sizes, cms.learning_rates, loss="next-token loss of token t")

# %% [markdown]
# A level number is relative to the system described: the CMS's level 1 (block 1) is HOPE's
# level 2, because the Titans memories are faster still. Where a figure shows the CMS alone it
# says "CMS level"; the level maps above number the whole model. The HOPE block itself, with what
# each memory reads and what it is written towards (chapters 4 and 5 build each piece):

# %%
viz.plot_hope_block(chunk_size_memory=64, chunk_size_others=32, cms_chunk_sizes=(256, 32),
                    cms_learning_rates=(0.0, 0.01))

# %% [markdown]
# ## 8 · Explorer: the levels of a CMS
#
# Pick the chunk size of each of three chained blocks ("η = 0" means the block learns only from
# the outer optimiser). The colours and level numbers follow the frequencies, whatever the chain
# order. Things to try: give two blocks the same chunk size (they share a level); put the
# slowest block first; set every block to η = 0 (one level: a frozen Transformer MLP stack).

# %%
CHOICES = [("η = 0", 0), ("every token", 1), ("every 4", 4), ("every 16", 16), ("every 64", 64)]


def explore_chain(first: int, second: int, third: int):
    """The widget callback: a three-block CMS chain with the chosen chunk sizes (0: η = 0)."""
    sizes = [max(choice, 1) for choice in (first, second, third)]
    rates = [0.0 if choice == 0 else 0.01 for choice in (first, second, third)]
    return viz.plot_cms_chain(sizes, rates)


explore_chain(0, 1, 16)  # called once directly: a broken plot fails here

# %%
widgets.explore(explore_chain, {
    "first": widgets.dropdown(CHOICES, 0, "block 0"),
    "second": widgets.dropdown(CHOICES, 1, "block 1"),
    "third": widgets.dropdown(CHOICES, 16, "block 2"),
})

# %% [markdown]
# ## Summary
#
# - Update frequency (Def. 2): updates per unit of time. A ≻ B when A is updated more often, or
#   as often and B's state at step t needs A's state at step t. Levels sort the components: the
#   higher the level, the lower the frequency; **level 1 is the fastest**.
# - SGD with momentum: momentum level 1, weights level 2. Adam: both moments level 1 (computed
#   independently), weights level 2. M3: its slow momentum is level 3, above the weights.
# - A memory written at every token is faster than any optimiser step: linear attention's state,
#   the Titans memories and the CMS's in-context blocks sit below the optimiser's levels.
# - In the CMS a *block* is a position in the chain and a *level* a frequency rank
#   (`level_of_block`, `blocks_of_level`, `block_labels`). Every figure draws level 1 at the
#   bottom (or first, on the left), and labels blocks by level.
#
# **Next:** chapter 1 builds the fastest level of all, associative memories written token by
# token, and shows that each one is a small optimiser.
#
# **Where this departs from the paper.** Nothing in the definition. The paper's own Fig. 3
# example numbers the levels the other way round; the course follows Def. 2's text. The exact
# frequencies of HOPE's levels depend on chunk sizes and batch sizes the paper does not give for
# its language models; the numbers above are the course's defaults.
