"""Continual learning at laptop scale: corpus A → corpus B → corpus A, losses tracked on both.

**What "continual" means here.** One character model is trained in *phases* on two corpora
that share one vocabulary (:func:`nlbook.data.load_corpus_pair`, 96 characters):
A = Tiny Shakespeare (English verse and prose), B = a snapshot of CPython's standard library
(Python source, ``data/python-stdlib.txt``). The default schedule is A → B → A with equal steps
per phase. Throughout, the validation loss on *both* corpora is tracked on fixed windows
(:meth:`ContinualSetup.validation_sets`), which shows:

- **forgetting**: how far the loss on A rises while the model trains on B;
- **recovery**: how fast the loss on A comes back in the second A phase (and whether it beats
  the end of the first A phase), and how much of B survives it;
- **transfer**: whether B is learned faster after A than from scratch (compare a run that starts
  with B).

The data arrive without task labels; nothing is replayed; the optimizer is not reset between
phases unless the experiment does so. The shift is in the *training distribution over thousands
of optimizer steps*: what HOPE brings to it is its in-context memories (self-modifying Titans
and the CMS's fast levels adapt within a window or a stream, its slow CMS level only through
the optimizer), against a Transformer whose only memory across windows is its weights.

**What it does not test, compared with the paper** (arXiv 2512.24695 §9.1, Figs. 6–8):

- the paper's **class-incremental** experiments (CLINC 150 intents, Banking 77, DBpedia 70
  classes) add *new classes* over time to a *pre-trained Llama-3B/8B* adapted into HOPE, and
  score accuracy on every class seen so far against ICL, EWC and InCA: classification, task
  sequences of many steps, billions of parameters. Here: two corpora, next-character loss, no
  pre-training, ~10⁵ parameters, three phases;
- **CTNL** (learning Kalamang and Manchu *in context* from grammar material, then translating,
  scored by ChrF; single-language vs sequential) tests learning *within one long context* at
  test time, with no weight updates. Here the phases change the weights; nothing is learned
  from a single document at test time, and there is no translation;
- neither the paper's **number of CMS levels** sweep (more levels recover more) nor its
  **long contexts** (tens of thousands of tokens) are reproduced here.

So a result here says how a small character model's *training* copes with a distribution shift
and back, at laptop scale; it supports or contradicts the paper's continual-learning claims
only by analogy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nlbook._checks import check_positive_int
from nlbook.data import CharCorpus, CharVocabulary, load_corpus_pair, random_batch

__all__ = [
    "CORPORA",
    "ContinualPhase",
    "ContinualSetup",
    "ContinualStep",
    "continual_batches",
    "continual_losses",
    "continual_schedule",
    "continual_setup",
]

#: The two corpora: ``"A"`` Tiny Shakespeare, ``"B"`` the CPython standard-library snapshot.
CORPORA: dict[str, str] = {"A": "tiny_shakespeare", "B": "python_stdlib"}


@dataclass(frozen=True)
class ContinualPhase:
    """One phase: ``steps`` optimizer steps on ``corpus`` ("A" or "B"), starting at
    global step ``first_step`` (0-based); ``index`` is its place in the schedule."""

    index: int
    corpus: str
    first_step: int
    steps: int

    @property
    def last_step(self) -> int:
        return self.first_step + self.steps - 1


@dataclass(frozen=True)
class ContinualStep:
    """One training step of :func:`continual_batches`: global step, its phase, and a batch
    (inputs, targets: int64 (B, T)) from the phase's corpus."""

    step: int
    phase: ContinualPhase
    inputs: torch.Tensor
    targets: torch.Tensor


@dataclass(frozen=True)
class ContinualSetup:
    """The corpora (one joint vocabulary), the phase schedule and fixed validation windows.

    Attributes:
        vocabulary: the joint :class:`~nlbook.data.CharVocabulary` (build models with
            ``vocab_size = len(setup.vocabulary)``).
        corpora: ``{"A": CharCorpus, "B": CharCorpus}``, both 90/10 split.
        phases: the schedule, in order.
    """

    vocabulary: CharVocabulary
    corpora: dict[str, CharCorpus]
    phases: tuple[ContinualPhase, ...]

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases)

    def phase_at(self, step: int) -> ContinualPhase:
        """The phase that global ``step`` (0-based) belongs to."""
        if isinstance(step, bool) or not isinstance(step, int) \
                or not 0 <= step < self.total_steps:
            raise ValueError(f"step must be an int in [0, {self.total_steps}), got {step!r}")
        for phase in self.phases:
            if step <= phase.last_step:
                return phase
        raise AssertionError("unreachable")

    def validation_sets(self, *, context_length: int, windows: int = 32, seed: int = 0
                        ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Fixed validation windows of each corpus, the same on every call (for tracking).

        Returns ``{"A": (inputs, targets), "B": (inputs, targets)}``, each int64
        (windows, context_length), drawn from the corpus's validation split (its last 10 %)
        with ``torch.Generator().manual_seed(seed)``.
        """
        check_positive_int("context_length", context_length)
        check_positive_int("windows", windows)
        out = {}
        for name, corpus in self.corpora.items():
            generator = torch.Generator().manual_seed(seed)
            out[name] = random_batch(corpus.val_ids, windows, context_length, generator)
        return out


def continual_setup(*, steps_per_phase: int | Sequence[int], order: Sequence[str] = ("A", "B", "A"),
                    corpora: tuple[CharCorpus, CharCorpus] | None = None) -> ContinualSetup:
    """The A → B → A setup (or any ``order`` of ``"A"`` and ``"B"``).

    Args:
        steps_per_phase: steps of every phase (an int), or one int per phase.
        order: the corpus of each phase, e.g. ``("A", "B", "A")``.
        corpora: (A, B) sharing one vocabulary; default :func:`nlbook.data.load_corpus_pair`
            (Tiny Shakespeare and the standard-library snapshot, both sha256-checked).

    Raises:
        ValueError: naming the argument: an empty or unknown ``order``, a non-positive or
            mismatched ``steps_per_phase``, or corpora with different vocabularies.
    """
    if isinstance(order, str) or not isinstance(order, Sequence) or not order:
        raise ValueError(f"order must be a non-empty sequence of 'A' and 'B', got {order!r}")
    for corpus in order:
        if corpus not in CORPORA:
            raise ValueError(f"order must hold only 'A' and 'B', got {corpus!r}")
    if isinstance(steps_per_phase, int) and not isinstance(steps_per_phase, bool):
        steps = [steps_per_phase] * len(order)
    elif isinstance(steps_per_phase, Sequence) and not isinstance(steps_per_phase, str):
        steps = list(steps_per_phase)
        if len(steps) != len(order):
            raise ValueError(f"steps_per_phase must give one int per phase ({len(order)}), got "
                             f"{len(steps)}")
    else:
        raise ValueError(f"steps_per_phase must be an int or a sequence of ints, got "
                         f"{steps_per_phase!r}")
    for value in steps:
        check_positive_int("steps_per_phase", value)
    if corpora is None:
        corpora = load_corpus_pair()
    if not isinstance(corpora, (tuple, list)) or len(corpora) != 2 \
            or not all(isinstance(corpus, CharCorpus) for corpus in corpora):
        raise ValueError("corpora must be a pair (A, B) of nlbook.data.CharCorpus")
    if corpora[0].vocabulary != corpora[1].vocabulary:
        raise ValueError("corpora must share one vocabulary (see nlbook.data.load_corpus_pair)")
    phases, first = [], 0
    for index, (corpus, count) in enumerate(zip(order, steps, strict=True)):
        phases.append(ContinualPhase(index, corpus, first, count))
        first += count
    return ContinualSetup(corpora[0].vocabulary, {"A": corpora[0], "B": corpora[1]},
                          tuple(phases))


def continual_schedule(setup: ContinualSetup) -> Iterator[tuple[int, ContinualPhase]]:
    """Yield ``(global step, phase)`` for every step of the schedule, in order."""
    if not isinstance(setup, ContinualSetup):
        raise ValueError(f"setup must be a ContinualSetup, got {type(setup).__name__}")
    for phase in setup.phases:
        for step in range(phase.first_step, phase.first_step + phase.steps):
            yield step, phase


def continual_batches(setup: ContinualSetup, *, batch_size: int, context_length: int,
                      generator: torch.Generator, device: str | torch.device = "cpu"
                      ) -> Iterator[ContinualStep]:
    """Yield one :class:`ContinualStep` per step: random training windows of the current
    phase's corpus (:func:`nlbook.data.random_batch`, one shared ``generator``)."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("context_length", context_length)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    for step, phase in continual_schedule(setup):
        inputs, targets = random_batch(setup.corpora[phase.corpus].train_ids, batch_size,
                                       context_length, generator, device)
        yield ContinualStep(step, phase, inputs, targets)


@torch.no_grad()
def continual_losses(model: nn.Module,
                     validation_sets: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
                     batch_size: int = 32) -> dict[str, float]:
    """Mean next-character loss (nats/char) of ``model`` on each validation set, eval mode.

    ``validation_sets`` as :meth:`ContinualSetup.validation_sets` returns it.
    """
    check_positive_int("batch_size", batch_size)
    if not isinstance(validation_sets, dict) or not validation_sets:
        raise ValueError("validation_sets must be a non-empty dict name -> (inputs, targets)")
    was_training = model.training
    model.eval()
    out = {}
    try:
        for name, (inputs, targets) in validation_sets.items():
            total, count = 0.0, 0
            for start in range(0, len(inputs), batch_size):
                x, y = inputs[start:start + batch_size], targets[start:start + batch_size]
                _, loss = model(x, y)
                total += float(loss) * int((y >= 0).sum())
                count += int((y >= 0).sum())
            out[name] = total / count
    finally:
        model.train(was_training)
    return out
