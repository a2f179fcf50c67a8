"""The training loop (exact resume, a clear stop on NaN, a wall-clock budget, one process or
several) and the loss-curve figure.

:func:`train` reads as the sequence of its steps, each a function of a :class:`Run` (the state
of a run between two optimizer steps) that can be called and tested on its own:

* :func:`set_up_run`: build the model, optimizer and data, or restore them from a checkpoint;
* :func:`train_step`: one optimizer step (schedule, batch, forward, backward, clip, update);
* :func:`record_evaluation`: the validation loss, appended to the history;
* :func:`write_checkpoint`: everything a resumed run needs (:func:`checkpoint_state`), written
  by rank 0;
* :func:`stop_at_deadline`: a ``minutes`` budget ends the run at the step that reaches it.

Across processes (``torchrun``) the same functions run on every rank; what differs is in
:mod:`nlbook.train.distributed`.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlbook._checks import (
    check_bool,
    check_callable,
    check_device,
    check_instance,
    check_int,
    check_scalar_in_range,
    check_writable_path,
    entry_point,
)
from nlbook.data import CharCorpus, CharVocabulary, ContiguousStreams, load_corpus, random_batch
from nlbook.train.building import (
    OptimizerPair,
    build_optimizer,
    learning_rate_at,
)
from nlbook.train.checkpoints import (
    _build_from_model_config,
    _check_finite_weights,
    _model_config,
    _require_keys,
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
from nlbook.train.distributed import (
    World,
    check_batch_divides,
    data_parallel,
    describe_world,
    join_world,
    process_device,
    take_rows,
)
from nlbook.train.evaluation import estimate_loss, window_batch_losses
from nlbook.transformer import language_model_loss

#: Models whose forward pass runs under bf16 autocast (checked on the CPU's autocast; HOPE's
#: Titans layer refuses bf16 inputs).
AUTOCAST_MODELS = ("transformer", "transformer++")


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


#: What a resumed run reads from a checkpoint, by key.
_RESUME_KEYS = {"config": dict, "model_config": dict, "vocabulary": str, "corpus": dict,
                "model": dict, "optimizer": dict, "step": int, "total_steps": (int, type(None)),
                "data_generator": torch.Tensor, "torch_rng": torch.Tensor, "history": dict,
                "elapsed_seconds": (int, float)}


def _check_resumable(state: dict, path, carry_state: bool) -> None:
    """CheckpointError naming what a resume needs and the checkpoint lacks."""
    _require_keys(state, path, _RESUME_KEYS, "resume its run")
    _require_keys(state["corpus"], f"{path} (corpus)", {"sha256": str, "source": str},
                 "resume its run")
    _require_keys(state["history"], f"{path} (history)",
                 {key: list for key in ("train_steps", "train_loss", "val_steps", "val_loss")},
                 "resume its run")
    if carry_state:
        _require_keys(state, path, {"streams": dict, "carried_state": (dict, type(None))},
                     "resume its stateful run")
        _require_keys(state["streams"], f"{path} (streams)",
                     {"generator": torch.Tensor, "positions": dict}, "resume its stateful run")


class StepForward(nn.Module):
    """What one training step computes, as one module call: the mean loss of a batch (and, for
    a stateful model, the stream state it ends in).

    One call per step is what ``DistributedDataParallel`` wraps (its forward prepares the
    gradient all-reduce of the backward pass that follows), so the stateful path (resume the
    carried state, read the window) lives here rather than in the loop.
    """

    def __init__(self, model: nn.Module, stateful: bool) -> None:
        super().__init__()
        self.model, self.stateful = model, stateful

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, carried: Any = None,
                restarted: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """inputs, targets (B, T) int64; ``carried`` a CarriedState of B rows or None;
        ``restarted`` (B,) bool -> (mean loss, stream state or None)."""
        if not self.stateful:
            _, loss = self.model(inputs, targets)
            return loss, None
        # Stateful: every row continues its own stream with the carried state.
        start_state = (None if carried is None
                       else self.model.resume_stream(carried, restart=restarted))
        logits, stream_state = self.model.stream(inputs, start_state, targets=targets)
        return language_model_loss(logits, targets), stream_state


@dataclass
class Run:
    """A training run between two optimizer steps: what :func:`train_step` changes and what a
    checkpoint stores.

    ``model`` is the model itself (evaluated, saved, returned); ``step_module`` is what a step
    calls (:class:`StepForward` of the model, wrapped in ``DistributedDataParallel`` across
    processes). ``carried`` holds this process's rows of the carried stream state;
    ``streams`` and ``data_generator`` hold the global batch's data state (the same on every
    rank). ``elapsed_before`` is the time spent before this session (a resumed run);
    ``started`` the ``time.perf_counter()`` at which this session's clock started.
    """

    config: TrainConfig
    corpus: CharCorpus
    vocabulary: CharVocabulary
    model_config: dict[str, Any]
    model: nn.Module
    step_module: nn.Module
    optimizer: torch.optim.Optimizer | OptimizerPair
    device: torch.device
    world: World
    data_generator: torch.Generator
    streams: ContiguousStreams | None = None
    carried: Any = None
    history: dict[str, list] = field(default_factory=lambda: {
        "train_steps": [], "train_loss": [], "val_steps": [], "val_loss": []})
    step: int = 0
    total_steps: int | None = None
    elapsed_before: float = 0.0
    warmup_end: float | None = None  # seconds of the budget spent when the warm-up ended
    last_good_step: int | None = None
    resumed_from_world_size: int | None = None  # a resumed run: the checkpoint's world size
    started: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> bool:
        return self.total_steps is not None and self.step >= self.total_steps

    def start_clock(self) -> None:
        self.started = time.perf_counter()

    def local_elapsed(self) -> float:
        """Seconds of the run so far, by this process's clock."""
        return self.elapsed_before + time.perf_counter() - self.started

    def elapsed(self) -> float:
        """Seconds of the run so far. A time budget's decisions (learning rate, deadline) take
        rank 0's clock, so that every process decides the same."""
        if self.config.minutes is None or not self.world.distributed:
            return self.local_elapsed()
        return self.world.broadcast_float(self.local_elapsed(), self.device)


# ----------------------------------------------------------------------------- set up or resume

def set_up_run(config: TrainConfig, *, corpus: CharCorpus | None = None, resume: bool = False,
               world: World | None = None) -> Run:
    """Build a run from ``config``, or restore it from ``config.checkpoint`` (``resume``).

    A resumed run uses the stored configuration (only ``device`` and ``checkpoint`` come from
    ``config``) and continues exactly: model, optimizer, data generator, stream positions,
    carried state, torch's RNG, history, step and time spent. It may run on another number of
    processes than the one that wrote the checkpoint, as long as that number divides the
    batch: the data state and the carried state are stored for the global batch.

    Raises:
        ValueError: ``resume`` without a checkpoint, a batch the world size does not divide,
            autocast on a device that is not CUDA, a vocabulary that differs.
        CheckpointError: unreadable checkpoint, one trained on another text, or one that
            lacks what a resume reads (named).
    """
    check_instance("config", config, TrainConfig, expected="a TrainConfig")
    check_instance("corpus", corpus, CharCorpus, allow_none=True,
                   expected="an nlbook.data.CharCorpus")
    check_bool("resume", resume)
    check_instance("world", world, World, allow_none=True,
                   expected="an nlbook.train.distributed.World")
    world = world if world is not None else World()
    device = process_device(config.device, world)
    state = None
    if resume:
        if config.checkpoint is None:
            raise ValueError("resume=True needs config.checkpoint (the file to resume from)")
        # On the CPU: RNG states must be CPU tensors; load_state_dict moves the rest.
        state = load_checkpoint(config.checkpoint, map_location="cpu")
        _require_keys(state, config.checkpoint, {"config": dict}, "resume its run")
        _check_finite_weights(state, config.checkpoint)
        stored = dict(state["config"], device=config.device, checkpoint=config.checkpoint,
                      compile=config.compile)
        try:
            config = TrainConfig.from_dict(stored)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {config.checkpoint} holds a configuration that "
                                  f"is not valid here: {error}") from None
        _check_resumable(state, config.checkpoint, config.carry_state)
    if config.checkpoint is not None and world.is_main:  # unwritable: found now, not after
        check_writable_path("config.checkpoint", config.checkpoint)
    check_batch_divides(config.batch_size, world.size)
    if config.autocast and device.type != "cuda":
        raise ValueError(f"autocast (bf16, --bf16) is for CUDA devices, and this run's device "
                         f"is {device.type}: drop --bf16 (bf16 on the CPU is slow and changes "
                         f"results), or train on device cuda")
    if config.autocast and config.model not in AUTOCAST_MODELS:
        raise ValueError(f"autocast (bf16, --bf16) is available for {', '.join(AUTOCAST_MODELS)} "
                         f"only, got model {config.model!r}: HOPE's self-modifying memories "
                         f"check that their inputs are float32 and refuse bf16 activations")
    check_device("device", config.device)  # available here: before any data or model is built
    if corpus is None:
        corpus = load_corpus(config.data)
    _check_corpus_length(corpus, config)
    if state is not None:
        if state["corpus"]["sha256"] != corpus.sha256:
            raise CheckpointError(f"checkpoint {config.checkpoint} was trained on another text "
                                  f"({state['corpus']['source']}); resume with the same data")
        vocabulary = CharVocabulary(state["vocabulary"])
    else:
        vocabulary = corpus.vocabulary
    if vocabulary != corpus.vocabulary:
        raise ValueError("the corpus vocabulary differs from the checkpoint's")

    torch.manual_seed(config.seed)  # model initialisation (the same on every rank)
    model_config = _model_config(config, len(vocabulary))
    model = _build_from_model_config(model_config).to(device)
    model.train()
    if world.rank > 0:  # dropout: every rank draws its own masks
        torch.manual_seed(_rank_seed(config.seed, world.rank, 0))
    streams = None
    if config.carry_state:
        if not hasattr(model, "carry_over"):
            raise ValueError(f"carry_state=True needs a model that carries its state between "
                             f"windows (hope), got model {config.model!r}")
        # The global batch's streams, the same on every rank; each rank reads its rows.
        streams = ContiguousStreams(corpus.train_ids, config.batch_size, config.context_length,
                                    stream_length=config.stream_length,
                                    generator=torch.Generator().manual_seed(config.seed),
                                    alignment=model.stream_alignment())
    optimizer = build_optimizer(config.optimizer, model, learning_rate=config.learning_rate,
                                weight_decay=config.weight_decay,
                                betas=(config.beta1, config.beta2))
    run = Run(config=config, corpus=corpus, vocabulary=vocabulary, model_config=model_config,
              model=model, step_module=model, optimizer=optimizer, device=device, world=world,
              data_generator=torch.Generator().manual_seed(config.seed), streams=streams,
              total_steps=config.steps)
    if state is not None:
        _restore(run, state)
    # Opt-in: the fresh-window training forward compiled (evaluation, checkpoints and the
    # stateful stream use the model itself; attributes pass through the compiled wrapper).
    forward_model = torch.compile(model) if config.compile else model
    run.step_module = data_parallel(StepForward(forward_model, streams is not None), world,
                                    device)
    return run


def _check_corpus_length(corpus: CharCorpus, config: TrainConfig) -> None:
    """A text too short for the run's windows is refused before anything is built, naming the
    corpus and the context (not later, inside the batch sampler, under its own names)."""
    need = config.context_length + 1
    splits = {"train": len(corpus.train_ids), "validation": len(corpus.val_ids)}
    short = {name: count for name, count in splits.items() if count < need}
    if short:
        raise ValueError(
            f"corpus {corpus.source} is too short for context_length {config.context_length}: "
            + ", ".join(f"its {name} split holds {count} characters" for name, count in
                        short.items())
            + f", each split needs at least context_length + 1 = {need} (give a longer text, "
              f"or a shorter context_length / --context-length)")


def _rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of torch's generator on rank > 0 (dropout), distinct per rank and restart."""
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729) % (2**63)


def _restore(run: Run, state: dict[str, Any]) -> None:
    """Load a checkpoint's state into a freshly built run (see :func:`checkpoint_state`)."""
    world, device = run.world, run.device
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.data_generator.set_state(state["data_generator"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint {run.config.checkpoint}: its model, optimizer or "
                              f"generator state does not fit this run's "
                              f"({str(error).strip().splitlines()[0][:300]})") from None
    stored_world_size = state.get("world_size", 1)
    by_rank = state.get("torch_rng_by_rank")
    if world.rank == 0:
        torch.set_rng_state(state["torch_rng"])
    elif by_rank is not None and stored_world_size == world.size:
        torch.set_rng_state(by_rank[world.rank])
    else:  # a new rank: a fresh generator of its own
        torch.manual_seed(_rank_seed(run.config.seed, world.rank, state["step"]))
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        cuda_by_rank = state.get("cuda_rng_by_rank")
        if world.rank == 0:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        elif cuda_by_rank is not None and stored_world_size == world.size:
            torch.cuda.set_rng_state(cuda_by_rank[world.rank], device)
    if run.streams is not None:
        from nlbook.hope.carry import CarriedState

        run.streams.generator.set_state(state["streams"]["generator"])
        run.streams.load_state_dict(state["streams"]["positions"])
        carried = state["carried_state"]
        if carried is not None and world.distributed:  # the global rows -> this rank's rows
            carried = dict(take_rows(carried, world.rows(run.config.batch_size)),
                           batch=run.config.batch_size // world.size)
        run.carried = None if carried is None else CarriedState.from_tensors(carried)
    run.history = {key: list(value) for key, value in state["history"].items()}
    run.step, run.total_steps = state["step"], state["total_steps"]
    run.elapsed_before = state["elapsed_seconds"]
    run.warmup_end = state.get("warmup_end_seconds")
    run.last_good_step = run.step
    run.resumed_from_world_size = stored_world_size


# ----------------------------------------------------------------------------- one step

def _check_run(run: Any) -> None:
    check_instance("run", run, Run, expected="an nlbook.train.loop.Run (from set_up_run)")


def learning_rate_for(run: Run) -> float:
    """The learning rate of the next update, set on every parameter group.

    A time budget runs its cosine over wall-clock time: from the end of the warm-up to the
    deadline, so the run ends with the rate at its minimum whatever the speed does meanwhile
    (two models compared get the same time).
    """
    _check_run(run)
    config = run.config
    time_progress = None
    if config.minutes is not None and run.step >= config.warmup_steps:
        budget = config.minutes * 60.0
        elapsed = run.elapsed()
        if run.warmup_end is None:
            run.warmup_end = elapsed
        time_progress = (elapsed - run.warmup_end) / max(1e-9, budget - run.warmup_end)
    learning_rate = learning_rate_at(run.step, learning_rate=config.learning_rate,
                                     min_learning_rate=config.min_learning_rate,
                                     warmup_steps=config.warmup_steps,
                                     total_steps=run.total_steps, progress=time_progress)
    for group in run.optimizer.param_groups:  # every group follows the same schedule
        group["lr"] = group["peak_lr"] * learning_rate / config.learning_rate
    return learning_rate


def _kept(run: Run) -> str:
    if run.last_good_step is None:
        return "No checkpoint had been written yet."
    return (f"The last good checkpoint, {run.config.checkpoint} (step {run.last_good_step}), "
            f"was kept.")


def _precision(run: Run) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``config.autocast``; full precision otherwise."""
    if not run.config.autocast:
        return contextlib.nullcontext()
    return torch.autocast(device_type=run.device.type, dtype=torch.bfloat16)


def train_step(run: Run) -> float:
    """One optimizer step on the next batch; returns its loss (nats, the mean over the global
    batch) and appends it to the history.

    Every rank computes the loss of its rows; DDP's backward averages the gradients, so clipping
    sees the global gradient norm. Raises :class:`TrainingDivergedError` before the update
    when the loss or the gradient norm is not finite (on every rank alike: both are global).
    """
    _check_run(run)
    config, world = run.config, run.world
    learning_rate_for(run)
    if run.streams is None:
        inputs, targets = random_batch(run.corpus.train_ids, config.batch_size,
                                       config.context_length, run.data_generator, run.device)
        restarted = None
    else:
        inputs, targets, restarted = run.streams.next_batch(run.device)
        restarted = world.local(restarted)
    inputs, targets = world.local(inputs), world.local(targets)
    with _precision(run):
        loss, stream_state = run.step_module(inputs, targets, run.carried, restarted)
    loss_value = world.mean(loss.detach())
    if not math.isfinite(loss_value):
        raise TrainingDivergedError(
            f"training diverged: the loss is {loss_value} at step {run.step + 1}; stopped "
            f"before updating. {_kept(run)} Try a smaller learning rate.",
            run.step + 1, run.last_good_step)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gradient_norm = torch.nn.utils.clip_grad_norm_(
        run.model.parameters(), config.grad_clip if config.grad_clip else math.inf)
    if not torch.isfinite(gradient_norm):
        raise TrainingDivergedError(
            f"training diverged: the gradient norm is {float(gradient_norm)} at step "
            f"{run.step + 1}; stopped before updating. {_kept(run)} Try a smaller learning "
            f"rate.", run.step + 1, run.last_good_step)
    if stream_state is not None:
        # Cut from the graph before the update: offsets from the θ₀ that made them.
        run.carried = run.model.carry_over(stream_state, relative=config.carry_relative)
    run.optimizer.step()
    run.step += 1
    run.history["train_steps"].append(run.step)
    run.history["train_loss"].append(loss_value)
    return loss_value


def stop_at_deadline(run: Run, say: Callable[[str], None]) -> bool:
    """End a ``minutes`` run at the step that reaches the deadline (the budget is wall-clock
    time: two models compared get the same time). True when it ended the run."""
    _check_run(run)
    check_callable("say", say)
    config = run.config
    if config.minutes is None or run.finished or run.elapsed() < config.minutes * 60:
        return False
    planned = "" if run.total_steps is None else f" of the {run.total_steps} planned"
    say(f"time budget {config.minutes} min reached after {run.step} steps{planned}")
    run.total_steps = run.step
    return True


# ----------------------------------------------------------------------------- evaluate

def evaluate_run(run: Run) -> float:
    """Validation loss (nats/char) on ``eval_batches`` fixed random windows (generator seeded
    ``seed + 1``: evaluating never changes training). Across processes each rank computes its
    share of the batches and the per-batch losses are summed in one process's order: the same
    number, bit for bit."""
    _check_run(run)
    config, world = run.config, run.world
    if not world.distributed:
        return estimate_loss(run.model, run.corpus.val_ids, batch_size=config.batch_size,
                             context_length=config.context_length,
                             batches=config.eval_batches, seed=config.seed + 1,
                             device=run.device)
    losses = window_batch_losses(run.model, run.corpus.val_ids, batch_size=config.batch_size,
                                 context_length=config.context_length,
                                 batches=config.eval_batches, seed=config.seed + 1,
                                 device=run.device, share=(world.rank, world.size))
    summed = world.sum_(torch.tensor(losses, dtype=torch.float64, device=run.device))
    total = 0.0
    for loss in summed.tolist():
        total += loss
    return total / config.eval_batches


def _check_finite_model(run: Run) -> None:
    """Raise TrainingDivergedError naming the step when a parameter is not finite."""
    if not _all_finite(run.model):
        raise TrainingDivergedError(
            f"training diverged: parameters are not finite after step {run.step}. "
            f"{_kept(run)} Try a smaller learning rate.", run.step, run.last_good_step)


def record_evaluation(run: Run) -> float:
    """Evaluate (:func:`evaluate_run`) and append to the history; returns the seconds spent.
    A non-finite validation loss after a step raises :class:`TrainingDivergedError` naming
    the step: train() never returns a model that diverged."""
    _check_run(run)
    start = time.perf_counter()
    loss = evaluate_run(run)
    if not math.isfinite(loss) and run.step > 0:
        raise TrainingDivergedError(
            f"training diverged: the validation loss is {loss} after step {run.step}. "
            f"{_kept(run)} Try a smaller learning rate.", run.step, run.last_good_step)
    run.history["val_steps"].append(run.step)
    run.history["val_loss"].append(loss)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- checkpoint

def checkpoint_state(run: Run) -> dict[str, Any]:
    """Everything a resumed run needs, in plain containers of tensors (``weights_only``).

    Across processes every rank must call it (it gathers the carried rows and the RNG states):
    the carried state is stored for the global batch, torch's RNG of rank 0 under
    ``torch_rng`` (one process's key) and every rank's under ``torch_rng_by_rank``.
    """
    _check_run(run)
    config, world, device = run.config, run.world, run.device
    # A finished run's carried state is not kept: no step will read it (and it is most of a
    # small stateful model's checkpoint: the fast weights of every batch row).
    carried = None if run.carried is None or run.finished else run.carried.to_tensors()
    if carried is not None and world.distributed:
        carried = dict(world.gather_rows(carried, run.carried.batch), batch=config.batch_size)
    by_rank, cuda_by_rank = None, None
    if world.distributed:
        # nccl gathers CUDA tensors only: the states travel on the run's device.
        by_rank = [part.cpu() for part in world.gather(torch.get_rng_state().to(device))]
        if device.type == "cuda":
            cuda_by_rank = [part.cpu() for part in
                            world.gather(torch.cuda.get_rng_state(device).to(device))]
    return {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "model_config": run.model_config,
        "vocabulary": run.vocabulary.chars,
        "corpus": {"source": run.corpus.source, "sha256": run.corpus.sha256},
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "total_steps": run.total_steps,
        "warmup_end_seconds": run.warmup_end,
        "data_generator": run.data_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": run.history,
        "elapsed_seconds": run.elapsed(),
        "streams": None if run.streams is None else {
            "generator": run.streams.generator.get_state(),
            "positions": run.streams.state_dict()},
        "carried_state": carried,
        "world_size": world.size,
        "torch_rng_by_rank": by_rank,
        "cuda_rng_by_rank": cuda_by_rank,
    }


def write_checkpoint(run: Run) -> None:
    """Write :func:`checkpoint_state` to ``config.checkpoint`` (atomically, by rank 0 only;
    nothing when it is None). Never overwrites the last good checkpoint with non-finite
    parameters: raises :class:`TrainingDivergedError` instead."""
    _check_run(run)
    if run.config.checkpoint is None:
        return
    if not _all_finite(run.model):
        raise TrainingDivergedError(
            f"training diverged: parameters are not finite after step {run.step}. "
            f"{_kept(run)}", run.step, run.last_good_step)
    state = checkpoint_state(run)
    if run.world.is_main:
        save_checkpoint(run.config.checkpoint, state)
    run.world.barrier()  # every rank returns once the file is there
    run.last_good_step = run.step


# ----------------------------------------------------------------------------- progress


class _Progress:
    """The progress bar (rank 0), and for a time budget its estimate of the number of steps.

    Time the whole warm-up when it is longer than ``calibration_steps`` (early steps are slower
    than steady state): an estimate, for the progress bar only; the deadline ends the run.
    """

    def __init__(self, run: Run, enabled: bool, say: Callable[[str], None]) -> None:
        from tqdm.auto import tqdm

        self.run, self.say = run, say
        self.bar = tqdm(total=run.total_steps, initial=run.step, disable=not enabled,
                        unit="step", desc=f"{run.config.model}", dynamic_ncols=True)
        self.smoothed: float | None = None
        self.eval_seconds = 0.0
        self.calibration_start: float | None = None
        self.calibration_from = 0
        self.calibration_window = max(run.config.calibration_steps,
                                      run.config.warmup_steps - 1)

    def before_step(self) -> None:
        run = self.run
        if run.total_steps is None and self.calibration_start is None and run.step >= 1:
            # Time from the second step on: the first one includes one-off warm-up costs.
            self.calibration_start, self.calibration_from = time.perf_counter(), run.step

    def after_step(self, loss_value: float) -> None:
        run, config = self.run, self.run.config
        self.smoothed = (loss_value if self.smoothed is None
                         else 0.9 * self.smoothed + 0.1 * loss_value)
        self.bar.update(1)
        if run.total_steps is None and self.calibration_start is not None and \
                run.step - self.calibration_from == self.calibration_window:
            seconds_per_step = ((time.perf_counter() - self.calibration_start)
                                / self.calibration_window)
            per_step = seconds_per_step + self.eval_seconds / config.eval_interval
            remaining = config.minutes * 60.0 - run.local_elapsed()
            self.bar.total = run.step + max(0, int(remaining / per_step))
            self.bar.refresh()
            self.say(f"time budget {config.minutes} min: {seconds_per_step * 1e3:.1f} ms/step "
                     f"-> about {self.bar.total} steps")

    def show(self) -> None:
        history = self.run.history
        if self.run.total_steps is not None:
            self.bar.total = self.run.total_steps
        self.bar.set_postfix(loss=f"{self.smoothed:.3f}", val=f"{history['val_loss'][-1]:.3f}",
                             refresh=False)

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- the loop

#: Besides every ``checkpoint_interval`` steps, a checkpoint is written when this many seconds
#: of training passed since the last one: a run never loses more than a few minutes of work.
CHECKPOINT_SECONDS = 300.0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped :func:`train` between two steps, after it wrote a
    checkpoint of the current step (when the run has a ``config.checkpoint``).

    ``step``: the step the run reached; ``checkpoint``: the file written (None: the run
    writes none); ``signal_number``: the signal (``signal.SIGINT`` or ``signal.SIGTERM``)."""

    def __init__(self, message: str, step: int, checkpoint: str | None,
                 signal_number: int) -> None:
        super().__init__(message)
        self.step, self.checkpoint, self.signal_number = step, checkpoint, signal_number


class _StopRequests:
    """SIGINT and SIGTERM during :func:`train`: recorded by a handler and acted on between two
    steps (a checkpoint of the current step, then :class:`TrainingInterrupted`), so that a
    signal never stops a run half-way through an update. A second signal stops at once
    (``KeyboardInterrupt``). Handlers can be set from the main thread only; elsewhere the
    signals keep their own behaviour."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self.previous[number] = signal.signal(number, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _record(self, number: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.received = number
        print(f"\n{signal.Signals(number).name} received: finishing this step, then writing a "
              f"checkpoint (send it again to stop at once)", file=sys.stderr, flush=True)

    def pending(self, run: Run, last_write: float) -> tuple[bool, bool]:
        """(a signal was received, a timed checkpoint is due), the same on every rank: any
        rank's signal stops them all, rank 0's clock decides the timed checkpoint."""
        stop = self.received is not None
        due = time.perf_counter() - last_write >= CHECKPOINT_SECONDS
        if run.world.distributed:
            flags = torch.tensor([float(stop), float(due and run.world.is_main)],
                                 dtype=torch.float64, device=run.device)
            run.world.sum_(flags)
            stop, due = bool(flags[0] > 0), bool(flags[1] > 0)
        return stop, due

    def interrupt(self, run: Run) -> TrainingInterrupted:
        """Write a checkpoint of the current step; the exception to raise."""
        number = self.received if self.received is not None else signal.SIGINT
        if run.config.checkpoint is not None and run.last_good_step != run.step:
            write_checkpoint(run)
        written = (f"; checkpoint {run.config.checkpoint} holds step {run.step}"
                   if run.config.checkpoint is not None else " (no checkpoint: config."
                   "checkpoint is None)")
        return TrainingInterrupted(f"training interrupted by {signal.Signals(number).name} at "
                                   f"step {run.step}{written}", run.step,
                                   run.config.checkpoint, number)



def describe_run(config: TrainConfig, world_size: int) -> str:
    """The run's first log line: the model and preset, the world size, the batch, the device."""
    check_instance("config", config, TrainConfig, expected="a TrainConfig")
    return f"{config.model} ({config.preset or 'custom'}): " + describe_world(
        world_size, config.batch_size, config.device, config.autocast)


@entry_point
def train(config: TrainConfig, *, corpus: CharCorpus | None = None, resume: bool = False,
          stop_at_step: int | None = None, progress: bool = True,
          after_step: Callable[[int, nn.Module], None] | None = None,
          log: Callable[[str], None] | None = print) -> TrainResult:
    """Train ``config.model`` on a character corpus; see the module docstring for the loop.

    Launched by ``torchrun --nproc_per_node N``, every process runs this same function: the
    model is wrapped in ``DistributedDataParallel``, ``config.batch_size`` is the global batch,
    rank 0 logs, shows progress and writes checkpoints (see :mod:`nlbook.train.distributed`).

    Args:
        config: the run (``config.checkpoint`` None: no checkpoints).
        corpus: the data; by default ``load_corpus(config.data)`` (Tiny Shakespeare if None).
        resume: continue from ``config.checkpoint`` exactly where it stopped. The stored
            configuration is used (only ``device`` and ``checkpoint`` come from ``config``).
        stop_at_step: stop (and checkpoint) after this many steps, as if interrupted there.
            Ctrl-C (SIGINT) and SIGTERM stop the run between two steps, after a checkpoint of
            the current step: :class:`TrainingInterrupted` (a KeyboardInterrupt) is raised.
            Checkpoints are also written every ``config.checkpoint_interval`` steps (default:
            ``eval_interval``) and after :data:`CHECKPOINT_SECONDS` of training.
        progress: show a tqdm progress bar with the loss.
        after_step: called as ``after_step(step, model)`` after every optimizer step (for
            notebooks that watch training, and tests that inject faults).
        log: where one-line messages go (None: silent). The first one names the world size.

    Raises:
        TrainingDivergedError: the loss or gradient became non-finite; names the step, and the
            checkpoint on disk is the last good one.
        CheckpointError, DataFileError: unreadable checkpoint or corpus (CheckpointError names
            what a checkpoint lacks or holds wrongly).
        ValueError: naming the argument, before any step: a bad argument, or a checkpoint
            path that cannot be written.
    """
    check_instance("config", config, TrainConfig, expected="a TrainConfig")
    check_instance("corpus", corpus, CharCorpus, allow_none=True,
                   expected="an nlbook.data.CharCorpus")
    check_bool("resume", resume)
    check_int("stop_at_step", stop_at_step, low=0, allow_none=True)
    check_bool("progress", progress)
    check_callable("after_step", after_step, allow_none=True)
    check_callable("log", log, allow_none=True)
    world = join_world(config.device)  # one process unless launched by torchrun
    say = log if log is not None and world.is_main else (lambda message: None)
    bar = None
    stops = _StopRequests(say)
    try:
        with stops:
            run = set_up_run(config, corpus=corpus, resume=resume, world=world)
            say(describe_run(run.config, world.size))
            if run.resumed_from_world_size is not None:
                written = ("" if run.resumed_from_world_size == world.size else
                           f" (written by {run.resumed_from_world_size} processes)")
                say(f"resumed {run.config.checkpoint} at step {run.step}{written}")
            checkpoint_interval = run.config.checkpoint_interval or run.config.eval_interval
            run.start_clock()
            last_write = time.perf_counter()
            bar = _Progress(run, enabled=progress and world.is_main, say=say)
            if run.step == 0 and not run.history["val_steps"]:
                bar.eval_seconds = record_evaluation(run)
            while not run.finished:
                stop, due = stops.pending(run, last_write)
                if stop:
                    raise stops.interrupt(run)
                if stop_at_step is not None and run.step >= stop_at_step:
                    break
                bar.before_step()
                loss_value = train_step(run)
                if after_step is not None:
                    after_step(run.step, run.model)
                bar.after_step(loss_value)
                stop_at_deadline(run, say)
                if run.step % run.config.eval_interval == 0 or run.finished \
                        or run.step == stop_at_step:
                    _check_finite_model(run)  # a non-finite model is never evaluated or kept
                if run.step % run.config.eval_interval == 0 or run.finished:
                    record_evaluation(run)
                bar.show()
                if run.step % checkpoint_interval == 0 or run.finished \
                        or run.step == stop_at_step or due:
                    write_checkpoint(run)
                    last_write = time.perf_counter()
            if stops.pending(run, last_write)[0]:  # a signal during the last step
                raise stops.interrupt(run)
    finally:
        if bar is not None:
            bar.close()
        world.close()
    seconds = run.local_elapsed()
    history = run.history
    if run.finished:
        say(f"{run.config.model}: {run.step} steps in {seconds:.1f} s; val loss "
            f"{history['val_loss'][-1]:.4f} nats/char = "
            f"{history['val_loss'][-1] / LN2:.4f} bits/char")
    run.model.eval()
    run.step_module = run.model  # drop DistributedDataParallel (its gradient hooks)
    return TrainResult(run.model, run.vocabulary, run.config, history, run.step,
                       run.total_steps if run.total_steps is not None else run.step, seconds,
                       run.config.checkpoint)


# ----------------------------------------------------------------------------- figure

def _figure_suffixes() -> list[str]:
    """The image formats matplotlib can write (``png``, ``pdf``, ``svg``, ...)."""
    from matplotlib.figure import Figure

    return sorted(Figure().canvas.get_supported_filetypes())


def save_loss_figure(result: TrainResult, path: str | Path,
                     references: dict[str, float] | None = None) -> Path:
    """Save the loss curves of ``result`` (with n-gram reference lines) as an image file."""
    from nlbook.viz.training import plot_training_curves

    check_instance("result", result, TrainResult, expected="a TrainResult (from train)")
    path = check_writable_path("path", path, suffixes=_figure_suffixes())
    if references is not None:
        check_instance("references", references, dict, expected="a dict name -> nats or None")
        for name, value in references.items():
            check_scalar_in_range(f"references[{name!r}]", value, -math.inf, math.inf)

    history = result.history
    label = f"{result.config.model} ({result.config.preset or 'custom'})"
    figure = plot_training_curves(history["train_steps"], history["train_loss"],
                                  history["val_steps"], history["val_loss"],
                                  references=references, label=label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
