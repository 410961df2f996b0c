"""Plots people expect from a fit: ridge/forest with HDI, corner plots with true
values, trace and rank plots, posterior predictive checks, predictive bands,
per-group intervals (caterpillar), prior vs posterior and the plate diagram.

ArviZ draws where it has the plot; the helpers here add what it lacks. Every
function returns the matplotlib Figure and never calls ``show``.
"""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import arviz as az
import matplotlib

from .errors import HieraxError

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


# ------------------------------------------------------- predictive checks
PpcKind = Literal["auto", "density", "bars", "intervals"]

#: Integer data spanning at most this many values are drawn as count bars.
MAX_COUNT_VALUES = 60


def plot_ppc(
    fit: Fit,
    var_names: Sequence[str] | None = None,
    *,
    kind: PpcKind = "auto",
    group: str | np.ndarray | None = None,
    group_labels: Sequence[Any] | None = None,
    num_pp_samples: int = 50,
    probability: float = 0.9,
    seed: int = 0,
) -> Figure:
    """Posterior predictive check: replicated data against the observed data.

    Parameters
    ----------
    fit : Fit
        Uses its ``posterior_predictive`` group, or makes one with
        :meth:`Fit.with_posterior_predictive` when the fit has its model function.
    var_names : list of str, optional
        Observed variables (all by default).
    kind : {"auto", "density", "bars", "intervals"}
        ``density``: ArviZ's density overlay (continuous data); ``bars``: the
        observed frequency of each count with the predictive median and
        interval of that frequency (integer data); ``intervals``: per group, the
        predictive interval of the group mean with the observed mean. ``auto``
        picks ``intervals`` when ``group`` is given, else ``bars`` for integer
        data with few distinct values, else ``density``.
    group : str or array, optional
        The group of every observation: a data/constant_data variable name
        (integer codes, e.g. ``"index_g"``) or an array of codes or labels.
    group_labels : list, optional
        Names of the integer codes; found in the posterior's coordinates when
        the variable is named after a dimension (``school``, ``index_school``).
    num_pp_samples : int
        Replicated data sets drawn in the density overlay.
    probability : float
        Probability of the predictive intervals.
    seed : int
        Seed of the posterior predictive draws and of the subsampling.

    Returns
    -------
    Figure
        One panel per observed variable.
    """
    idata = _predictive_idata(fit, seed)
    names = _observed_names(idata, var_names)
    plt = _pyplot()
    fig, axes = plt.subplots(len(names), 1, figsize=(6.4, 3.4 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        observed = np.asarray(idata["observed_data"][name], dtype=float).ravel()
        predicted = _flat_predictive(idata, name, observed.size)
        chosen = _ppc_kind(kind, group, observed)
        if chosen == "intervals":
            codes, labels = _group_codes(fit, group, observed.size, group_labels)
            _group_intervals(ax, observed, predicted, codes, labels, probability)
            if isinstance(group, str):
                ax.set_xlabel(group)
        elif chosen == "bars":
            _count_bars(ax, observed, predicted, probability)
        else:
            az.plot_ppc(
                idata,
                var_names=[name],
                kind="kde",
                ax=ax,
                num_pp_samples=min(num_pp_samples, predicted.shape[0]),
                random_seed=seed,
            )
        ax.set_title(f"posterior predictive check: {name}", fontsize=10)
    fig.tight_layout()
    return fig


def _predictive_idata(fit: Fit, seed: int) -> az.InferenceData:
    if "observed_data" not in fit.idata.groups():
        raise HieraxError("a posterior predictive check needs observed data; this fit has none.")
    if "posterior_predictive" in fit.idata.groups():
        return fit.idata
    if fit.model_fn is None:
        raise HieraxError(
            "this fit has no posterior_predictive group and no model function (it was loaded "
            "from a file); refit with posterior_predictive=True."
        )
    return fit.with_posterior_predictive(seed=seed).idata


def _observed_names(idata: az.InferenceData, var_names: Sequence[str] | None) -> list[str]:
    available = [
        str(n) for n in idata["observed_data"].data_vars if n in idata["posterior_predictive"]
    ]
    if var_names is None:
        if not available:
            raise HieraxError("no observed variable has posterior predictive draws.")
        return available
    missing = [n for n in var_names if n not in available]
    if missing:
        raise HieraxError(f"{missing} have no posterior predictive draws; choose from {available}.")
    return list(var_names)


def _flat_predictive(idata: az.InferenceData, name: str, size: int) -> np.ndarray:
    """Posterior predictive draws of ``name`` as (sample, observation)."""
    values = np.asarray(idata["posterior_predictive"][name], dtype=float)
    return values.reshape(-1, size)


def _is_count(observed: np.ndarray) -> bool:
    finite = observed[np.isfinite(observed)]
    return (
        finite.size > 0
        and bool(np.all(finite == np.round(finite)))
        and float(np.ptp(finite)) <= MAX_COUNT_VALUES
    )


def _ppc_kind(kind: PpcKind, group: Any, observed: np.ndarray) -> str:
    if kind not in ("auto", "density", "bars", "intervals"):
        raise HieraxError(f"kind must be auto, density, bars or intervals; got {kind!r}.")
    if kind != "auto":
        if kind == "intervals" and group is None:
            raise HieraxError("kind='intervals' needs group=...")
        return kind
    if group is not None:
        return "intervals"
    return "bars" if _is_count(observed) else "density"


def _count_bars(
    ax: Any, observed: np.ndarray, predicted: np.ndarray, probability: float, max_draws: int = 500
) -> None:
    """Observed frequency of each count (bars) and its predictive median and interval."""
    step = max(1, predicted.shape[0] // max_draws)
    draws = np.round(predicted[::step][:max_draws]).astype(int)
    values = np.round(observed[np.isfinite(observed)]).astype(int)
    low = int(min(values.min(), np.quantile(draws, 0.005)))
    high = int(max(values.max(), np.quantile(draws, 0.995)))
    ks = np.arange(low, high + 1)
    frequency = np.zeros((draws.shape[0], ks.size))
    rows = np.repeat(np.arange(draws.shape[0]), draws.shape[1])
    inside = (draws.ravel() >= low) & (draws.ravel() <= high)
    np.add.at(frequency, (rows[inside], draws.ravel()[inside] - low), 1.0)
    tail = (1 - probability) / 2
    lower, median, upper = np.quantile(frequency, [tail, 0.5, 1 - tail], axis=0)
    ax.bar(ks, np.bincount(values - low, minlength=ks.size), color="0.78", label="observed")
    ax.errorbar(
        ks,
        median,
        yerr=[median - lower, upper - median],
        fmt="o",
        color="tab:blue",
        ms=4,
        label=f"predicted (median, {int(100 * probability)} % interval)",
    )
    ax.set(xlabel="count", ylabel="frequency")
    ax.legend(fontsize=8)


def _group_codes(
    fit: Fit, group: Any, size: int, labels: Sequence[Any] | None
) -> tuple[np.ndarray, list[Any]]:
    """Integer codes (one per observation) and the name of each code."""
    name = group if isinstance(group, str) else None
    raw = np.asarray(_group_values(fit, group) if name else group).ravel()
    if raw.size != size:
        raise HieraxError(f"group has {raw.size} entries but there are {size} observations.")
    if raw.dtype.kind not in "iu":
        levels, codes = np.unique(raw, return_inverse=True)
        return codes, list(levels)
    if labels is None:
        labels = _level_labels(fit, name, int(raw.max()) + 1)
    return raw.astype(int), list(labels)


def _group_values(fit: Fit, name: str) -> Any:
    if name in fit.data:
        return fit.data[name]
    for group in ("constant_data", "observed_data"):
        if group in fit.idata.groups() and name in fit.idata[group]:
            return fit.idata[group][name].values
    raise HieraxError(f"no data variable {name!r} to group the observations by.")


def _level_labels(fit: Fit, name: str | None, n_levels: int) -> list[Any]:
    """Coordinate values of the dimension the group variable is named after, if any."""
    if name is not None:
        stem = name.removeprefix("index_").removesuffix("_idx").removesuffix("_index")
        for dim in (name, stem):
            coords = fit.posterior.coords
            if dim in coords and coords[dim].size >= n_levels:
                return list(coords[dim].values[:n_levels])
    return list(range(n_levels))


def _group_intervals(
    ax: Any,
    observed: np.ndarray,
    predicted: np.ndarray,
    codes: np.ndarray,
    labels: Sequence[Any],
    probability: float,
) -> None:
    """Per group: predictive intervals of the group mean and the observed mean."""
    present = np.unique(codes)
    tail = (1 - probability) / 2
    means = np.stack([predicted[:, codes == c].mean(axis=1) for c in present], axis=1)
    lower, inner_low, median, inner_high, upper = np.quantile(
        means, [tail, 0.25, 0.5, 0.75, 1 - tail], axis=0
    )
    x = np.arange(present.size)
    ax.vlines(x, lower, upper, color="tab:blue", lw=1, label=f"{int(100 * probability)} % interval")
    ax.vlines(x, inner_low, inner_high, color="tab:blue", lw=4, label="50 % interval")
    ax.plot(x, median, "_", color="navy", ms=10)
    ax.plot(
        x,
        [observed[codes == c].mean() for c in present],
        "o",
        color="k",
        ms=4,
        label="observed mean",
    )
    ax.set_xticks(x)
    rotation = 90 if present.size > 8 else 0
    ax.set_xticklabels([str(labels[c]) for c in present], rotation=rotation, fontsize=7)
    if present.size > 40:
        ax.set_xticklabels([])
    ax.set(xlabel="group", ylabel="mean per group")
    ax.legend(fontsize=8)


# ---------------------------------------------------------- predictive band
NEW_LEVEL = "(new level)"


def band_covariates(fit: Fit) -> list[str]:
    """Numeric predictors of a formula fit (candidates for :func:`plot_predictive_band`)."""
    model = getattr(fit, "source_model", None)
    if model is None or not hasattr(model, "parsed") or not hasattr(model, "design"):
        return []
    from .formula.design import used_columns

    parsed = model.parsed
    excluded = {parsed.response, parsed.se, parsed.trials, *parsed.offsets}
    excluded |= {factor for term in parsed.groups for factor in term.factors}
    return [
        column
        for column in used_columns(parsed)
        if column not in excluded and _is_numeric(model.table[column])
    ]


def plot_predictive_band(
    fit: Fit,
    covariate: str,
    *,
    n_grid: int = 100,
    kind: Literal["mean", "response"] = "mean",
    new_level: bool = False,
    seed: int = 0,
) -> Figure:
    """Posterior band of the mean (or of new responses) over a dense grid of one covariate.

    Parameters
    ----------
    fit : Fit
        A formula fit made in this session (``hierax.Model(...).fit()``).
    covariate : str
        A numeric column of the table; the grid spans its observed range.
    n_grid : int
        Grid points.
    kind : {"mean", "response"}
        Band of the expected value or of new observations.
    new_level : bool
        Predict for a new level of every grouping factor (group effects drawn
        from the population, independently per grid point, so no draw lines
        are drawn); by default for the most frequent level of each factor.
    seed : int

    Returns
    -------
    Figure
        Nested 50/80/95 % intervals, the median and the observed data.
    """
    model = getattr(fit, "source_model", None)
    if covariate not in band_covariates(fit) or model is None:
        raise HieraxError(
            f"a predictive band needs a formula fit and one of its numeric predictors "
            f"{band_covariates(fit)}; got {covariate!r}."
        )
    grid = _grid_table(model, covariate, n_grid, new_level)
    predicted = fit.predict(grid, kind=kind, allow_new_levels=new_level, seed=seed)
    draws = np.asarray(predicted).reshape(-1, n_grid)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    plot_band(grid[covariate].to_numpy(), draws, ax=ax, seed=seed, n_lines=0 if new_level else 20)
    response = model.parsed.response
    ax.scatter(model.table[covariate], model.table[response], s=8, color="k", label="observed")
    ax.set(xlabel=covariate, ylabel=response)
    factors = [f for term in model.parsed.groups for f in term.factors]
    held = ", ".join(f"{f} = {grid[f].iloc[0]}" for f in dict.fromkeys(factors))
    title = f"{'mean' if kind == 'mean' else 'predicted'} {response}"
    ax.set_title(f"{title} ({held})" if held else title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _is_numeric(series: Any) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(series)) and not is_bool_dtype(series)


def _grid_table(model: Any, covariate: str, n_grid: int, new_level: bool) -> Any:
    """The covariate on a grid; other numeric columns at the median, others at the mode."""
    import pandas as pd

    table = model.table
    values = table[covariate].to_numpy(dtype=float)
    grid = {covariate: np.linspace(np.nanmin(values), np.nanmax(values), n_grid)}
    factors = {factor for term in model.parsed.groups for factor in term.factors}
    for column in table.columns:
        if column in (covariate, model.parsed.response):
            continue
        series = table[column]
        if new_level and column in factors:
            grid[column] = np.full(n_grid, NEW_LEVEL, dtype=object)
        elif _is_numeric(series):
            grid[column] = np.full(n_grid, series.median())
        else:
            grid[column] = np.full(n_grid, series.mode().iloc[0], dtype=object)
    return pd.DataFrame(grid)


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
    plt = _pyplot()
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
    plt = _pyplot()
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


# ------------------------------------------------------------ plate diagram
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
    plt = _pyplot()
    image = plt.imread(io.BytesIO(png), format="png")
    dpi = 100
    fig = plt.figure(figsize=(image.shape[1] / dpi, image.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(image)
    ax.axis("off")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _pyplot().close(fig)
    return path
