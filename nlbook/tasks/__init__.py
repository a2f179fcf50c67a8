"""Tasks and data for chapter 7 ("what HOPE's memories buy"): one concept per module.

- :mod:`nlbook.tasks.formal_languages`  the paper's Table 5 languages (after Irie et al. 2023)
  as accept/reject at an end token, with length bins and a train/evaluate harness
- :mod:`nlbook.tasks.recall`            facts planted in Shakespeare and recalled across a gap;
  MQAR-style multi-key recall; training text where in-context recall is learnable
- :mod:`nlbook.tasks.phased_recall`     continual learning in context: MQAR set A, set B, A again
- :mod:`nlbook.tasks.mad`               MAD's six synthetic tasks (Poli et al. 2024): recall,
  fuzzy and noisy recall, selective copying, compression, memorisation
- :mod:`nlbook.tasks.continual`         corpus A (Tiny Shakespeare) → B (Python source) → A

Every generator is deterministic under an explicit seed or generator and validates its
arguments (ValueError naming the argument, what was given and what was expected).
"""

from __future__ import annotations

from nlbook.tasks.continual import (
    CORPORA,
    ContinualPhase,
    ContinualSetup,
    ContinualStep,
    continual_batches,
    continual_losses,
    continual_schedule,
    continual_setup,
)
from nlbook.tasks.formal_languages import (
    FORMAL_VOCABULARY,
    LANGUAGES,
    FormalBatch,
    FormalLanguageTask,
    FormalTrainingResult,
    evaluate_formal_language,
    formal_language_batch,
    formal_language_task,
    is_member,
    sample_strings,
    train_formal_language,
)
from nlbook.tasks.mad import (
    MAD_SETTINGS,
    MAD_TASKS,
    mad_batch,
    mad_chance,
    memorization_table,
)
from nlbook.tasks.phased_recall import PHASES, phased_mqar_batch, phased_mqar_layout
from nlbook.tasks.recall import (
    RecallPrompt,
    RecallResult,
    masked_accuracy,
    mqar_batch,
    recall_accuracy,
    recall_prompt,
    recall_training_batch,
    recall_training_text,
)

__all__ = [
    "CORPORA",
    "FORMAL_VOCABULARY",
    "LANGUAGES",
    "MAD_SETTINGS",
    "MAD_TASKS",
    "PHASES",
    "ContinualPhase",
    "ContinualSetup",
    "ContinualStep",
    "FormalBatch",
    "FormalLanguageTask",
    "FormalTrainingResult",
    "RecallPrompt",
    "RecallResult",
    "continual_batches",
    "continual_losses",
    "continual_schedule",
    "continual_setup",
    "evaluate_formal_language",
    "formal_language_batch",
    "formal_language_task",
    "is_member",
    "mad_batch",
    "mad_chance",
    "masked_accuracy",
    "memorization_table",
    "mqar_batch",
    "phased_mqar_batch",
    "phased_mqar_layout",
    "recall_accuracy",
    "recall_prompt",
    "recall_training_batch",
    "recall_training_text",
    "sample_strings",
    "train_formal_language",
]
