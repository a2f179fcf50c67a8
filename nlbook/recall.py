"""Associative-recall experiments on single memories (chapter 1, section 7; our own tasks).

Two small tasks, each stated with the regime in which its result holds:

- **Key overwrite** (E1): a few distinct keys, each re-assigned fresh random values many times;
  ask for the *latest* value of every key. The delta rule's erase term replaces stale values;
  a Hebbian sum keeps every stale value and interferes with itself.
- **Capacity** (E2): N distinct random unit keys in d dimensions, each written once. With
  nearest-value decoding the Hebbian memory holds up well past N = d, while the one-pass delta
  rule is *recency-biased* once N > d: each write partly erases older directions.

Decoding: read o = Sᵀ k, pick the candidate value with the largest cosine similarity.
Keys and values are random unit vectors; everything is float64 and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbook._checks import (
    check_callable,
    check_choice,
    check_instance,
    check_int,
    check_int_sequence,
    check_memory,
    check_positive_int,
    check_same_dtype_device,
    check_scalar_in_range,
    check_shape,
    check_tensor,
    describe,
)
from nlbook.memory import delta_rule, linear_attention, titans_memory

__all__ = [
    "RULES",
    "RecallStream",
    "capacity_stream",
    "compare_rules",
    "decode_accuracy",
    "final_recall",
    "key_overwrite_stream",
    "least_squares_memory",
    "recall_trace",
    "run_rule",
]


@dataclass(frozen=True)
class RecallStream:
    """A stream of writes and the questions asked after it.

    keys, values: (T, d) written in order. key_ids: (T,) which distinct key each write uses.
    distinct_keys: (K, d). candidates: (M, d) every value a read can be decoded to.
    """

    keys: torch.Tensor
    values: torch.Tensor
    key_ids: torch.Tensor
    distinct_keys: torch.Tensor
    candidates: torch.Tensor

    def latest_value_index(self, step: int) -> torch.Tensor:
        """(K,) index into ``values`` of each key's latest write up to ``step`` (-1: none).

        Raises:
            ValueError: naming ``step`` unless it is an int in [0, T) (T writes).
        """
        check_int("step", step, low=0, high=len(self.key_ids) - 1)
        latest = torch.full((self.distinct_keys.shape[0],), -1, dtype=torch.long)
        for position in range(step + 1):
            latest[self.key_ids[position]] = position
        return latest


def _check_stream(stream) -> None:
    check_instance("stream", stream, RecallStream,
                   expected="a RecallStream (key_overwrite_stream or capacity_stream)")


def _unit_vectors(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(count, dim, generator=generator, dtype=torch.float64), dim=-1)


def key_overwrite_stream(n_keys: int = 16, n_writes: int = 256, dim: int = 64,
                         seed: int = 0) -> RecallStream:
    """E1: ``n_writes`` writes, each a fresh random value for one of ``n_keys`` random keys."""
    for name, value in (("n_keys", n_keys), ("n_writes", n_writes), ("dim", dim)):
        check_positive_int(name, value)
    check_int("seed", seed, low=0)
    check_memory("n_keys, n_writes and dim", (n_keys + 2 * n_writes) * dim + n_writes * dim * dim,
                 bytes_per_element=8)
    generator = torch.Generator().manual_seed(seed)
    distinct = _unit_vectors(n_keys, dim, generator)
    key_ids = torch.randint(n_keys, (n_writes,), generator=generator)
    values = _unit_vectors(n_writes, dim, generator)
    return RecallStream(distinct[key_ids], values, key_ids, distinct, values)


def capacity_stream(n_pairs: int = 64, dim: int = 64, seed: int = 0) -> RecallStream:
    """E2: ``n_pairs`` distinct random unit keys, each written once with a random unit value."""
    check_positive_int("n_pairs", n_pairs)
    check_positive_int("dim", dim)
    check_int("seed", seed, low=0)
    check_memory("n_pairs and dim", 2 * n_pairs * dim + n_pairs * dim * dim, bytes_per_element=8)
    generator = torch.Generator().manual_seed(seed)
    keys = _unit_vectors(n_pairs, dim, generator)
    values = _unit_vectors(n_pairs, dim, generator)
    return RecallStream(keys, values, torch.arange(n_pairs), keys, values)


#: The rules compared in the notebook, with their gates (chapter 1, section 7).
RULES: dict[str, dict[str, float]] = {
    "Hebbian (linear attention)": {"kind": "linear"},
    "Hebbian + decay 0.95": {"kind": "linear", "decay": 0.95},
    "delta rule, β = 1": {"kind": "delta", "beta": 1.0},
    "delta rule, β = 0.5": {"kind": "delta", "beta": 0.5},
    "Titans: momentum 0.5, lr 0.5, forget 0.01": {"kind": "titans", "lr": 0.5,
                                                  "momentum": 0.5, "forget": 0.01},
    "Titans: momentum 0.9, lr 0.1, forget 0": {"kind": "titans", "lr": 0.1,
                                               "momentum": 0.9, "forget": 0.0},
}


def run_rule(stream: RecallStream, kind: str, *, beta: float = 1.0, decay: float = 1.0,
             lr: float = 0.5, momentum: float = 0.0, forget: float = 0.0,
             chunk_size: int | None = 16) -> torch.Tensor:
    """Write the stream into one memory with constant gates; return every state (T, d, d).

    ``kind`` is "linear" (α = ``decay``), "delta" (β, α) or "titans" (θ = ``lr``,
    η = ``momentum``, α = ``forget``; exact online rule). Uses :mod:`nlbook.memory`.
    """
    _check_stream(stream)
    check_choice("kind", kind, ["linear", "delta", "titans"])
    check_scalar_in_range("beta", beta, 0.0, 2.0)
    check_scalar_in_range("decay", decay, 0.0, 1.0, low_inclusive=False)
    for name, value in (("lr", lr), ("momentum", momentum), ("forget", forget)):
        check_scalar_in_range(name, value, 0.0, 1.0)
    check_positive_int("chunk_size", chunk_size, allow_none=True)
    keys = stream.keys[None, None]  # (1, 1, T, d)
    values = stream.values[None, None]
    gate = torch.ones(keys.shape[:3], dtype=keys.dtype)
    decay_gate = None if decay == 1.0 else decay * gate
    if kind == "linear":
        _, _, states = linear_attention(keys, keys, values, decay=decay_gate,
                                        chunk_size=chunk_size, return_states=True)
    elif kind == "delta":
        _, _, states = delta_rule(keys, keys, values, beta * gate, decay=decay_gate,
                                  chunk_size=chunk_size, return_states=True)
    elif kind == "titans":
        _, _, (states, _) = titans_memory(keys, keys, values, lr * gate, momentum * gate,
                                          forget * gate, chunk_size=1, return_states=True)
    else:
        raise ValueError(f"kind must be 'linear', 'delta' or 'titans', got {kind!r}")
    return states[0, 0]


def least_squares_memory(stream: RecallStream) -> torch.Tensor:
    """The best linear memory in hindsight: argmin_S ‖K S - V‖² (minimum-norm), (d, d)."""
    _check_stream(stream)
    return torch.linalg.lstsq(stream.keys, stream.values, driver="gelsd").solution


def decode_accuracy(state: torch.Tensor, query_keys: torch.Tensor, target_index: torch.Tensor,
                    candidates: torch.Tensor) -> tuple[float, float]:
    """Nearest-candidate recall and mean squared read-out error.

    state (d_k, d_v); query_keys (K, d_k); target_index (K,) into candidates (M, d_v).
    Returns (fraction of queries whose read is closest in cosine to the target, mean ‖o - v‖²).
    """
    check_tensor("state", state, ndim=2, layout="(d_k, d_v)", dtype="float")
    key_dim, value_dim = state.shape
    check_shape("query_keys", query_keys, (None, key_dim), "(K, d_k) with d_k of state")
    check_shape("candidates", candidates, (None, value_dim), "(M, d_v) with d_v of state")
    check_same_dtype_device("state", state, query_keys=query_keys, candidates=candidates)
    for name, tensor in (("query_keys", query_keys), ("candidates", candidates)):
        check_tensor(name, tensor, dtype="float")
    if query_keys.shape[0] < 1 or candidates.shape[0] < 1 or key_dim < 1 or value_dim < 1:
        raise ValueError(f"state, query_keys and candidates must be non-empty, got state "
                         f"{tuple(state.shape)}, query_keys {tuple(query_keys.shape)} and "
                         f"candidates {tuple(candidates.shape)}")
    check_tensor("target_index", target_index, ndim=1, layout="(K,)", dtype="int")
    check_shape("target_index", target_index, (query_keys.shape[0],), "(K,) of query_keys")
    if int(target_index.min()) < 0 or int(target_index.max()) >= candidates.shape[0]:
        raise ValueError(f"target_index must lie in [0, {candidates.shape[0]}) (rows of "
                         f"candidates), got values in [{int(target_index.min())}, "
                         f"{int(target_index.max())}]")
    reads = query_keys @ state
    similarity = F.normalize(reads, dim=-1) @ F.normalize(candidates, dim=-1).T
    accuracy = (similarity.argmax(dim=-1) == target_index).double().mean().item()
    error = (reads - candidates[target_index]).square().sum(-1).mean().item()
    return accuracy, error


def recall_trace(stream: RecallStream, states: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per step t, for every distinct key already written: read-out error and recall.

    Args:
        stream: the written stream (T writes, K distinct keys).
        states: (T, d_k, d_v), the memory after each write.

    Returns:
        ``error`` (T, K): ‖S_tᵀ k_j - latest value of k_j‖ (NaN before key j is written);
        ``recall`` (T,): fraction of the keys written so far that decode to their latest value.
    """
    _check_stream(stream)
    check_tensor("states", states, ndim=3, layout="(T, d_k, d_v)", dtype="float")
    check_shape("states", states, (stream.keys.shape[0], stream.keys.shape[1],
                                   stream.values.shape[1]), "(T, d_k, d_v) of the stream")
    check_same_dtype_device("stream.keys", stream.keys, states=states)
    length, key_count = stream.keys.shape[0], stream.distinct_keys.shape[0]
    reads = torch.einsum("kd,tde->tke", stream.distinct_keys, states)  # (T, K, d_v)
    latest = torch.full((key_count,), -1, dtype=torch.long)
    candidates = F.normalize(stream.candidates, dim=-1)
    errors = torch.full((length, key_count), float("nan"), dtype=states.dtype)
    recall = torch.zeros(length, dtype=states.dtype)
    for step in range(length):
        latest[stream.key_ids[step]] = step
        seen = latest >= 0
        targets = stream.values[latest[seen]]
        errors[step, seen] = (reads[step, seen] - targets).norm(dim=-1)
        nearest = (F.normalize(reads[step, seen], dim=-1) @ candidates.T).argmax(dim=-1)
        recall[step] = (nearest == latest[seen]).double().mean()
    return {"error": errors, "recall": recall}


def final_recall(stream: RecallStream, kind: str, **gates: float) -> tuple[float, float]:
    """Write the whole stream, then ask every key for its latest value.

    ``kind`` is a :func:`run_rule` kind or "least squares". Returns (recall, mean ‖o - v‖²).
    """
    _check_stream(stream)
    check_choice("kind", kind, ["linear", "delta", "titans", "least squares"])
    if kind == "least squares":
        state = least_squares_memory(stream)
    else:
        state = run_rule(stream, kind, **gates)[-1]
    latest = stream.latest_value_index(stream.keys.shape[0] - 1)
    written = latest >= 0
    return decode_accuracy(state, stream.distinct_keys[written], latest[written],
                           stream.candidates)


def compare_rules(make_stream, seeds: list[int], rules: dict[str, dict] | None = None,
                  ) -> dict[str, tuple[float, float]]:
    """Mean (recall, read-out MSE) of each rule over streams ``make_stream(seed)``."""
    check_callable("make_stream", make_stream)
    check_int_sequence("seeds", seeds, low=0)
    rules = RULES if rules is None else rules
    check_instance("rules", rules, dict, expected="a dict label -> rule settings")
    for label, settings in rules.items():
        if not isinstance(settings, dict) or "kind" not in settings:
            raise ValueError(f"rules[{label!r}] must be a dict with a 'kind' (see RULES), got "
                             f"{describe(settings)}")
    table = {}
    for label, settings in rules.items():
        gates = {name: value for name, value in settings.items() if name != "kind"}
        scores = torch.tensor([final_recall(make_stream(seed), settings["kind"], **gates)
                               for seed in seeds])
        table[label] = tuple(scores.mean(dim=0).tolist())
    return table
