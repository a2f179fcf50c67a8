"""Does HOPE's memory behave as a memory? The sign flip of Liu et al. (arXiv 2602.21204).

Liu et al. ("Test-time training with KV binding is secretly linear attention") report that for
TTT- and Titans-style layers, replacing the inner gradient *descent* by *ascent* barely changes
results: such layers may not use their inner objective as a memory at all. The same question of
HOPE: every in-context write of its self-modifying Titans memories is flipped to one step of
gradient ascent (:func:`nlbook.hope.ascending_writes`, an evaluation switch on a *trained*
model), and two things are measured:

- **MQAR**: HOPE trained on MQAR (:func:`nlbook.claims.run_mqar`), its test accuracy with the
  writes as trained (descent) and flipped (ascent). If the memory binds keys to values, the
  flip sends recall to the level of a model that cannot bind (in-context chance 1/n or below).
- **Language modelling**: a trained HOPE language model read as one stream, nats/char with
  the writes as trained and flipped.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nlbook._checks import check_positive_int
from nlbook.claims._common import check_seeds, format_table
from nlbook.claims.mqar import mqar_models, run_mqar
from nlbook.claims.protocol import (
    AccuracyCell,
    Control,
    Verdict,
    accuracy_cell,
    compare,
    verdict,
    wilson_interval,
)
from nlbook.tasks.recall import mqar_batch

__all__ = ["SignFlipResult", "run_sign_flip"]


@dataclass
class SignFlipResult:
    """Per seed, HOPE's MQAR test accuracy with descent and with ascent writes (over
    ``queries`` queries each), and, if a language model was given, its stream loss
    (nats/char) both ways."""

    seeds: list[int]
    descent: list[float]
    ascent: list[float]
    queries: int
    kv_pairs: int
    stream_descent: float | None = None
    stream_ascent: float | None = None
    stream_characters: int = 0
    #: The first scored character whose loss was not finite with ascent writes (None: none):
    #: ``stream_ascent`` is then the mean over the characters before it.
    stream_ascent_diverged_at: int | None = None

    def cell(self, direction: str) -> AccuracyCell:
        """MQAR accuracy over seeds with ``direction`` "descent" or "ascent" writes."""
        if direction not in ("descent", "ascent"):
            raise ValueError(f"direction must be 'descent' or 'ascent', got {direction!r}")
        values = self.descent if direction == "descent" else self.ascent
        return accuracy_cell([round(value * self.queries) for value in values],
                             [self.queries] * len(values))

    @property
    def control(self) -> Control:
        """The positive control: HOPE as trained (descent writes) solves MQAR, ≥ 90 % in its
        lowest seed; without it a flip has nothing to break."""
        return Control("HOPE (descent writes)", "MQAR test accuracy (lowest seed)",
                       min(self.descent), 0.9)

    def verdict(self) -> Verdict:
        """Liu et al.'s claim "flipping the inner loop to ascent barely changes results", read
        on HOPE's MQAR accuracy: holds when ascent and descent differ by no more than twice the
        spread, does not hold when they differ beyond it."""
        direction = compare(self.cell("ascent"), self.cell("descent")).direction
        return verdict(self.control, [direction == 0], seeds=len(self.seeds))

    def summary(self) -> str:
        text = (f"MQAR test accuracy %, {len(self.seeds)} seeds: descent "
                f"{self.cell('descent')}, ascent {self.cell('ascent')} (in-context chance "
                f"{100 / self.kv_pairs:.1f} %)")
        if self.stream_descent is not None:
            text += (f"; the shipped language model's stream: {self.stream_descent:.3f} "
                     f"nats/char with descent writes")
            if self.stream_ascent_diverged_at is not None:
                text += (f", with ascent not finite from character "
                         f"{self.stream_ascent_diverged_at:,}")
            else:
                text += f", {self.stream_ascent:.3f} with ascent"
        return text

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SignFlipResult:
        if not isinstance(data, Mapping) or not {"seeds", "descent", "ascent"} <= set(data):
            raise ValueError("data must be a dict with 'seeds', 'descent' and 'ascent' (what "
                             "SignFlipResult.to_dict returns)")
        return cls(**dict(data))

    def table(self) -> str:
        def cell(values: list[float]) -> str:
            intervals = [wilson_interval(round(value * self.queries), self.queries)
                         for value in values]
            return ", ".join(f"{100 * value:.1f} [{100 * low:.1f}-{100 * high:.1f}]"
                             for value, (low, high) in zip(values, intervals, strict=True))

        rows = [["MQAR test accuracy % per seed [95 % interval]", cell(self.descent),
                 cell(self.ascent)],
                ["  mean", f"{100 * statistics.fmean(self.descent):.1f}",
                 f"{100 * statistics.fmean(self.ascent):.1f}"]]
        if self.stream_descent is not None:
            ascent = f"{self.stream_ascent:.3f}"
            if self.stream_ascent_diverged_at is not None:
                ascent = (f"{ascent} before it diverged (non-finite from character "
                          f"{self.stream_ascent_diverged_at:,})")
            rows.append([f"stream loss, nats/char ({self.stream_characters:,} characters)",
                         f"{self.stream_descent:.3f}", ascent])
        return format_table(["", "writes by descent (as trained)", "writes by ascent (flipped)"],
                            rows, notes=[f"in-context chance {100 / self.kv_pairs:.1f} %"])


def _accuracy(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        logits, _ = model(inputs)
    scored = targets >= 0
    return float((logits.argmax(-1)[scored] == targets[scored]).float().mean())


def run_sign_flip(*, seeds=(0, 1, 2), steps: int = 600, vocab_size: int = 64,
                  sequence_length: int = 32, kv_pairs: int = 4, test_size: int = 1024,
                  language_model: nn.Module | None = None, stream_ids: torch.Tensor | None = None,
                  log: Callable[[str], None] | None = None) -> SignFlipResult:
    """Train HOPE on MQAR for each seed (``run_mqar``'s defaults: d 64, 2 layers, cosine), then
    score its test set with descent and ascent writes; optionally stream ``stream_ids`` (1-D
    int64) through ``language_model`` (a trained HopeLM) both ways."""
    from nlbook.hope import ascending_writes
    from nlbook.train.evaluation import evaluate_stream, stream_token_losses

    seeds = list(check_seeds(seeds))
    for name, value in (("steps", steps), ("test_size", test_size)):
        check_positive_int(name, value)
    if log is not None and not callable(log):
        raise ValueError(f"log must be a callable or None, got {log!r}")
    if (language_model is None) != (stream_ids is None):
        raise ValueError("language_model and stream_ids must be given together (or neither)")
    factories = mqar_models(vocab_size, sequence_length=sequence_length, names=["hope"])
    test_inputs, test_targets = mqar_batch(
        test_size, vocab_size=vocab_size, sequence_length=sequence_length, kv_pairs=kv_pairs,
        generator=torch.Generator().manual_seed(10 ** 6))
    descent, ascent = [], []
    for seed in seeds:
        result = run_mqar(factories, seeds=(seed,), steps=steps, vocab_size=vocab_size,
                          sequence_length=sequence_length, kv_pairs=kv_pairs,
                          test_size=test_size, keep_models=True)
        model = result.models["hope"][0]
        descent.append(_accuracy(model, test_inputs, test_targets))
        with ascending_writes(model):
            ascent.append(_accuracy(model, test_inputs, test_targets))
        if log is not None:
            log(f"seed {seed}: descent {100 * descent[-1]:.1f} %, ascent {100 * ascent[-1]:.1f} %")
    out = SignFlipResult(seeds, descent, ascent, int((test_targets >= 0).sum()), kv_pairs)
    if language_model is not None:
        out.stream_descent = evaluate_stream(language_model, stream_ids, window=256)
        with ascending_writes(language_model):
            losses = stream_token_losses(language_model, stream_ids, window=256)
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            out.stream_ascent_diverged_at = int(bad[0, 0])
            losses = losses[:out.stream_ascent_diverged_at]
        out.stream_ascent = float(losses.mean()) if len(losses) else float("nan")
        out.stream_characters = int(stream_ids.numel())
    return out
