"""The training loop (exact resume, a clear stop on NaN, a wall-clock budget) and the
loss-curve figure."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from nlbook.data import CharCorpus, CharVocabulary, ContiguousStreams, load_corpus, random_batch
from nlbook.train.building import (
    build_optimizer,
    learning_rate_at,
)
from nlbook.train.checkpoints import (
    _build_from_model_config,
    _model_config,
    load_checkpoint,
    save_checkpoint,
)
from nlbook.train.config import (
    CHECKPOINT_FORMAT,
    LN2,
    CheckpointError,
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
)
from nlbook.train.evaluation import estimate_loss
from nlbook.transformer import language_model_loss


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def train(config: TrainConfig, *, corpus: CharCorpus | None = None, resume: bool = False,
          stop_at_step: int | None = None, progress: bool = True,
          after_step: Callable[[int, nn.Module], None] | None = None,
          log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``config.model`` on a character corpus; see the module docstring for the loop.

    Args:
        config: the run (``config.checkpoint`` None: no checkpoints).
        corpus: the data; by default ``load_corpus(config.data)`` (Tiny Shakespeare if None).
        resume: continue from ``config.checkpoint`` exactly where it stopped. The stored
            configuration is used (only ``device`` and ``checkpoint`` come from ``config``).
        stop_at_step: stop (and checkpoint) after this many steps, as if interrupted there.
        progress: show a tqdm progress bar with the loss.
        after_step: called as ``after_step(step, model)`` after every optimizer step (for
            notebooks that watch training, and tests that inject faults).
        log: where one-line messages go (None: silent).

    Raises:
        TrainingDivergedError: the loss or gradient became non-finite; names the step, and the
            checkpoint on disk is the last good one.
        CheckpointError, DataFileError: unreadable checkpoint or corpus.
    """
    say = log if log is not None else (lambda message: None)
    device = torch.device(config.device)
    state = None
    if resume:
        if config.checkpoint is None:
            raise ValueError("resume=True needs config.checkpoint (the file to resume from)")
        # On the CPU: RNG states must be CPU tensors; load_state_dict moves the rest.
        state = load_checkpoint(config.checkpoint, map_location="cpu")
        stored = dict(state["config"], device=config.device, checkpoint=config.checkpoint,
                      compile=config.compile)
        config = TrainConfig.from_dict(stored)
    if corpus is None:
        corpus = load_corpus(config.data)
    if state is not None:
        if state["corpus"]["sha256"] != corpus.sha256:
            raise CheckpointError(f"checkpoint {config.checkpoint} was trained on another text "
                                  f"({state['corpus']['source']}); resume with the same data")
        vocabulary = CharVocabulary(state["vocabulary"])
    else:
        vocabulary = corpus.vocabulary
    if vocabulary != corpus.vocabulary:
        raise ValueError("the corpus vocabulary differs from the checkpoint's")

    torch.manual_seed(config.seed)  # model initialisation
    model_config = _model_config(config, len(vocabulary))
    model = _build_from_model_config(model_config).to(device)
    model.train()
    # Opt-in: the training forward compiled (evaluation and checkpoints use the model itself).
    forward = torch.compile(model) if config.compile else model
    streams, carried = None, None
    if config.carry_state:
        if not hasattr(model, "carry_over"):
            raise ValueError(f"carry_state=True needs a model that carries its state between "
                             f"windows (hope), got model {config.model!r}")
        streams = ContiguousStreams(corpus.train_ids, config.batch_size, config.context_length,
                                    stream_length=config.stream_length,
                                    generator=torch.Generator().manual_seed(config.seed),
                                    alignment=model.stream_alignment())
    optimizer = build_optimizer(config.optimizer, model, learning_rate=config.learning_rate,
                                weight_decay=config.weight_decay,
                                betas=(config.beta1, config.beta2))
    data_generator = torch.Generator().manual_seed(config.seed)
    history: dict[str, list] = {"train_steps": [], "train_loss": [], "val_steps": [],
                                "val_loss": []}
    step, total_steps, elapsed_before = 0, config.steps, 0.0
    warmup_end: float | None = None  # seconds of the budget spent when the warm-up ended
    last_good_step: int | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_generator.set_state(state["data_generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        if streams is not None:
            from nlbook.hope.carry import CarriedState

            streams.generator.set_state(state["streams"]["generator"])
            streams.load_state_dict(state["streams"]["positions"])
            carried = (None if state["carried_state"] is None
                       else CarriedState.from_tensors(state["carried_state"]))
        history = {key: list(value) for key, value in state["history"].items()}
        step, total_steps = state["step"], state["total_steps"]
        elapsed_before = state["elapsed_seconds"]
        warmup_end = state.get("warmup_end_seconds")
        last_good_step = step
        say(f"resumed {config.checkpoint} at step {step}")

    checkpoint_interval = config.checkpoint_interval or config.eval_interval

    def evaluate() -> float:
        return estimate_loss(model, corpus.val_ids, batch_size=config.batch_size,
                             context_length=config.context_length, batches=config.eval_batches,
                             seed=config.seed + 1, device=device)

    def kept() -> str:
        if last_good_step is None:
            return "No checkpoint had been written yet."
        return (f"The last good checkpoint, {config.checkpoint} (step {last_good_step}), "
                f"was kept.")

    def write_checkpoint() -> None:
        nonlocal last_good_step
        if config.checkpoint is None:
            return
        if not _all_finite(model):  # never overwrite the last good checkpoint with NaN
            raise TrainingDivergedError(
                f"training diverged: parameters are not finite after step {step}. {kept()}",
                step, last_good_step)
        save_checkpoint(config.checkpoint, {
            "format": CHECKPOINT_FORMAT,
            "config": config.to_dict(),
            "model_config": model_config,
            "vocabulary": vocabulary.chars,
            "corpus": {"source": corpus.source, "sha256": corpus.sha256},
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "total_steps": total_steps,
            "warmup_end_seconds": warmup_end,
            "data_generator": data_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": history,
            "elapsed_seconds": elapsed_before + time.perf_counter() - start_time,
            "streams": None if streams is None else {"generator": streams.generator.get_state(),
                                                     "positions": streams.state_dict()},
            "carried_state": None if carried is None else carried.to_tensors(),
        })
        last_good_step = step

    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    eval_seconds = 0.0
    if step == 0 and not history["val_steps"]:
        eval_start = time.perf_counter()
        history["val_steps"].append(0)
        history["val_loss"].append(evaluate())
        eval_seconds = time.perf_counter() - eval_start
    calibration_start, calibration_from = None, 0
    budget = None if config.minutes is None else config.minutes * 60.0
    # Time the whole warm-up when it is longer than calibration_steps (early steps are slower
    # than steady state): an estimate of the number of steps, for the progress bar only.
    calibration_window = max(config.calibration_steps, config.warmup_steps - 1)
    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step",
               desc=f"{config.model}", dynamic_ncols=True)
    smoothed = None
    try:
        while total_steps is None or step < total_steps:
            if stop_at_step is not None and step >= stop_at_step:
                break
            if total_steps is None and calibration_start is None and step >= 1:
                # Time from the second step on: the first one includes one-off warm-up costs.
                calibration_start, calibration_from = time.perf_counter(), step
            time_progress = None
            if budget is not None and step >= config.warmup_steps:
                # A time budget runs its cosine over wall-clock time: from the end of the
                # warm-up to the deadline, so the run ends with the rate at its minimum
                # whatever the speed does meanwhile (two models compared get the same time).
                elapsed = elapsed_before + time.perf_counter() - start_time
                if warmup_end is None:
                    warmup_end = elapsed
                time_progress = (elapsed - warmup_end) / max(1e-9, budget - warmup_end)
            learning_rate = learning_rate_at(step, learning_rate=config.learning_rate,
                                             min_learning_rate=config.min_learning_rate,
                                             warmup_steps=config.warmup_steps,
                                             total_steps=total_steps, progress=time_progress)
            for group in optimizer.param_groups:  # every group follows the same schedule
                group["lr"] = group["peak_lr"] * learning_rate / config.learning_rate
            stream_state = None
            if streams is None:
                inputs, targets = random_batch(corpus.train_ids, config.batch_size,
                                               config.context_length, data_generator, device)
                _, loss = forward(inputs, targets)
            else:
                # Stateful: every row continues its own stream with the carried state.
                inputs, targets, restarted = streams.next_batch(device)
                start_state = (None if carried is None
                               else model.resume_stream(carried, restart=restarted))
                logits, stream_state = model.stream(inputs, start_state, targets=targets)
                loss = language_model_loss(logits, targets)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"training diverged: the loss is {loss_value} at step {step + 1}; stopped "
                    f"before updating. {kept()} Try a smaller learning rate.",
                    step + 1, last_good_step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gradient_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), config.grad_clip if config.grad_clip else math.inf)
            if not torch.isfinite(gradient_norm):
                raise TrainingDivergedError(
                    f"training diverged: the gradient norm is {float(gradient_norm)} at step "
                    f"{step + 1}; stopped before updating. {kept()} Try a smaller learning "
                    f"rate.", step + 1, last_good_step)
            if stream_state is not None:
                # Cut from the graph before the update: offsets from the θ₀ that made them.
                carried = model.carry_over(stream_state, relative=config.carry_relative)
            optimizer.step()
            step += 1
            history["train_steps"].append(step)
            history["train_loss"].append(loss_value)
            if after_step is not None:
                after_step(step, model)
            smoothed = loss_value if smoothed is None else 0.9 * smoothed + 0.1 * loss_value
            bar.update(1)
            if total_steps is None and calibration_start is not None and \
                    step - calibration_from == calibration_window:
                # Only an estimate, for the progress bar: the deadline ends the run.
                seconds_per_step = (time.perf_counter() - calibration_start) / calibration_window
                per_step = seconds_per_step + eval_seconds / config.eval_interval
                remaining = config.minutes * 60.0 - (elapsed_before + time.perf_counter()
                                                     - start_time)
                bar.total = step + max(0, int(remaining / per_step))
                bar.refresh()
                say(f"time budget {config.minutes} min: {seconds_per_step * 1e3:.1f} ms/step "
                    f"-> about {bar.total} steps")
            if config.minutes is not None and (total_steps is None or step < total_steps) \
                    and elapsed_before + time.perf_counter() - start_time >= config.minutes * 60:
                # The budget is wall-clock time: stop at the deadline (two models compared get
                # the same time).
                planned = "" if total_steps is None else f" of the {total_steps} planned"
                say(f"time budget {config.minutes} min reached after {step} steps{planned}")
                total_steps = step
                bar.total = total_steps
            finished = total_steps is not None and step >= total_steps
            if step % config.eval_interval == 0 or finished:
                history["val_steps"].append(step)
                history["val_loss"].append(evaluate())
            bar.set_postfix(loss=f"{smoothed:.3f}", val=f"{history['val_loss'][-1]:.3f}",
                            refresh=False)
            if step % checkpoint_interval == 0 or finished or step == stop_at_step:
                write_checkpoint()
    finally:
        bar.close()
    seconds = elapsed_before + time.perf_counter() - start_time
    if total_steps is not None and step >= total_steps:
        say(f"{config.model}: {step} steps in {seconds:.1f} s; val loss "
            f"{history['val_loss'][-1]:.4f} nats/char = "
            f"{history['val_loss'][-1] / LN2:.4f} bits/char")
    model.eval()
    return TrainResult(model, vocabulary, config, history, step,
                       total_steps if total_steps is not None else step, seconds,
                       config.checkpoint)


# ----------------------------------------------------------------------------- figure

def save_loss_figure(result: TrainResult, path: str | Path,
                     references: dict[str, float] | None = None) -> Path:
    """Save the loss curves of ``result`` (with n-gram reference lines) as an image file."""
    from nlbook.viz.training import plot_training_curves

    history = result.history
    label = f"{result.config.model} ({result.config.preset or 'custom'})"
    figure = plot_training_curves(history["train_steps"], history["train_loss"],
                                  history["val_steps"], history["val_loss"],
                                  references=references, label=label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
