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
# # Chapter 5 · The HOPE block and language model
#
# Chapters 3 and 4 built two very different memories. The **Continuum Memory System** (CMS) is
# a chain of plain MLP blocks with a lot of capacity and a simple rule: each block takes gradient
# steps on the task loss every $C_j$ tokens. **Self-modifying Titans** has little capacity but an
# expressive rule: it generates its own keys, values, learning rates and retention, and rewrites
# itself with Delta Gradient Descent at every chunk. Nested Learning (arXiv 2512.24695, §8.3)
# puts them in series and calls the result **HOPE**: self-modifying Titans reads the context,
# the CMS stores what it sees at several timescales. This chapter assembles the block, turns it
# into a character language model, and watches every one of its memories change, token by
# token, while it reads Shakespeare. In chapter 0's terms the whole model has four levels:
# the Titans memories (every token), the CMS's in-context block (every 32 tokens), AdamW's
# moments and the weights (every training step). Notation: [glossary](GLOSSARY.md).
#
# **Learning objectives.** After this chapter you can
# 1. assemble a HOPE block from the previous chapters' parts and follow every tensor's shape;
# 2. say which normalisation, residual and convolution choices the paper leaves open, and which
#    ones nlbook makes;
# 3. check causality and stream generation with a carried state, exactly equal to a full pass;
# 4. read the per-timescale view: tokens → keys/values → Titans memories → CMS blocks, by level;
# 5. measure HOPE's speed and size against a Transformer of the same parameter count.
#
# **Time:** about 70 minutes of study, a few of them waiting for a short training run.
# **Prerequisites:** chapter 3 (CMS) and chapter 4 (self-modifying Titans); the Transformer of
# `nlbook.transformer` is used as the baseline.

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
import time

import torch

import nlbook.viz as viz
from nlbook import hope, smoke, widgets
from nlbook.cms import cross_entropy_loss
from nlbook.data import load_corpus
from nlbook.exercises import hope_block as ex
from nlbook.train import TrainConfig, train
from nlbook.transformer import parameter_count

# %% [markdown]
# ## 1 · Assembling the block
#
# **Idea.** HOPE (A-eq 94–97) is two memories in series:
#
# $$o_t = M_{\text{memory},\,t}(q_t) \qquad\text{(self-modifying Titans, A-eq 86–93),}$$
# $$y_t = \mathrm{MLP}^{(f_K)}\big(\dots \mathrm{MLP}^{(f_1)}(o_t)\big)
#   \qquad\text{(CMS, A-eq 70–71).}$$
#
# The paper prints $o_t = M_{\text{memory},\,t-1}(q_t)$, a read *before* token $t$'s write; the
# course reads every memory after the write (chapter 1's convention, checked in chapter 4), and
# so does the code below. In the paper's CMS notation each block $\mathrm{MLP}^{(f)}$ is named by
# its frequency $f$; the code numbers the blocks by chain position (block 0 reads the Titans'
# output).
#
# The paper drops "normalisation and convolution layers for clarity". nlbook fills them in
# (each choice is stated in `nlbook.hope`'s docstring):
#
# - **normalisation:** pre-norm LayerNorm before the memory; each CMS block is itself
#   $x + \mathrm{MLP}(\mathrm{LN}(x))$. The Transformer baseline is pre-norm too, so only the
#   mixer differs.
# - **convolution:** causal, depth-wise, window 4, on the memory's input, initialised to the
#   identity (arXiv §8.3: "local convolution with window 4"; one conv before q/k/v, not three).
# - **residuals:** around the Titans and around each CMS block.
# - **positions:** none: the recurrent memories and the convolution see the order.
# - **CMS task loss:** the next-token cross-entropy of the block's CMS output read through the
#   model's readout (final norm + tied head), a "logit-lens" loss. The final loss would also
#   do, causally and chunk by chunk (the loss at token $t$ depends on tokens $\le t$ only), but
#   every inner gradient would then run through all the later blocks, segment by segment: the
#   logit-lens loss is a cost choice.
# - **CMS blocks:** block 0 has $\eta = 0$ in context (trained by AdamW across contexts),
#   block 1 is updated in context every 32 tokens ($\eta = 0.01$): one in-context timescale plus
#   a slow one, cheap on a CPU. By frequency, block 1 is the CMS's level 1 and block 0 its
#   level 2 (printed below from `block.cms.level_of_block`).
#
# **Picture.** Data flow of one block, and what each memory reads and is written towards,
# drawn from the block's own settings (colours: the model's levels, 1 the fastest):

# %%
generator = torch.Generator().manual_seed(0)
block = hope.HopeBlock(64, 4, generator=generator)
viz.plot_hope_block(chunk_size_memory=block.titans.chunk_size_memory,
                    chunk_size_others=block.titans.chunk_size_others,
                    cms_chunk_sizes=block.cms.chunk_sizes,
                    cms_learning_rates=block.cms.learning_rates, conv_window=block.conv.window)

# %% [markdown]
# **Code.** `hope.HopeBlock` builds exactly this; below we walk one input through it by hand.

# %%
x = torch.randn(2, 40, 64, generator=generator)  # (B, T, d): 40 is not a multiple of any chunk
targets = torch.randint(65, (2, 39), generator=generator)  # next tokens: one fewer (pending)
readout = torch.nn.Linear(64, 65)
loss_fn = cross_entropy_loss(readout)

h = block.norm(x)
print(f"x                          {tuple(x.shape)}  (B, T, d)")
print(f"LayerNorm(x)               {tuple(h.shape)}")
h, conv_buffer = block.conv(h)
print(f"causal conv (window 4)     {tuple(h.shape)}  carries the last 3 inputs "
      f"{tuple(conv_buffer.shape)}")
y, titans_state = block.titans(h)
print(f"self-modifying Titans      {tuple(y.shape)}  main memory per head "
      f"{tuple(titans_state.memory_second.shape)} (B, H, hidden, d_h)")
cms_out = block.cms(x + y, targets, loss_fn=loss_fn)
print(f"CMS(x + Titans)            {tuple(cms_out.output.shape)}  blocks: chunk sizes "
      f"{block.cms.chunk_sizes}, rates {block.cms.learning_rates}, CMS levels "
      f"{block.cms.level_of_block}")
print(f"per-token CMS loss         {tuple(cms_out.losses.shape)}  (the last one waits for its "
      f"target: pending = {cms_out.state.pending_input is not None})")

# %% [markdown]
# **Check.** The block's own forward pass is exactly this composition.

# %%
out = block(x, targets, loss_fn=loss_fn)
difference = (out.output - cms_out.output).abs().max().item()
print(f"max |HopeBlock − by hand| = {difference:.2e}")
assert difference < 1e-6

# %% [markdown]
# ## 2 · The language model, and its size next to a Transformer
#
# `hope.HopeLM` is token embedding → n HOPE blocks → final LayerNorm → LM head tied to the
# embedding. `hope.matched_models` builds a HopeLM and the `TransformerLM` (same depth and
# heads) whose width brings its parameter count closest.
#
# Per block HOPE holds $3d^2$ (input, query and output projections of the Titans) + the small
# per-head memories + 2 CMS blocks of $2 \cdot d \cdot 2d$ each $\approx 11$–$12\,d^2$; a
# Transformer block holds $12\,d^2$ ($4d^2$ attention, $8d^2$ MLP). So at equal width the two are
# almost the same size.

# %%
corpus = load_corpus()
vocabulary = corpus.vocabulary
hope_model, transformer_model = hope.matched_models(corpus.vocab_size, 64, 2, 4,
                                                    context_length=64)
for name, model in (("HopeLM", hope_model), ("TransformerLM", transformer_model)):
    count = parameter_count(model)
    print(f"{name:14s} d_model {model.d_model:4d}: {count.total:8,} parameters "
          f"({count.non_embedding:,} without embeddings)")

# %% [markdown]
# ## 3 · Causality and streaming generation
#
# **Causality.** Every piece is causal: the convolution pads on the left, the Titans read the
# state of the previous chunk boundary, and a CMS block only applies a chunk's update once the
# chunk's last target (the *next* token) has arrived. So changing tokens after position t must
# not change any logit at or before t.

# %%
passage = corpus.text[:smoke(160, 40)]
idx = vocabulary.encode(passage)[None]  # (1, T)
with torch.no_grad():
    logits, _ = hope_model(idx)
    changed = idx.clone()
    t = idx.shape[1] // 2
    changed[:, t + 1:] = torch.randint(corpus.vocab_size, (1, idx.shape[1] - t - 1),
                                       generator=generator)
    other, _ = hope_model(changed)
past = (other[:, :t + 1] - logits[:, :t + 1]).abs().max().item()
future = (other[:, t + 1:] - logits[:, t + 1:]).abs().max().item()
print(f"changed tokens after t = {t}: max logit change at ≤ t: {past:.1e}, after t: {future:.2f}")
assert past == 0.0

# %% [markdown]
# **Streaming generation.** A Transformer re-reads its window for every new token (or keeps a
# KV cache that grows). HOPE reads the prompt once and then feeds one token at a time, carrying
# a fixed-size state: the conv buffer, the Titans' memories (and their partial chunk), and the
# CMS's fast parameters, gradient sums and pending position (whose target is the token just
# sampled). The logits it produces equal those of a single pass over the whole text.

# %%
prompt = vocabulary.encode("ROMEO:\n")[None]
tokens, step_logits = hope_model.generate(prompt, smoke(60, 12), temperature=0.0,
                                          return_logits=True)
with torch.no_grad():
    full_logits, _ = hope_model(tokens[:, :-1])
streaming_error = (step_logits - full_logits[:, prompt.shape[1] - 1:]).abs().max().item()
print(f"max |streaming logits − one full pass| = {streaming_error:.1e} (float32)")
assert streaming_error < 1e-5
print("untrained sample:", repr(vocabulary.decode(tokens[0])))

# %% [markdown]
# ## 4 · Watching every memory, token by token
#
# `hope.trace_passage` feeds a passage one token at a time (exact, as above) and records, per
# layer: the Titans' gates $\eta_t$, $\alpha_t$; how much the generated key and value change
# per token; $\lVert S_t - S_0\rVert$ of the main memory and of the $k, v, \eta, \alpha$
# memories; and $\lVert \theta_t - \theta_0\rVert$ of each CMS block, labelled by its CMS level,
# with its update ticks. These are the timescales of the nested system: the keys and values
# change with every token, the Titans memories (level 1) drift within the context, the CMS's
# level 1 (block 1) jumps every 32 tokens, and its level 2 (block 0, $\eta = 0$) stays put
# within a context.
#
# First the untrained model (a static figure).

# %%
untrained_trace = hope.trace_passage(hope_model, idx)
viz.plot_hope_timescales(**untrained_trace.layer(0), token=idx.shape[1] - 2, text=passage,
                         title="untrained HOPE, layer 0")

# %% [markdown]
# ## 5 · A briefly trained HOPE
#
# A few hundred AdamW steps on Tiny Shakespeare (batch 16, windows of 64; nlbook.train's loop),
# trained **statefully** (`carry_state=True`, chapter 6 explains it): every batch row reads its
# own stretch of text, window after window, with HOPE's memories carried from one window to the
# next, so that in training every in-context memory closes many chunks (a fresh 64-character
# window would let the main memory, whose chunk is 64, close none). The CMS's block 0 and every
# initial state (Titans memories, the CMS's block 1) are learned here, by the outer optimizer,
# across contexts: the weights, the slowest level of the nested system (level 4 of chapter 0's
# map, after AdamW's moments).

# %%
config = TrainConfig(model="hope", d_model=64, n_layers=2, n_heads=4, context_length=64,
                     carry_state=True, stream_length=512,
                     batch_size=16, steps=smoke(300, 12), learning_rate=3e-3,
                     min_learning_rate=3e-4, warmup_steps=smoke(20, 2),
                     eval_interval=smoke(100, 6), eval_batches=smoke(10, 2))
start = time.perf_counter()
result = train(config, corpus=corpus, progress=False, log=None)
trained_model = result.model
history = result.history
first, last = history["train_loss"][0], sum(history["train_loss"][-10:]) / 10
print(f"{result.step} steps in {time.perf_counter() - start:.0f} s: training loss {first:.2f} → "
      f"{last:.2f} nats/char (mean of the last 10); validation {history['val_loss']}")
viz.plot_training_curves(history["train_steps"], history["train_loss"], history["val_steps"],
                         history["val_loss"])

# %%
trained_trace = hope.trace_passage(trained_model, idx)
sample = trained_model.generate(prompt, smoke(200, 12), temperature=0.8, top_k=20,
                                generator=torch.Generator().manual_seed(0))
print(vocabulary.decode(sample[0]))

# %% [markdown]
# **The per-timescale explorer.** Drag or play the token slider; switch the layer and the model
# (untrained / trained). Watch the loss panel fall at predictable characters, the CMS's level 1
# move only at its update ticks, and the bars show which memories are active *now*.

# %%
traces = {"untrained": [untrained_trace.layer(i) for i in range(2)],
          "trained": [trained_trace.layer(i) for i in range(2)]}
viz.plot_hope_passage(traces, passage, token=idx.shape[1] // 2, layer=1, model="trained")

# %%
widgets.explore(
    viz.plot_hope_passage,
    {"token": widgets.int_slider(idx.shape[1] // 2, 0, idx.shape[1] - 1, description="token"),
     "layer": widgets.dropdown([0, 1], 0, description="layer"),
     "model": widgets.dropdown(["untrained", "trained"], "trained", description="model")},
    fixed={"traces": traces, "text": passage},
    play="token",
)

# %% [markdown]
# ## 6 · Speed: HOPE against the Transformer
#
# Training tokens per second (forward, backward, AdamW step) on one thread, at matched size.
# `python -m nlbook.bench hope` runs the same measurement at about 1M parameters (d = 144,
# 4 layers, batch 16, context 128); we use a smaller setting here to stay quick.

# %%
speed_hope, speed_transformer = hope.matched_models(corpus.vocab_size, smoke(96, 32),
                                                    smoke(4, 2), 4,
                                                    context_length=smoke(128, 32))
names, speeds, sizes = [], [], []
for name, model in (("HOPE", speed_hope), ("Transformer", speed_transformer)):
    names.append(name)
    speeds.append(hope.training_tokens_per_second(model, batch=smoke(8, 2),
                                                  length=smoke(128, 32), steps=smoke(2, 1)))
    sizes.append(parameter_count(model).total)
    print(f"{name:12s} {sizes[-1]:9,} parameters  {speeds[-1]:7.0f} tokens/s")
print(f"HOPE / Transformer throughput: {speeds[0] / speeds[1]:.2f}")
viz.plot_speed_and_size(names, speeds, sizes)

# %% [markdown]
# **Reading the numbers.** On a CPU HOPE trains several times slower than a Transformer of the
# same size (`python -m nlbook.bench hope` measured 0.37–0.39× at 1M parameters, one thread).
# Attention at context 128 is one fused kernel; HOPE runs the Titans chunk by chunk
# (triangular solves on small matrices) and the CMS segment by segment with an inner backward
# pass. Generation is the other way round: HOPE's state has a fixed size, so its cost per token
# does not grow with the text. Per *step* HOPE learns at least as fast in short runs (one
# measurement, 150 steps at the size of section 5: validation 2.34 nats/char for HOPE, 2.52
# for the Transformer); per *second* on a CPU, the Transformer wins in this regime. Chapter 6
# compares the two properly, at equal wall-clock time.

# %% [markdown]
# ## 7 · Exercises
#
# Two kinds. **Predict, then run:** decide what will happen and write your letter in
# `prediction` *before* you run the cell; the cell runs the experiment and `ex.answer` says
# whether you were right and why. **Implement:** write the function in its cell and run it; the
# checker names what is wrong (it reports "not done yet" while the stub is untouched). Stuck?
# `ex.solution("name")` prints a solution; try your own first.
#
# **Question 1 · one changed token (predict, then run).** Feed a HOPE language model 40 tokens,
# then the same 40 tokens with only the *last* one changed. Which positions' logits change?
#
# (a) every position's · (b) only the last position's · (c) none · (d) the last 4 positions'
# (the convolution's window)

# %%
prediction = None  # your prediction: "a", "b", "c" or "d"

small_model = hope.HopeLM(65, 32, 1, 2, seed=0)
tokens_40 = torch.randint(65, (1, 40), generator=generator)
last_changed = tokens_40.clone()
last_changed[0, -1] = (last_changed[0, -1] + 1) % 65
with torch.no_grad():
    change = (small_model(tokens_40)[0] - small_model(last_changed)[0]).abs().amax(-1)[0]
print("positions whose logits changed:", torch.nonzero(change > 0).flatten().tolist())
ex.answer("causal", prediction)

# %% [markdown]
# **Question 2 · the size of the state (predict, then run).** The same model streams 10 tokens,
# or 1,000 tokens, with `model.stream`. How does the size of the state it carries afterwards
# (the number of values in it) compare?
#
# (a) about 100 times larger after 1,000 tokens · (b) the same size · (c) about 10 times
# larger · (d) smaller: the memories compress as they read

# %%
import dataclasses

prediction = None  # "a", "b", "c" or "d"


def count_values(state) -> int:
    """How many numbers a (nested) state holds: tensors inside dataclasses, lists and dicts."""
    if isinstance(state, torch.Tensor):
        return state.numel()
    if dataclasses.is_dataclass(state):
        return sum(count_values(getattr(state, field.name))
                   for field in dataclasses.fields(state))
    if isinstance(state, (list, tuple)):
        return sum(count_values(item) for item in state)
    if isinstance(state, dict):
        return sum(count_values(item) for item in state.values())
    return 0


for length in (10, smoke(1000, 100)):
    with torch.no_grad():
        _, carried = small_model.stream(torch.randint(65, (1, length), generator=generator))
    print(f"after {length:4d} tokens the state holds {count_values(carried):,} values")
ex.answer("state_size", prediction)

# %% [markdown]
# **Exercise 1 · the causal convolution (implement).** Write `causal_conv(x, weight)`: x
# (B, T, d), weight (d, w) → y (B, T, d) with
# $y_t = \sum_j \mathrm{weight}[:, j] \odot x_{t-w+1+j}$, zeros before the start (so
# `weight[:, -1]` multiplies the current token).

# %%
def causal_conv(x, weight):
    raise NotImplementedError("your code here")


ex.check_causal_conv(causal_conv)

# %% [markdown]
# **Exercise 2 · assemble the block (implement).** Write `block_forward(block, x, targets,
# loss_fn)` from the parts of a `hope.HopeBlock` (`block.norm`, `block.conv`, `block.titans`,
# `block.cms`; section 1 walked through them) and return the block's output (B, T, d).

# %%
def block_forward(block, x, targets, loss_fn):
    raise NotImplementedError("your code here")


ex.check_block_forward(block_forward)

# %% [markdown]
# **Exercise 3 · streaming greedy decoding (implement).** Write `stream_greedy(model, prompt,
# n)`: read the prompt (B, T) once with `model.stream`, then `n` times pick the most likely
# next token, append it and feed only that token, carrying the state. Return (B, T + n).

# %%
def stream_greedy(model, prompt, n):
    raise NotImplementedError("your code here")


ex.check_stream_greedy(stream_greedy)

# %% [markdown]
# ## Summary
#
# - HOPE = self-modifying Titans → CMS. nlbook adds what the paper leaves out: pre-norm, a
#   causal depth-wise convolution (window 4) on the memory's input, residuals around both
#   memories, no positional embedding, a final norm and a tied LM head.
# - The CMS's in-context task loss is each block's next-token cross-entropy through the model's
#   readout; the target arrives one token late (pending), so the whole model is causal and
#   streams exactly: generation carries the state and equals a full forward pass.
# - The per-timescale view shows the nesting, levels 1 to 4: keys/values and the Titans memories
#   (every token) → the CMS's block 1 (every 32 tokens) → AdamW's moments → the weights, every
#   initial state and the CMS's block 0 (every training step, across contexts).
# - On a CPU HOPE is several times slower to train than a Transformer of the same size.
#
# **Next chapter:** train HOPE and the Transformer for equal wall-clock time on Tiny
# Shakespeare and compare validation loss with n-gram baselines.
#
# **Where this deviates from the paper.** The paper's normalisation, convolution placement,
# chunk sizes, CMS blocks and learning rates for its LMs are not given; ours are chosen for
# CPU speed. The CMS's in-context updates are differentiated first-order (the updates are
# constants for the outer gradient, like first-order MAML); `first_order=False` gives the full
# second-order gradient (measured 6–8% slower per training step at 1M parameters). Each
# middle block's CMS uses a
# "logit-lens" loss through the final readout, not the final layer's loss (a cost choice). The
# CMS's η = 0 block is updated by AdamW at every training step rather than at a lower outer
# frequency
# (`nlbook.cms.MultiRateOptimizer` would do that). Sizes here are ~10⁵–10⁶ parameters, four
# orders of magnitude below the paper's.
