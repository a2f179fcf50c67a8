"""Spoilers: one solution for every implement-it exercise of the course.

The notebooks never show these; ``nlbook.exercises.<chapter>.solution("name")`` prints one
(e.g. ``nlbook.exercises.associative_memory.solution("delta_step")``). The tests check that
each passes its checker. Each function carries the name the notebook gives the exercise.
"""

from __future__ import annotations

import math

import torch

__all__ = ["BY_CHAPTER"]


# ----------------------------------------------------------------------------- chapter 0

def hebbian_step(S, k, v, beta):
    return S + beta * torch.outer(k, v)  # −k vᵀ + (S − S_t)/β = 0


def levels_of(frequencies):
    ranked = sorted(set(frequencies), reverse=True)  # the fastest first
    return [ranked.index(frequency) + 1 for frequency in frequencies]


# ----------------------------------------------------------------------------- chapter 1

def delta_step(S, k, v, beta, decay):
    S = decay * S  # the gate scales the old memory first
    return S - beta * torch.outer(k, k @ S - v)  # erase what k reads now, write v


def titans_step(M, Z, k, v, lr, momentum, forget):
    Z_new = momentum * Z - lr * torch.outer(k, k @ M - v)  # Z: the surprise (momentum)
    return (1 - forget) * M + Z_new, Z_new


# ----------------------------------------------------------------------------- chapter 2

def momentum_step(memory, gradient, lr, momentum):
    return momentum * memory - lr * gradient


def gradients_for_mass(beta, fraction):
    count = 1
    while 1 - beta**count < fraction:  # the last n gradients carry 1 − βⁿ of the weight
        count += 1
    return count


def delta_momentum_step(memory, gradient, lr, momentum):
    unit = gradient / gradient.norm()
    return momentum * memory - (memory @ unit) * unit - lr * gradient  # erase uses the old m


# ----------------------------------------------------------------------------- chapter 2b

def ns_step(X):
    return 1.5 * X - 0.5 * X @ X.T @ X  # σ → 1.5 σ − 0.5 σ³


# ----------------------------------------------------------------------------- chapter 3

def chunk_update(W, inputs, targets, rate):
    errors = inputs @ W.T - targets  # (C, d): every error at the chunk-start W
    return W - rate * errors.T @ inputs  # the SUM of the C outer products (W x_t − y_t) x_tᵀ


def update_steps(length, chunk):
    return list(range(chunk, length + 1, chunk))  # a chunk closes after every C tokens


# ----------------------------------------------------------------------------- chapter 4

def effective_step(lr, x):
    return lr / (1 + lr * float(x @ x))


def dgd_step(W, x, grad_y, lr):
    lr_prime = lr / (1 + lr * float(x @ x))
    return W - lr_prime * torch.outer(W @ x + grad_y, x)  # = W(I − η′xxᵀ) − η′ grad_y xᵀ


# ----------------------------------------------------------------------------- chapter 5

def causal_conv(x, weight):
    window = weight.shape[1]
    padded = torch.nn.functional.pad(x, (0, 0, window - 1, 0))  # zeros before the start
    return sum(weight[:, j] * padded[:, j:j + x.shape[1]] for j in range(window))


def block_forward(block, x, targets, loss_fn):
    hidden, _ = block.conv(block.norm(x))
    memory, _ = block.titans(hidden)
    return block.cms(x + memory, targets, loss_fn=loss_fn).output


def stream_greedy(model, prompt, n):
    with torch.no_grad():
        logits, state = model.stream(prompt)  # read the prompt once
        for _ in range(n):
            token = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            prompt = torch.cat([prompt, token], dim=1)
            logits, state = model.stream(token, state)  # only the new token, with the state
    return prompt


# ----------------------------------------------------------------------------- chapter 6

def bits_per_char(nats):
    return nats / math.log(2.0)  # log2 p = ln p / ln 2


def top_p_filter(logits, top_p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probabilities = torch.softmax(sorted_logits, dim=-1)
    before = probabilities.cumsum(dim=-1) - probabilities  # mass of the more likely ones
    drop = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before >= top_p)
    return logits.masked_fill(drop, float("-inf"))


def bigram_loss(ids, vocab_size):
    counts = torch.bincount(ids[:-1] * vocab_size + ids[1:], minlength=vocab_size**2)
    counts = counts.reshape(vocab_size, vocab_size).double()  # counts[a, b] = c(a, b)
    probabilities = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    seen = counts > 0
    return float(-(counts[seen] * probabilities[seen].log()).sum() / counts.sum())


# ----------------------------------------------------------------------------- chapter 7

def is_anbn(string):
    half = len(string) // 2
    # n >= 1 a's, then exactly as many b's: an even length, a's in front, b's behind.
    return len(string) >= 2 and len(string) % 2 == 0 and string == "a" * half + "b" * half


def forgetting_and_recovery(steps, loss_a, phase_ends):
    at = dict(zip(steps, loss_a, strict=True))  # the loss after each evaluated step
    before, after, end = (at[step] for step in phase_ends)  # ends of A, of B, of A again
    return after - before, after - end


BY_CHAPTER = {
    "levels": {"hebbian_step": hebbian_step, "levels_of": levels_of},
    "associative_memory": {"delta_step": delta_step, "titans_step": titans_step},
    "nested_optimizers": {"momentum_step": momentum_step, "gradients_for_mass":
                          gradients_for_mass, "delta_momentum_step": delta_momentum_step},
    "muon_m3": {"ns_step": ns_step},
    "continuum_memory": {"chunk_update": chunk_update, "update_steps": update_steps},
    "self_modifying": {"effective_step": effective_step, "dgd_step": dgd_step},
    "hope_block": {"causal_conv": causal_conv, "block_forward": block_forward,
                   "stream_greedy": stream_greedy},
    "tiny_shakespeare": {"bits_per_char": bits_per_char, "top_p_filter": top_p_filter,
                         "bigram_loss": bigram_loss},
    "what_memory_buys": {"is_anbn": is_anbn, "forgetting_and_recovery": forgetting_and_recovery},
}
