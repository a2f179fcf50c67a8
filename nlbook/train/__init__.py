"""Training loop, checkpoints and evaluation for the character language models of chapter 6.

Used by the notebook (``nlbook.train.train(TrainConfig(...))``) and by the command line::

    python -m nlbook.train --model transformer --preset tiny --steps 2000
    python -m nlbook.train --model hope --minutes 5 --data my_text.txt --device cuda
    python -m nlbook.train --checkpoint checkpoints/transformer-tiny.pt --resume
    torchrun --nproc_per_node 2 -m nlbook.train --model hope --batch-size 16   # 2 processes

What the loop does, step by step (one *step* is one optimizer update on one random batch):

* batches are random windows of the training split (first 90%, nanoGPT's split), drawn from an
  explicit ``torch.Generator`` seeded by ``config.seed``;
* the learning rate warms up linearly for ``warmup_steps`` and then follows a cosine down to
  ``min_learning_rate`` at the last step (nanoGPT's schedule);
* the optimizer is AdamW (weight decay on matrices only) unless ``config.optimizer`` names a
  torch optimizer (``adam``, ``sgd``) or a chapter-2 optimizer of :mod:`nlbook.optim`;
* validation loss is estimated every ``eval_interval`` steps on ``eval_batches`` fixed random
  windows of the validation split (a separate generator, so evaluating never changes training),
  reported in nats and bits per character (bits = nats / ln 2);
* a checkpoint is written atomically (temporary file, then ``os.replace``) every
  ``checkpoint_interval`` steps. It holds only tensors and plain containers, is loaded with
  ``torch.load(weights_only=True)``, and stores everything a resumed run needs to continue
  exactly as an uninterrupted one: model, optimizer, step, number of steps, the data
  generator's state, torch's RNG state (dropout) and the loss history (a ``--minutes`` run
  also stores the time spent, and its schedule follows the clock, so its resume is exact in
  everything but timing);
* a non-finite loss or gradient stops training with :class:`TrainingDivergedError`, naming the
  step, before the bad update is applied or saved: the last checkpoint stays the last good one;
* launched by ``torchrun``, every process runs the same loop under ``DistributedDataParallel``
  on its rows of the same global batch (:mod:`nlbook.train.distributed`).

The loop's steps are functions of a :class:`Run` (:func:`set_up_run`, :func:`train_step`,
:func:`record_evaluation`, :func:`write_checkpoint`); :func:`train` is their sequence.
"""

from __future__ import annotations

from nlbook.train.building import (
    OptimizerPair,
    build_model,
    build_optimizer,
    learning_rate_at,
)
from nlbook.train.checkpoints import (
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from nlbook.train.cli import main
from nlbook.train.config import (
    CHECKPOINT_FORMAT,
    MODEL_REGISTRY,
    NLBOOK_OPTIMIZERS,
    PRESETS,
    STATEFUL_MODELS,
    CheckpointError,
    ModelUnavailableError,
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
)
from nlbook.train.evaluation import (
    estimate_loss,
    evaluate_all,
    evaluate_stream,
    loss_by_position,
    stream_token_losses,
)
from nlbook.train.loop import (
    Run,
    TrainingInterrupted,
    checkpoint_state,
    record_evaluation,
    save_loss_figure,
    set_up_run,
    train,
    train_step,
    write_checkpoint,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_REGISTRY",
    "NLBOOK_OPTIMIZERS",
    "PRESETS",
    "STATEFUL_MODELS",
    "CheckpointError",
    "ModelUnavailableError",
    "OptimizerPair",
    "Run",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "build_model",
    "build_optimizer",
    "checkpoint_state",
    "estimate_loss",
    "evaluate_all",
    "evaluate_stream",
    "learning_rate_at",
    "load_checkpoint",
    "load_model",
    "loss_by_position",
    "main",
    "record_evaluation",
    "save_checkpoint",
    "save_loss_figure",
    "set_up_run",
    "stream_token_losses",
    "train",
    "train_step",
    "write_checkpoint",
]
