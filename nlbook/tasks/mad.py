"""MAD's six synthetic tasks (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
Architectures"), token level, as batches for a causal language model.

The task definitions follow MAD's descriptions (its repository athms/mad-lab, the paper's
section 3); the code is this course's. Every batch is ``(inputs, targets)``, int64 (B, T):
``targets[b, t]`` is what the model must output at position ``t`` (it has read
``inputs[b, :t + 1]``), −1 where nothing is scored. Vocabularies split as MAD splits them.

- ``in-context-recall``: T/2 pairs ``k v``, keys drawn with replacement from the lower half of
  the vocabulary, each key's value drawn once per sequence from the upper half and kept; the
  last pair's key is one already shown (MAD's probe). MAD's multi-query reading: every pair
  whose key was shown before is scored, the target at the key's position being its value.
- ``fuzzy-in-context-recall``: keys and values are *motifs* of 1 to ``motif_size`` distinct
  tokens (keys from the lower half of [0, V − 1), values from the upper half, V − 1 the pad
  that fills the front of the row); one probe pair is planted in the row and repeated at its
  end. Scored: every token of the value of a key shown before (each predicted from the token
  before it). MAD's test rows use keys of ``motif_size`` tokens only (``test=True``).
- ``noisy-in-context-recall``: in-context recall with the top ``noise_vocab_size`` tokens as
  noise: each pair slot but one is, with probability ``frac_noise``, two noise tokens instead.
- ``selective-copying``: ``tokens_to_copy`` tokens from [0, V − 2) at random positions (order
  kept) among blanks (V − 2) in the first T − n − 1 positions, then the copy token (V − 1),
  then n blanks; the target at the i-th of those blanks is the i-th token to copy (MAD's
  alignment).
- ``compression``: T − 1 tokens from [0, V − 1), then the compression token V − 1; the targets
  are the inputs themselves, every position scored. MAD reads this task with an
  encoder-decoder: the model's state at the last position (after the compression token) is the
  only thing a small MLP decoder sees, with the position to reconstruct
  (:class:`nlbook.claims.mad.CompressionReader`). A causal "sequence, marker, reproduce" task
  is *not* used: attention could copy the tokens back from the context, so it would test
  copying for the Transformer and compression only for the recurrent models.
- ``memorization``: T/2 pairs ``k ⋆`` (⋆ = V − 1, MAD's insert token), keys drawn with
  replacement from [0, K), K = (V − 1) // 2; the target at ⋆ is the key's value from a
  **fixed** table (a bijection onto [K, 2K) ⊂ [K, V − 1)) drawn from ``task_seed`` (MAD's seed
  12345), not from the batch generator: training and test rows share it, and the only way to
  answer is to have stored the table in the weights.

What differs from MAD: batches are drawn fresh at every step (MAD trains 200 epochs on 12,800
fixed sequences, 256 for memorisation); the training targets are the scored targets (MAD
trains the recall tasks on every next token and scores the recalled values); the sizes are
scaled to a CPU (:data:`MAD_SETTINGS`, MAD's baselines beside them).
"""

from __future__ import annotations

import torch

from nlbook._checks import (
    ArgumentTypeError,
    check_bool,
    check_int,
    check_memory,
    check_positive_int,
    check_scalar_in_range,
    describe,
)

__all__ = ["MAD_SETTINGS", "MAD_TASKS", "MEMORIZATION_SEED", "mad_batch", "mad_chance",
           "memorization_table"]

#: The six tasks, in MAD's order of the paper's Table 4 columns where it has one.
MAD_TASKS: tuple[str, ...] = ("in-context-recall", "fuzzy-in-context-recall",
                              "noisy-in-context-recall", "selective-copying", "compression",
                              "memorization")

#: Each task's setting here (scaled to a CPU) and MAD's baseline in the comment: sequence
#: length T ≤ 64 and vocabulary V ≤ 32, except memorisation, which keeps MAD's V = 256 (with
#: V ≤ 32 it would be a table of 15 facts).
MAD_SETTINGS: dict[str, dict[str, float | int]] = {
    # MAD: V 16, T 128
    "in-context-recall": {"vocab_size": 16, "sequence_length": 64},
    # MAD: V 16, T 128, motifs of 1-3 tokens
    "fuzzy-in-context-recall": {"vocab_size": 16, "sequence_length": 64, "motif_size": 3},
    # MAD: V 32 (16 noise tokens), T 128, 20 % noise
    "noisy-in-context-recall": {"vocab_size": 32, "sequence_length": 64,
                                "noise_vocab_size": 16, "frac_noise": 0.2},
    # MAD: V 16, T 256, 16 tokens to copy
    "selective-copying": {"vocab_size": 16, "sequence_length": 64, "tokens_to_copy": 8},
    # MAD: V 16, T 32 (unchanged)
    "compression": {"vocab_size": 16, "sequence_length": 32},
    # MAD: V 256, T 32 (unchanged)
    "memorization": {"vocab_size": 256, "sequence_length": 32},
}

#: MAD's seed of the memorisation table.
MEMORIZATION_SEED = 12345
_OPTIONS = ("noise_vocab_size", "frac_noise", "motif_size", "tokens_to_copy")


class _Draws:
    """Uniform draws from a torch.Generator, taken in blocks (a Python loop over tokens
    would otherwise call torch once per token)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.buffer: list[float] = []

    def below(self, n: int) -> int:
        """An int uniform in [0, n)."""
        if not self.buffer:
            self.buffer = torch.rand(512, generator=self.generator,
                                     dtype=torch.float64).tolist()[::-1]
        return min(n - 1, int(self.buffer.pop() * n))

    def chance(self, p: float) -> bool:
        return p > 0 and self.below(1 << 30) < p * (1 << 30)

    def motif(self, low: int, count: int, size: int) -> tuple[int, ...]:
        """``size`` distinct tokens from [low, low + count), in random order."""
        chosen: list[int] = []
        while len(chosen) < size:  # size ≤ count (checked): rejection ends quickly
            token = low + self.below(count)
            if token not in chosen:
                chosen.append(token)
        return tuple(chosen)


def _recall_row(draws: _Draws, length: int, vocab: int, noise: int, fraction: float
                ) -> tuple[list[int], list[int]]:
    """In-context recall (noisy with ``noise`` > 0): tokens and targets of one row."""
    plain = vocab - noise
    half = plain // 2
    slots = length // 2
    clean_slot = draws.below(slots - 1)  # at least one pair before the probe (MAD)
    tokens, targets = [], []
    table: dict[int, int] = {}
    for slot in range(slots - 1):
        if slot != clean_slot and draws.chance(fraction):
            tokens += [plain + draws.below(noise), plain + draws.below(noise)]
            targets += [-1, -1]
            continue
        key = draws.below(half)
        seen = key in table
        if not seen:
            table[key] = half + draws.below(plain - half)
        tokens += [key, table[key]]
        targets += [table[key] if seen else -1, -1]
    shown = list(table)
    key = shown[draws.below(len(shown))]  # the probe: a key already shown
    tokens += [key, table[key]]
    targets += [table[key], -1]
    return tokens, targets


def _fuzzy_row(draws: _Draws, length: int, vocab: int, motif: int, test: bool
               ) -> tuple[list[int], list[int]]:
    """Fuzzy in-context recall: tokens and targets of one row (pad in front)."""
    pad = vocab - 1
    half = pad // 2
    key_sizes = [motif] if test else list(range(1, motif + 1))

    def key_of(size: int) -> tuple[int, ...]:
        return draws.motif(0, half, size)

    def value_of(size: int) -> tuple[int, ...]:
        return draws.motif(half, pad - half, size)

    probe_key = key_of(key_sizes[draws.below(len(key_sizes))])
    probe_value = value_of(1 + draws.below(motif))
    probe = len(probe_key) + len(probe_value)
    bound = length - probe - 2 * motif  # room left for the planted probe and the final one
    planted_at = draws.below(bound)
    tokens: list[int] = []
    scored: list[bool] = []
    table: dict[tuple[int, ...], tuple[int, ...]] = {}
    planted = False
    while len(tokens) < bound:
        key_size = key_sizes[draws.below(len(key_sizes))]
        value_size = 1 + draws.below(motif)
        if not planted and (len(tokens) >= planted_at or len(tokens) + 2 * motif >= bound):
            key, value = probe_key, probe_value
        else:
            key = key_of(key_size)
            if key == probe_key:
                value = probe_value
            elif key in table:
                value = table[key]
            else:
                value = value_of(value_size)
        planted = planted or key == probe_key
        tokens += [*key, *value]
        scored += [False] * len(key) + [key in table] * len(value)
        table[key] = value
    tokens += [*probe_key, *probe_value]
    scored += [False] * len(probe_key) + [True] * len(probe_value)
    front = length - len(tokens)
    tokens = [pad] * front + tokens
    scored = [False] * front + scored
    targets = [tokens[t + 1] if scored[t + 1] else -1 for t in range(length - 1)] + [-1]
    return tokens, targets


def _check_options(task: str, given: dict[str, object]) -> dict[str, object]:
    """The task's setting with the given options in place; ValueError for an option the task
    does not take."""
    setting = dict(MAD_SETTINGS[task])
    for name, value in given.items():
        if value is None:
            continue
        if name not in setting:
            raise ValueError(f"{name} does not apply to the task {task!r} (its options: "
                             f"{', '.join(sorted(setting))}), got {value!r}")
        setting[name] = value
    return setting


def mad_batch(task: str, batch_size: int, *, generator: torch.Generator,
              vocab_size: int | None = None, sequence_length: int | None = None,
              noise_vocab_size: int | None = None, frac_noise: float | None = None,
              motif_size: int | None = None, tokens_to_copy: int | None = None,
              test: bool = False, task_seed: int = MEMORIZATION_SEED
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of one MAD task (see the module docstring for each task's rows).

    Args:
        task: one of :data:`MAD_TASKS`.
        batch_size: B.
        generator: a CPU torch.Generator, every random draw of the batch.
        vocab_size, sequence_length: V and T (default: :data:`MAD_SETTINGS`).
        noise_vocab_size, frac_noise: noisy in-context recall's noise tokens and the chance of
            a noise slot (default 16 and 0.2).
        motif_size: fuzzy in-context recall's longest key and value motif (default 3).
        tokens_to_copy: selective copying's n (default 8).
        test: MAD's test rows (fuzzy recall: keys of ``motif_size`` tokens only; the other
            tasks draw test rows as training rows).
        task_seed: the seed of memorisation's fixed key → value table (MAD's 12345).

    An option that the task does not take must be None.

    Returns:
        inputs, targets: int64 (B, T); targets −1 where nothing is scored.
    """
    if not isinstance(task, str):
        raise ArgumentTypeError(f"task must be one of {list(MAD_TASKS)}, got {describe(task)}")
    if task not in MAD_TASKS:
        raise ValueError(f"task must be one of {list(MAD_TASKS)}, got {task!r}")
    check_positive_int("batch_size", batch_size)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    check_positive_int("vocab_size", vocab_size, allow_none=True)
    check_positive_int("sequence_length", sequence_length, allow_none=True)
    check_positive_int("noise_vocab_size", noise_vocab_size, allow_none=True)
    if frac_noise is not None:
        check_scalar_in_range("frac_noise", frac_noise, 0.0, 1.0, high_inclusive=False)
    check_positive_int("motif_size", motif_size, allow_none=True)
    check_positive_int("tokens_to_copy", tokens_to_copy, allow_none=True)
    check_bool("test", test)
    check_int("task_seed", task_seed, low=0)
    setting = _check_options(task, dict(
        vocab_size=vocab_size, sequence_length=sequence_length,
        noise_vocab_size=noise_vocab_size, frac_noise=frac_noise, motif_size=motif_size,
        tokens_to_copy=tokens_to_copy))
    vocab, length = int(setting["vocab_size"]), int(setting["sequence_length"])
    check_memory("batch_size and sequence_length", 2 * batch_size * length, bytes_per_element=8)
    _check_sizes(task, vocab, length, setting)
    draws = _Draws(generator)
    inputs = torch.empty(batch_size, length, dtype=torch.int64)
    targets = torch.full((batch_size, length), -1, dtype=torch.int64)
    if task in ("in-context-recall", "noisy-in-context-recall"):
        noise = int(setting.get("noise_vocab_size", 0))
        fraction = float(setting.get("frac_noise", 0.0))
        for row in range(batch_size):
            tokens, answers = _recall_row(draws, length, vocab, noise, fraction)
            inputs[row], targets[row] = torch.tensor(tokens), torch.tensor(answers)
    elif task == "fuzzy-in-context-recall":
        for row in range(batch_size):
            tokens, answers = _fuzzy_row(draws, length, vocab, int(setting["motif_size"]), test)
            inputs[row], targets[row] = torch.tensor(tokens), torch.tensor(answers)
    elif task == "selective-copying":
        copies = int(setting["tokens_to_copy"])
        region = length - copies - 1
        content = torch.randint(vocab - 2, (batch_size, copies), generator=generator)
        places = torch.rand(batch_size, region, generator=generator).argsort(dim=1)[:, :copies]
        places = places.sort(dim=1).values
        inputs.fill_(vocab - 2)
        inputs.scatter_(1, places, content)
        inputs[:, region] = vocab - 1
        targets[:, region + 1:] = content
    elif task == "compression":
        inputs[:, :-1] = torch.randint(vocab - 1, (batch_size, length - 1), generator=generator)
        inputs[:, -1] = vocab - 1
        targets.copy_(inputs)
    else:  # memorization
        values = memorization_table(vocab, task_seed)
        keys = torch.randint(len(values), (batch_size, length // 2), generator=generator)
        inputs[:, 0::2] = keys
        inputs[:, 1::2] = vocab - 1
        targets[:, 1::2] = values[keys]
    return inputs, targets


def memorization_table(vocab_size: int, task_seed: int = MEMORIZATION_SEED) -> torch.Tensor:
    """Memorisation's fixed table: ``values[k]`` (int64 (K,), K = (V − 1) // 2) is key k's
    value, distinct values in [K, V − 1), drawn from ``task_seed`` alone."""
    check_int("vocab_size", vocab_size, low=5)
    check_int("task_seed", task_seed, low=0)
    check_memory("vocab_size", vocab_size, bytes_per_element=8)
    keys = (vocab_size - 1) // 2
    table = torch.Generator().manual_seed(task_seed)
    return keys + torch.randperm(vocab_size - 1 - keys, generator=table)[:keys]


def _check_sizes(task: str, vocab: int, length: int, setting: dict[str, object]) -> None:
    """ValueError naming the size that leaves the task no room."""
    if task in ("in-context-recall", "noisy-in-context-recall"):
        noise = int(setting.get("noise_vocab_size", 0))
        if vocab - noise < 2:
            raise ValueError(f"vocab_size ({vocab}) must leave at least 2 tokens for keys and "
                             f"values beside noise_vocab_size ({noise}) noise tokens")
        if length < 4 or length % 2:
            raise ValueError(f"sequence_length must be even and >= 4 (pairs of tokens), got "
                             f"{length}")
    elif task == "fuzzy-in-context-recall":
        motif = int(setting["motif_size"])
        if (vocab - 1) // 2 < motif:
            raise ValueError(f"vocab_size must be >= {2 * motif + 1} for motifs of {motif} "
                             f"distinct key tokens, got {vocab}")
        if length < 6 * motif:
            raise ValueError(f"sequence_length must be >= {6 * motif} (= 6 * motif_size), got "
                             f"{length}")
    elif task == "selective-copying":
        copies = int(setting["tokens_to_copy"])
        if vocab < 3:
            raise ValueError(f"vocab_size must be >= 3 (a blank, a copy token and content), "
                             f"got {vocab}")
        if length <= 2 * copies + 1:
            raise ValueError(f"sequence_length must be > 2 * tokens_to_copy + 1 "
                             f"({2 * copies + 1}), got {length}")
    elif task == "compression":
        if vocab < 2 or length < 2:
            raise ValueError(f"vocab_size and sequence_length must be >= 2 for compression, "
                             f"got {vocab} and {length}")
    else:
        if vocab < 5:
            raise ValueError(f"vocab_size must be >= 5 for memorization (keys, values and the "
                             f"insert token), got {vocab}")
        if length < 2 or length % 2:
            raise ValueError(f"sequence_length must be even and >= 2 (key, insert), got "
                             f"{length}")


def mad_chance(task: str, vocab_size: int | None = None, *,
               noise_vocab_size: int | None = None) -> float:
    """Accuracy of a uniform guess over the tokens a scored target can be: the value half for
    the recall tasks and memorisation, the content tokens for copying and compression."""
    if not isinstance(task, str) or task not in MAD_TASKS:
        raise ValueError(f"task must be one of {list(MAD_TASKS)}, got {task!r}")
    check_positive_int("vocab_size", vocab_size, allow_none=True)
    check_positive_int("noise_vocab_size", noise_vocab_size, allow_none=True)
    setting = _check_options(task, dict(vocab_size=vocab_size,
                                        noise_vocab_size=noise_vocab_size))
    vocab = int(setting["vocab_size"])
    check_int("vocab_size", vocab, low=5)
    if task in ("in-context-recall", "noisy-in-context-recall"):
        plain = vocab - int(setting.get("noise_vocab_size", 0))
        return 1 / max(1, plain - plain // 2)
    if task == "fuzzy-in-context-recall":
        return 1 / ((vocab - 1) - (vocab - 1) // 2)
    if task == "selective-copying":
        return 1 / (vocab - 2)
    if task == "compression":
        return 1 / (vocab - 1)
    return 1 / ((vocab - 1) - (vocab - 1) // 2)
