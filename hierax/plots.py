"""Plots people expect from a fit: ridge/forest with HDI, corner plots with true
values, trace and rank plots, predictive bands and per-group intervals.

ArviZ draws where it has the plot; the helpers here add what it lacks. Every
function returns the matplotlib Figure and never calls ``show``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import matplotlib

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .fit import Fit

import numpy as np


def _pyplot() -> Any:
    import matplotlib.pyplot as plt

    return plt


def use_headless_backend() -> None:
    """Switch to the non-interactive Agg backend (for the CLI and tests)."""
    matplotlib.use("Agg", force=True)


def _scalar_labels(fit: Fit, var_names: Sequence[str]) -> int:
    return sum(int(np.prod(fit.posterior[name].shape[2:])) for name in var_names)


def plot_ridge(
    fit: Fit,
    var_names: Sequence[str],
    *,
    hdi_prob: float = 0.99,
    units: Mapping[str, str] | None = None,
) -> Figure:
    """One ridge plot (combined chains, HDI) per variable, side by side, as in the calibration seed."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        ncols=len(var_names), figsize=(2.6 * len(var_names), 3.2), squeeze=False
    )
    for ax, name in zip(axes[0], var_names, strict=True):
        az.plot_forest(
            fit.idata,
            var_names=[name],
            kind="ridgeplot",
            combined=True,
            hdi_prob=hdi_prob,
            ax=ax,
            ridgeplot_overlap=1.5,
        )
        labels = [t.get_text().replace(name, "").strip(": ") or name for t in ax.get_yticklabels()]
        ax.set_yticklabels(labels)
        unit = (units or {}).get(name)
        ax.set_xlabel(f"{name} / {unit}" if unit else name)
        ax.set_title("")
    fig.suptitle(f"posterior ({int(hdi_prob * 100)} % HDI)")
    fig.tight_layout()
    return fig


def plot_forest(
    fit: Fit,
    var_names: Sequence[str],
    *,
    hdi_prob: float = 0.94,
    truth: Mapping[str, Any] | None = None,
) -> Figure:
    """Forest plot (per chain and combined HDI) with true values marked when known."""
    n_rows = _scalar_labels(fit, var_names)
    axes = az.plot_forest(
        fit.idata,
        var_names=list(var_names),
        combined=True,
        hdi_prob=hdi_prob,
        figsize=(6, 1.0 + 0.3 * n_rows),
    )
    ax = np.ravel(axes)[0]
    if truth:
        _mark_truth_on_forest(ax, fit, var_names, truth)
    fig = ax.figure
    fig.tight_layout()
    return fig


def _mark_truth_on_forest(
    ax: Any, fit: Fit, var_names: Sequence[str], truth: Mapping[str, Any]
) -> None:
    labels = [t.get_text() for t in ax.get_yticklabels()]
    positions = ax.get_yticks()
    flat_truth: dict[str, float] = {}
    for name in var_names:
        if name not in truth:
            continue
        values = np.atleast_1d(np.asarray(truth[name], dtype=float))
        dims = fit.posterior[name].dims[2:]
        if not dims:
            flat_truth[name] = float(values[0])
            continue
        coords = fit.posterior[name].coords[dims[0]].values
        for coord, value in zip(coords, values, strict=False):
            flat_truth[f"{name}[{coord}]"] = float(value)
    marked = False
    for label, y in zip(labels, positions, strict=False):
        key = label.replace(" ", "")
        for name, value in flat_truth.items():
            if key == name.replace(" ", ""):
                ax.plot(
                    [value],
                    [y],
                    "x",
                    color="tab:red",
                    ms=8,
                    mew=2,
                    label=None if marked else "true value",
                )
                marked = True
    if marked:
        ax.legend(loc="best", fontsize=8)


def plot_pair(
    fit: Fit,
    var_names: Sequence[str],
    *,
    truth: Mapping[str, Any] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> Figure:
    """Corner plot (KDE) with the true values marked in red when known."""
    # ArviZ indexes each reference array with the same selection as the draws.
    reference = {
        name: np.asarray(truth[name], dtype=float) for name in var_names if truth and name in truth
    }
    size = max(4.0, 2.2 * len(var_names))
    with warnings.catch_warnings():
        # true values are often known for only some variables: that is fine
        warnings.filterwarnings("ignore", message="Argument reference_values does not include")
        axes = _pair(fit, var_names, coords, reference, size)
    return np.ravel(axes)[0].figure


def _pair(
    fit: Fit,
    var_names: Sequence[str],
    coords: Mapping[str, Any] | None,
    reference: dict[str, np.ndarray],
    size: float,
) -> Any:
    return az.plot_pair(
        fit.idata,
        var_names=list(var_names),
        coords=dict(coords) if coords else None,
        kind="kde",
        marginals=True,
        reference_values=reference or None,
        reference_values_kwargs={"color": "tab:red", "marker": "o", "markersize": 5},
        kde_kwargs={"contourf_kwargs": {"cmap": "Greys"}, "contour_kwargs": {"alpha": 0.0}},
        figsize=(size, size),
        textsize=9,
    )


def plot_trace(fit: Fit, var_names: Sequence[str] | None = None) -> Figure:
    """Trace plot: per-chain densities and draws."""
    axes = az.plot_trace(fit.idata, var_names=list(var_names) if var_names else None, compact=True)
    fig = np.ravel(axes)[0].figure
    fig.tight_layout()
    return fig


def plot_rank(fit: Fit, var_names: Sequence[str] | None = None) -> Figure:
    """Rank plots: uniform bars mean the chains mix."""
    axes = az.plot_rank(fit.idata, var_names=list(var_names) if var_names else None)
    fig = np.ravel(axes)[0].figure
    fig.tight_layout()
    return fig


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
    plt = _pyplot()
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
    plt = _pyplot()
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


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return path
