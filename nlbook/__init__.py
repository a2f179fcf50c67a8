"""nlbook: the companion package of a notebook course on Nested Learning and HOPE.

Behrouz, Razaviyayn, Zhong, Mirrokni, "Nested Learning: The Illusion of Deep Learning
Architectures" (NeurIPS 2025; longer arXiv version 2512.24695). One module per concept:

- ``nlbook.memory``   associative memories: linear attention, delta rule, Titans (chapter 1)
- ``nlbook.optim``    optimizers as associative memories (chapter 2)
- ``nlbook.cms``      the Continuum Memory System (chapter 3)
- ``nlbook.selfmod``  Delta Gradient Descent and self-modifying memories (chapter 4)
- ``nlbook.hope``     the HOPE block and language model (chapter 5)
- ``nlbook.data`` / ``nlbook.train``   Tiny Shakespeare and the training loop (chapter 6)
- ``nlbook.viz`` (pure plots) and ``nlbook.widgets`` (thin ipywidgets explorers)

This file stays light: it imports no chapter module, so ``import nlbook`` is fast.
"""

from __future__ import annotations

import os
import platform
import random
import warnings
from dataclasses import dataclass
from typing import TypeVar

__version__ = "0.1.0"

__all__ = ["SetupInfo", "__version__", "is_headless", "is_smoke", "setup", "smoke"]

_T = TypeVar("_T")
_TRUE_STRINGS = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_STRINGS


def is_smoke() -> bool:
    """True when ``NLBOOK_SMOKE=1``: the tests set it to shrink sizes and steps."""
    return _env_flag("NLBOOK_SMOKE")


def is_headless() -> bool:
    """True when no person is watching (tests, CI): widget callbacks are then also called
    directly so that an exception fails the notebook run instead of hiding in widget state."""
    return _env_flag("NLBOOK_HEADLESS") or is_smoke()


def smoke(full: _T, small: _T) -> _T:
    """Return ``small`` in smoke mode and ``full`` otherwise.

    The one place where notebook sizes shrink, e.g. ``steps = nlbook.smoke(2000, 20)``.
    The full sizes are the ones that teach; the small ones only prove the code runs.
    """
    return small if is_smoke() else full


@dataclass(frozen=True)
class SetupInfo:
    """What :func:`setup` did, so a notebook can print or assert on it."""

    seed: int
    threads: int
    smoke: bool
    device: str
    versions: dict[str, str]

    def __str__(self) -> str:
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        mode = "SMOKE (small sizes, for tests)" if self.smoke else "full sizes"
        return (
            f"nlbook {__version__} | seed {self.seed} | torch threads {self.threads} | "
            f"device {self.device} | {mode}\n{versions}"
        )


def setup(seed: int = 0, threads: int | None = 1, verbose: bool = True) -> SetupInfo:
    """Prepare a notebook or script: seed everything, fix the thread count, report versions.

    Args:
        seed: seeds Python's ``random``, numpy's global generator and torch (CPU and CUDA).
        threads: torch intra-op threads. One by default: the course's models are small, a
            second thread gains little and an oversubscribed 2-core laptop can get 40x slower.
            ``None`` keeps torch's default.
        verbose: print a one-paragraph summary (versions, device, smoke mode).

    Returns:
        A :class:`SetupInfo` describing the session.

    Raises:
        ValueError: if ``seed`` is negative or ``threads`` is not a positive integer.
    """
    from nlbook._checks import check_bool, check_int, check_positive_int

    check_int("seed", seed, low=0)
    check_positive_int("threads", threads, allow_none=True)
    check_bool("verbose", verbose)

    import matplotlib
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if threads is not None:
        torch.set_num_threads(threads)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
    }
    try:
        import ipywidgets

        versions["ipywidgets"] = ipywidgets.__version__
    except ImportError:  # widgets are optional outside notebooks
        versions["ipywidgets"] = "not installed"

    if _env_flag("NLBOOK_STRICT_WARNINGS"):
        # The tests (conftest.py) set it: a warning that a notebook's own code or nlbook
        # triggers (a deprecated name, a bad argument) would be printed to the learner, so in a
        # test run it is an error that fails the notebook.
        warnings.filterwarnings("error", module=r"__main__|nlbook(\..*)?$")

    info = SetupInfo(
        seed=seed,
        threads=torch.get_num_threads(),
        smoke=is_smoke(),
        device=device,
        versions=versions,
    )
    if verbose:
        print(info)
    return info
