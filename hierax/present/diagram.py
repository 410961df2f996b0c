"""The model's plate diagram (``numpyro.render_model``), when graphviz is installed."""

from __future__ import annotations

import io
import shutil
from typing import TYPE_CHECKING

from hierax.present.figures import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierax.results.fit import Fit

__all__ = ["graphviz_available", "plate_diagram", "plot_plate"]


def graphviz_available() -> bool:
    """True when the ``graphviz`` Python package and the ``dot`` program are installed."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def plate_diagram(fit: Fit) -> bytes | None:
    """The model's plate diagram as PNG bytes (``numpyro.render_model``).

    Returns None when graphviz is not installed or the fit has no model
    function (a fit loaded from a file).
    """
    if fit.model_fn is None or not graphviz_available():
        return None
    import numpyro

    graph = numpyro.render_model(
        fit.model_fn, model_kwargs=dict(fit.data), render_distributions=True
    )
    return bytes(graph.pipe(format="png"))


def plot_plate(fit: Fit) -> Figure | None:
    """The plate diagram as a Figure, or None when it cannot be drawn (see :func:`plate_diagram`)."""
    png = plate_diagram(fit)
    if png is None:
        return None
    plt = pyplot()
    image = plt.imread(io.BytesIO(png), format="png")
    dpi = 100
    fig = plt.figure(figsize=(image.shape[1] / dpi, image.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(image)
    ax.axis("off")
    return fig
