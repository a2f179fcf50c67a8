"""Chapter 7, "what HOPE's memories buy": the paper's claims tested at laptop scale.

One module per experiment; each runs HOPE against a Transformer of matched parameter count and
against HOPE with one part removed, under the same seeds, and returns a result whose
``.table()`` is the plain-text table the chapter and the README print and whose arrays feed one
pure plot of :mod:`nlbook.viz` (``.plot()``):

- :mod:`nlbook.claims.ablation`   HOPE with one part removed (arXiv Table 6):
  :func:`run_ablation` → :class:`AblationResult`
- :mod:`nlbook.claims.formal`     formal languages, trained short and tested long (arXiv
  Table 5): :func:`run_formal` → :class:`FormalResult`
- :mod:`nlbook.claims.recall`     recall of a planted fact across a gap, on trained models:
  :func:`run_recall` → :class:`RecallGapResult`
- :mod:`nlbook.claims.continual`  continual learning A → B → A, forgetting and recovery:
  :func:`run_continual` → :class:`ContinualResult`, :func:`continual_metrics`
- :mod:`nlbook.claims.language`   Tiny Shakespeare at equal tokens: perplexity, the ablation
  and the loss against context (arXiv Tables 2 and 6, Fig. 10): :func:`run_language`
- :mod:`nlbook.claims.mqar`, :mod:`nlbook.claims.sign_flip`  recall (MQAR) and the sign flip
- :mod:`nlbook.claims.phased`     continual learning in context (phased MQAR: A, B, A's queries
  again, weights frozen): :func:`run_phased_mqar` → :class:`PhasedMQARResult`
- :mod:`nlbook.claims.protocol`   the rules every experiment follows (budgets, seeds, controls,
  verdicts)
- :mod:`nlbook.claims.results`    the full protocol's results file ``data/claims.json``
  (``python -m nlbook.bench claims``)
- :mod:`nlbook.claims.mad`        MAD's six synthetic tasks (arXiv Table 4), HOPE against
  Transformer++: :func:`run_mad` → :class:`MADResult`
- :mod:`nlbook.claims.table`      the claims map (each claim, its scale, the verdict here),
  read from the results file

Every experiment takes ``models`` (name → factory of a fresh ``nn.Module``, called as
``factory(seed=seed)``), a budget in optimizer steps (equal steps for every model; the
seconds each took are reported beside the numbers), ``seeds``, and where it applies
``switches``: variants that read a *trained* model inside a context manager such as
:func:`nlbook.hope.frozen_memories`. ``python -m nlbook.bench formal|recall|continual`` prints
each table at a larger size.
"""

from __future__ import annotations

from nlbook.claims._common import ModelFactory, Switch, TextLearner, format_table
from nlbook.claims.ablation import (
    ABLATION_VARIANTS,
    AblationResult,
    AblationRow,
    ablation_configs,
    run_ablation,
)
from nlbook.claims.continual import (
    ContinualMetrics,
    ContinualResult,
    continual_metrics,
    continual_models,
    run_continual,
)
from nlbook.claims.formal import (
    FORMAL_TEST_LENGTHS,
    FORMAL_TRAIN_LENGTHS,
    LANGUAGE_LABELS,
    FormalResult,
    formal_models,
    formal_switches,
    run_formal,
)
from nlbook.claims.language import LANGUAGE_VARIANTS, LanguageResult, run_language
from nlbook.claims.mad import (
    MAD_MODELS,
    PAPER_TABLE4,
    CompressionReader,
    MADResult,
    mad_models,
    run_mad,
)
from nlbook.claims.mqar import (
    MQAR_MODELS,
    MQARResult,
    MQARRun,
    mqar_models,
    run_mqar,
)
from nlbook.claims.phased import (
    PHASED_CLAIM,
    PHASED_MODELS,
    PhasedMQARResult,
    PhasedRun,
    phased_models,
    phased_switches,
    run_phased_mqar,
)
from nlbook.claims.protocol import wilson_interval
from nlbook.claims.recall import (
    RECALL_GAPS,
    RecallGapResult,
    recall_models,
    recall_switches,
    run_recall,
    visible_gap,
)
from nlbook.claims.results import (
    CLAIMS_EXPERIMENTS,
    claims_figure,
    claims_record,
    load_claims_results,
    run_claims_experiment,
    show_claims_record,
)
from nlbook.claims.sign_flip import SignFlipResult, run_sign_flip
from nlbook.claims.table import (
    CLAIMS,
    VERDICTS,
    Claim,
    claims_from_results,
    claims_table,
    claims_verdicts_table,
)

__all__ = [
    "ABLATION_VARIANTS",
    "CLAIMS",
    "CLAIMS_EXPERIMENTS",
    "FORMAL_TEST_LENGTHS",
    "FORMAL_TRAIN_LENGTHS",
    "LANGUAGE_LABELS",
    "LANGUAGE_VARIANTS",
    "MAD_MODELS",
    "MQAR_MODELS",
    "PAPER_TABLE4",
    "PHASED_CLAIM",
    "PHASED_MODELS",
    "RECALL_GAPS",
    "VERDICTS",
    "AblationResult",
    "AblationRow",
    "Claim",
    "CompressionReader",
    "ContinualMetrics",
    "ContinualResult",
    "FormalResult",
    "LanguageResult",
    "MADResult",
    "MQARResult",
    "MQARRun",
    "ModelFactory",
    "PhasedMQARResult",
    "PhasedRun",
    "RecallGapResult",
    "SignFlipResult",
    "Switch",
    "TextLearner",
    "ablation_configs",
    "claims_figure",
    "claims_from_results",
    "claims_record",
    "claims_table",
    "claims_verdicts_table",
    "continual_metrics",
    "continual_models",
    "formal_models",
    "formal_switches",
    "format_table",
    "load_claims_results",
    "mad_models",
    "mqar_models",
    "phased_models",
    "phased_switches",
    "recall_models",
    "recall_switches",
    "run_ablation",
    "run_claims_experiment",
    "run_continual",
    "run_formal",
    "run_language",
    "run_mad",
    "run_mqar",
    "run_phased_mqar",
    "run_recall",
    "run_sign_flip",
    "show_claims_record",
    "visible_gap",
    "wilson_interval",
]
