"""Plots of the posterior: ridge/forest with HDI, corner plots with true values,
trace and rank plots, per-group intervals (caterpillar) and prior vs posterior.

ArviZ draws where it has the plot; the helpers here add what it lacks. Every
function returns the matplotlib Figure and never calls ``show``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np

from hierax.errors import HieraxError
from hierax.present.figures import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierax.results.fit import Fit

__all__ = [
    "plot_caterpillar",
    "plot_forest",
    "plot_pair",
    "plot_prior_posterior",
    "plot_rank",
    "plot_ridge",
    "plot_trace",
]


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
    plt = pyplot()
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


# ----------------------------------------------------------- group estimates
def plot_caterpillar(
    fit: Fit,
    var: str,
    truth: Any = None,
    *,
    hdi_prob: float = 0.94,
    sort: bool = True,
    max_labels: int = 40,
) -> Figure:
    """Group estimates sorted by posterior mean, with HDI intervals and true values.

    Parameters
    ----------
    fit : Fit
    var : str
        A posterior variable with one or more group dimensions (``theta``, ``r_g``).
    truth : array or dict, optional
        True values in the variable's order (flattened), or a dict holding them
        under ``var`` (as the examples' ``truth()``).
    hdi_prob : float
        Probability of the thin interval; the thick one is the 50 % HDI.
    sort : bool
        Sort the entries by posterior mean.
    max_labels : int
        Entry labels are written when there are at most this many entries.

    Returns
    -------
    Figure
    """
    draws = fit.draws(var)
    flat = draws.reshape(draws.shape[0], -1)
    size = flat.shape[1]
    labels = _entry_labels(fit, var)
    true_values = _truth_values(truth, var, size)
    mean = flat.mean(axis=0)
    outer, inner = _hdi(flat, hdi_prob), _hdi(flat, 0.5)
    order = np.argsort(mean) if sort else np.arange(size)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, min(1.4 + 0.2 * size, 12)))
    y = np.arange(size)
    ax.hlines(
        y, outer[0][order], outer[1][order], color="tab:blue", lw=1, label=f"{hdi_prob:.0%} HDI"
    )
    ax.hlines(y, inner[0][order], inner[1][order], color="tab:blue", lw=3.5, label="50% HDI")
    ax.plot(mean[order], y, "o", color="navy", ms=3, label="posterior mean")
    if true_values is not None:
        ax.plot(true_values[order], y, "x", color="tab:red", ms=6, mew=1.5, label="true value")
    if size <= max_labels:
        ax.set_yticks(y)
        ax.set_yticklabels([labels[i] for i in order], fontsize=8)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{size} entries" + (", sorted by mean" if sort else ""))
    ax.set_ylim(-1, size)
    ax.set(xlabel=var, title=f"{var}: estimates per group")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _entry_labels(fit: Fit, var: str) -> list[str]:
    """``a, x`` labels of every entry of a variable, in flattened order."""
    array = fit.posterior[var]
    dims = array.dims[2:]
    if not dims:
        return [var]
    grids = np.meshgrid(*[array.coords[d].values for d in dims], indexing="ij")
    return [", ".join(str(g.ravel()[i]) for g in grids) for i in range(grids[0].size)]


def _truth_values(truth: Any, var: str, size: int) -> np.ndarray | None:
    if truth is None:
        return None
    if isinstance(truth, Mapping):
        if var not in truth:
            return None
        truth = truth[var]
    values = np.asarray(truth, dtype=float).ravel()
    if values.size != size:
        raise HieraxError(f"truth for {var!r} has {values.size} values; the variable has {size}.")
    return values


def _hdi(draws: np.ndarray, probability: float) -> tuple[np.ndarray, np.ndarray]:
    """Narrowest interval holding ``probability`` of the draws, per column of (sample, k)."""
    ordered = np.sort(draws, axis=0)
    n = ordered.shape[0]
    width = min(max(int(np.floor(probability * n)), 1), n - 1) if n > 1 else 0
    spans = ordered[width:] - ordered[: n - width]
    start = np.argmin(spans, axis=0)
    columns = np.arange(ordered.shape[1])
    return ordered[start, columns], ordered[start + width, columns]


# ------------------------------------------------------- prior vs posterior
def plot_prior_posterior(
    fit: Fit,
    var_names: Sequence[str] | None = None,
    *,
    max_panels: int = 12,
    ncols: int = 3,
    bins: int = 40,
) -> Figure:
    """Prior and posterior densities of each entry, one panel per entry.

    Parameters
    ----------
    fit : Fit
        Made with ``prior=True`` (it needs the ``prior`` group).
    var_names : list of str, optional
        Variables to show; the scalar variables by default.
    max_panels : int
        At most this many entries (the first ones of vector variables).
    ncols : int
    bins : int
        Histogram bins over the shown range (the posterior's and the central
        98 % of the prior).

    Returns
    -------
    Figure
    """
    if "prior" not in fit.idata.groups():
        raise HieraxError("prior vs posterior needs the prior group: fit with prior=True.")
    panels = _prior_posterior_panels(fit, var_names, max_panels)
    if not panels:
        raise HieraxError("no posterior variable has prior draws to compare with.")
    plt = pyplot()
    ncols = min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.5 * nrows), squeeze=False)
    for ax, (label, prior, posterior) in zip(np.ravel(axes), panels, strict=False):
        _prior_posterior_panel(ax, label, prior, posterior, bins)
    for ax in np.ravel(axes)[len(panels) :]:
        ax.axis("off")
    np.ravel(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _prior_posterior_panels(
    fit: Fit, var_names: Sequence[str] | None, max_panels: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    prior_group = fit.idata["prior"]
    if var_names is None:
        var_names = [
            str(n)
            for n in fit.posterior.data_vars
            if n in prior_group and fit.posterior[n].ndim == 2
        ]
    panels = []
    for name in var_names:
        if name not in prior_group:
            raise HieraxError(f"{name!r} has no prior draws.")
        prior = np.asarray(prior_group[name], dtype=float)
        prior = prior.reshape((-1,) + prior.shape[2:]).reshape(prior.shape[0] * prior.shape[1], -1)
        posterior = fit.draws(name).reshape(fit.draws(name).shape[0], -1)
        labels = _entry_labels(fit, name)
        for i, label in enumerate(labels):
            panels.append(
                (label if label == name else f"{name}[{label}]", prior[:, i], posterior[:, i])
            )
    return panels[:max_panels]


def _prior_posterior_panel(
    ax: Any, label: str, prior: np.ndarray, posterior: np.ndarray, bins: int
) -> None:
    prior, posterior = prior[np.isfinite(prior)], posterior[np.isfinite(posterior)]
    low = min(np.quantile(prior, 0.01), posterior.min())
    high = max(np.quantile(prior, 0.99), posterior.max())
    if not high > low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    for values, color, name in ((prior, "0.55", "prior"), (posterior, "tab:blue", "posterior")):
        counts, _ = np.histogram(values, bins=edges)
        density = counts / (values.size * np.diff(edges))
        ax.stairs(density, edges, fill=True, alpha=0.45, color=color, label=name)
    ax.set_title(label, fontsize=9)
    ax.set_yticks([])
