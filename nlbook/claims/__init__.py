"""The paper's claims tested at laptop scale (chapter 7): one module per experiment."""

from nlbook.claims.ablation import (
    ABLATION_VARIANTS,
    AblationResult,
    AblationRow,
    ablation_configs,
    run_ablation,
)

__all__ = ["ABLATION_VARIANTS", "AblationResult", "AblationRow", "ablation_configs",
           "run_ablation"]
