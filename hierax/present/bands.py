"""Bands of draws over x: nested central intervals with the median, and per-group
panels of observed points inside their predictive interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hierax.present.figures import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["band_by_group", "plot_band"]


def plot_band(
    x: np.ndarray,
    draws: np.ndarray,
    *,
    ax: Any = None,
    probabilities: Sequence[float] = (0.5, 0.8, 0.95),
    color: str = "tab:blue",
    n_lines: int = 20,
    seed: int = 0,
) -> Any:
    """Nested central intervals of ``draws`` (shape (sample, x)) over ``x``, median and a few draws."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    x = np.asarray(x)
    draws = np.asarray(draws)
    for probability in sorted(probabilities, reverse=True):
        lower, upper = np.quantile(draws, [(1 - probability) / 2, (1 + probability) / 2], axis=0)
        ax.fill_between(
            x,
            lower,
            upper,
            color=color,
            alpha=0.18,
            lw=0,
            label=f"{int(probability * 100)} % interval",
        )
    ax.plot(x, np.median(draws, axis=0), color=color, lw=2, label="median")
    rng = np.random.default_rng(seed)
    for index in rng.choice(draws.shape[0], size=min(n_lines, draws.shape[0]), replace=False):
        ax.plot(x, draws[index], color=color, lw=0.4, alpha=0.4)
    return ax


def band_by_group(
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    draws: np.ndarray,
    *,
    probability: float = 0.9,
    ncols: int = 4,
    title: str = "posterior predictive check per group",
) -> Figure:
    """Per-group panels: observed points and the central predictive interval of ``draws``.

    ``draws`` has shape (sample, row), one predictive draw per row of the table.
    """
    plt = pyplot()
    levels = list(dict.fromkeys(np.sort(group)))
    nrows = int(np.ceil(len(levels) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), sharex=True, sharey=True, squeeze=False
    )
    tail = 100 * (1 - probability) / 2
    for ax, level in zip(np.ravel(axes), levels, strict=False):
        mask = group == level
        order = np.argsort(x[mask])
        lower, median, upper = np.percentile(
            draws[:, mask][:, order], [tail, 50, 100 - tail], axis=0
        )
        ax.fill_between(
            x[mask][order],
            lower,
            upper,
            color="tab:red",
            alpha=0.3,
            label=f"{int(100 * probability)} % predictive interval",
        )
        ax.plot(x[mask][order], median, color="tab:red", label="median prediction")
        ax.scatter(x[mask], y[mask], s=8, label="observed")
        ax.set_title(f"group {level}", fontsize=9)
    for ax in np.ravel(axes)[len(levels) :]:
        ax.axis("off")
    np.ravel(axes)[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
