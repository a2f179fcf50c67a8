"""The ablation of chapter 7 (the paper's Table 6, at laptop scale): HOPE against HOPE with
one part removed, against Hope-Attention and linear attention in place of the self-modifying
Titans, and against a Transformer, all at (nearly) equal parameters and equal wall-clock time
(or equal steps), trained the way each can learn in context (HOPE variants on carried streams,
the Transformer on fresh windows), scored three ways (fresh windows, one stream, by position).

``python -m nlbook.bench ablation --minutes N`` prints the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from nlbook._checks import check_positive_int

__all__ = ["ABLATION_VARIANTS", "AblationResult", "AblationRow", "ablation_configs",
           "run_ablation"]

#: Variant name -> how it differs from HOPE (model options of nlbook.hope.HopeBlock; the
#: Transformer is the other model). "without CMS" keeps the parameters: one MLP as wide as the
#: two CMS levels together, trained by AdamW only (a Transformer block's MLP).
ABLATION_VARIANTS: dict[str, dict[str, object]] = {
    "HOPE": {},
    "without DGD (plain gradient step on the L2 objective)": {"write_rule": "gd"},
    "without DGD's erase (gated Hebbian write)": {"dgd": False},
    "without in-context CMS updates": {"cms_learning_rates": (0.0, 0.0)},
    "without CMS (one plain MLP)": {"cms_chunk_sizes": (1,), "cms_learning_rates": (0.0,),
                                    "cms_hidden_dim": "4d"},
    "without self-modification (plain Titans)": {"self_modifying": False},
    "Hope-Attention (softmax attention)": {"mixer": "attention"},
    "linear attention in place of Titans": {"mixer": "linear_attention"},
    "Transformer": {"model": "transformer"},
    "Transformer++": {"model": "transformer++"},
}


@dataclass
class AblationRow:
    """One trained variant: its size, budget spent and losses (nats/char)."""

    name: str
    parameters: int
    steps: int
    seconds: float
    fresh: float
    stream: float
    last_quarter: float
    curve: torch.Tensor = field(repr=False)
    diverged_at: int | None = None


@dataclass
class AblationResult:
    """The rows of :func:`run_ablation`, with what was measured on."""

    rows: list[AblationRow]
    budget: str
    scored_characters: int
    position_length: int

    def row(self, name: str) -> AblationRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise ValueError(f"name must be one of {[row.name for row in self.rows]}, got {name!r}")

    def table(self) -> str:
        """Plain-text table: one row per variant, with the difference to HOPE's stream loss."""
        hope = next((row.stream for row in self.rows if row.name == "HOPE"), None)
        quarter = f"pos {3 * self.position_length // 4}+"
        lines = [f"ablation: {self.budget}; losses in nats/char on the first "
                 f"{self.scored_characters:,} validation characters; by position: fresh "
                 f"windows of {self.position_length} (the Transformer: its context)",
                 f"{'variant':42} {'params':>8} {'steps':>6} {'s':>5} {'fresh':>7} "
                 f"{'stream':>7} {'vs HOPE':>8} {quarter:>9}"]
        for row in self.rows:
            if row.diverged_at is not None:
                lines.append(f"{row.name:42} {row.parameters:8,} {row.steps:6d} "
                             f"{row.seconds:5.0f}   diverged: the loss was not finite at step "
                             f"{row.diverged_at}")
                continue
            delta = "" if hope is None else f"{row.stream - hope:+8.3f}"
            lines.append(f"{row.name:42} {row.parameters:8,} {row.steps:6d} {row.seconds:5.0f} "
                         f"{row.fresh:7.3f} {row.stream:7.3f} {delta:>8} "
                         f"{row.last_quarter:9.3f}")
        return "\n".join(lines)


def _model_options(options: dict[str, object], d_model: int) -> dict[str, object]:
    resolved = {}
    for key, value in options.items():
        if key == "model":
            continue
        resolved[key] = 4 * d_model if value == "4d" else value
    return resolved


def ablation_configs(*, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                     context_length: int = 64, batch_size: int = 16,
                     minutes: float | None = None, steps: int | None = None,
                     learning_rate: float = 2e-3, stream_length: int = 1024, seed: int = 0,
                     variants: Sequence[str] | None = None, vocab_size: int = 65) -> dict:
    """One :class:`nlbook.train.TrainConfig` per variant (name -> config): the ``tiny``
    preset's recipe by default, the same budget (``minutes`` or ``steps``), seed and data for
    all; HOPE variants on carried streams, the Transformer (width matched to HOPE's parameter
    count by :func:`nlbook.hope.matched_models`) on fresh windows."""
    from nlbook._checks import check_scalar_in_range
    from nlbook.hope import matched_models
    from nlbook.train import TrainConfig

    if (minutes is None) == (steps is None):
        raise ValueError(f"give exactly one of minutes and steps, got minutes={minutes!r}, "
                         f"steps={steps!r}")
    check_scalar_in_range("learning_rate", learning_rate, 0.0, float("inf"),
                          low_inclusive=False)
    if variants is not None and (isinstance(variants, (str, bytes))
                                 or not isinstance(variants, (list, tuple))):
        raise ValueError(f"variants must be a list of names of ABLATION_VARIANTS or None, got "
                         f"{variants!r}")
    names = list(ABLATION_VARIANTS) if variants is None else list(variants)
    for name in names:
        if name not in ABLATION_VARIANTS:
            raise ValueError(f"variants must name entries of ABLATION_VARIANTS "
                             f"({list(ABLATION_VARIANTS)}), got {name!r}")
    _, transformer = matched_models(vocab_size, d_model, n_layers, n_heads,
                                    context_length=context_length, seed=seed)
    shared = dict(n_layers=n_layers, n_heads=n_heads, context_length=context_length,
                  batch_size=batch_size, steps=steps, minutes=minutes,
                  learning_rate=learning_rate, min_learning_rate=learning_rate / 10,
                  warmup_steps=100, eval_interval=10 ** 9, eval_batches=4, seed=seed)
    configs = {}
    for name in names:
        options = ABLATION_VARIANTS[name]
        if options.get("model") in ("transformer", "transformer++"):
            # Transformer++ takes the nanoGPT Transformer's width (its SwiGLU MLP is 3 matrices
            # of 8d/3: about the same parameters).
            configs[name] = TrainConfig(model=str(options["model"]), d_model=transformer.d_model,
                                        **shared)
        else:
            configs[name] = TrainConfig(model="hope", d_model=d_model, carry_state=True,
                                        stream_length=stream_length,
                                        model_options=_model_options(options, d_model),
                                        **shared)
    return configs


def run_ablation(*, minutes: float | None = None, steps: int | None = None,
                 variants: Sequence[str] | None = None, corpus=None,
                 scored_characters: int | None = None, position_length: int = 1024,
                 position_windows: int = 16, seed: int = 0, progress: bool = False,
                 log: Callable[[str], None] | None = print, **sizes) -> AblationResult:
    """Train every variant for the same budget and score it (see the module docstring).

    ``scored_characters``: how much of the validation split the fresh and streaming losses
    use (None: all of it). ``sizes``: other arguments of :func:`ablation_configs`.
    """
    from nlbook._checks import check_bool, check_callable, check_instance
    from nlbook.data import CharCorpus, load_corpus
    from nlbook.train import (
        TrainingDivergedError,
        build_model,
        evaluate_all,
        evaluate_stream,
        loss_by_position,
        train,
    )
    from nlbook.transformer import parameter_count

    check_positive_int("position_length", position_length)
    check_positive_int("position_windows", position_windows)
    check_positive_int("scored_characters", scored_characters, allow_none=True)
    if scored_characters is not None and scored_characters < 2:
        raise ValueError(f"scored_characters must be at least 2 (one prediction), got "
                         f"{scored_characters}")
    check_instance("corpus", corpus, CharCorpus, allow_none=True,
                   expected="an nlbook.data.CharCorpus")
    check_bool("progress", progress)
    check_callable("log", log, allow_none=True)
    corpus = load_corpus() if corpus is None else corpus
    configs = ablation_configs(minutes=minutes, steps=steps, variants=variants, seed=seed,
                               vocab_size=corpus.vocab_size, **sizes)
    scored = corpus.val_ids if scored_characters is None else corpus.val_ids[:scored_characters]
    rows = []
    for name, config in configs.items():
        start = time.perf_counter()
        try:
            result = train(config, corpus=corpus, progress=progress, log=None)
        except TrainingDivergedError as error:  # a result, not a crash: say where it broke
            count = parameter_count(build_model(
                config.model, corpus.vocab_size, config.d_model, config.n_layers,
                config.n_heads, context_length=config.context_length,
                **config.model_options)).total
            nan = float("nan")
            rows.append(AblationRow(name, count, error.step, time.perf_counter() - start, nan,
                                    nan, nan, torch.full((1,), nan), diverged_at=error.step))
            if log is not None:
                log(f"{name}: diverged at step {error.step}")
            continue
        seconds = time.perf_counter() - start
        model = result.model
        stateful = hasattr(model, "stream")
        fresh = evaluate_all(model, scored, context_length=config.context_length)
        streaming = evaluate_stream(model, scored,
                                    window=1024 if stateful else config.context_length)
        length = position_length if stateful else min(position_length, config.context_length)
        # A short (fixed-context) curve gets proportionally more windows: the same number of
        # scored tokens, so its mean is as steady as a long one's.
        windows = position_windows * max(1, position_length // length)
        curve = loss_by_position(model, corpus.val_ids, length=length, windows=windows,
                                 seed=seed)
        row = AblationRow(name, parameter_count(model).total, result.step, seconds, fresh,
                          streaming, float(curve[3 * length // 4:].mean()), curve)
        rows.append(row)
        if log is not None:
            log(f"{name}: {row.parameters:,} parameters, {row.steps} steps in {seconds:.0f} s, "
                f"fresh {fresh:.3f}, stream {streaming:.3f}")
    budget = f"{minutes:g} min each" if minutes is not None else f"{steps} steps each"
    return AblationResult(rows, budget, len(scored), position_length)
