"""Pure plotting functions: arrays (or tensors) in, a matplotlib ``Figure`` out.

Nothing here touches ipywidgets or global pyplot state beyond creating the figure, so each
function can be unit-tested under the Agg backend and called directly from a notebook before a
widget wraps it (widget callbacks swallow exceptions; a direct call fails loudly).

One file per chapter; everything is re-exported here, so notebooks write ``nlbook.viz.plot_*``.
``nlbook.viz.palette`` gives every model one colour (``model_color("HOPE")``), used by every
figure.
"""

from nlbook.viz import (
    associative,
    claims,
    continuum,
    diagrams,
    hope,
    optimizers,
    recall,
    selfmod,
    training,
)
from nlbook.viz._common import distinguish_series, new_figure, to_numpy
from nlbook.viz.associative import *  # noqa: F403
from nlbook.viz.claims import *  # noqa: F403
from nlbook.viz.continuum import *  # noqa: F403
from nlbook.viz.diagrams import *  # noqa: F403
from nlbook.viz.hope import *  # noqa: F403
from nlbook.viz.optimizers import *  # noqa: F403
from nlbook.viz.palette import MODEL_COLORS, colors_for, model_color
from nlbook.viz.recall import *  # noqa: F403
from nlbook.viz.selfmod import *  # noqa: F403
from nlbook.viz.training import *  # noqa: F403

# Every plot of every chapter module, so ``from nlbook.viz import *`` and the API listings see
# them (a literal list here went stale: it named none of the plot_* functions). A new module
# goes in the star imports above and in this tuple (tests/test_checks.py checks it).
__all__ = ["MODEL_COLORS", "colors_for", "model_color", "new_figure", "to_numpy"]
__all__ += sorted(name for module in (associative, claims, continuum, diagrams, hope, optimizers,
                                      recall, selfmod, training) for name in module.__all__)


def _styled(plot):
    """``plot`` with :func:`~nlbook.viz._common.distinguish_series` run on its figure."""
    import functools

    @functools.wraps(plot)
    def draw(*args, **kwargs):
        figure = plot(*args, **kwargs)
        distinguish_series(figure)
        return figure

    return draw


# Every series of every figure gets its own colour and line style, and no legend covers data.
for _name in __all__:
    if _name.startswith("plot_"):
        globals()[_name] = _styled(globals()[_name])
del _name
