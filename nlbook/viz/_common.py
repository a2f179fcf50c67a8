"""Small helpers shared by the chapter plotting modules."""

from __future__ import annotations

import matplotlib

# Importing pyplot does not pick a GUI backend by itself; notebooks keep their inline backend.
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["new_figure", "to_numpy"]


def to_numpy(array) -> np.ndarray:
    """Convert a tensor (any device, with or without grad) or array-like to a numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu()
        if array.dtype.is_floating_point:
            array = array.double()
        return array.numpy()
    return np.asarray(array)


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.4,
               **subplot_kwargs) -> tuple[matplotlib.figure.Figure, np.ndarray]:
    """A figure with an ``nrows x ncols`` grid of axes, returned as a flat array of axes.

    The figure is detached from pyplot's state machine (``plt.close``) so that figures made in
    loops or widget callbacks do not pile up; Jupyter still shows a returned ``Figure``.
    """
    figure, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                squeeze=False, layout="constrained", **subplot_kwargs)
    plt.close(figure)
    return figure, axes.ravel()
