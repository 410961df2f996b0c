"""Plots of the posterior predictive: checks of replicated against observed data
(densities, count bars, per-group intervals) and the predictive band of a formula
fit over one covariate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import arviz as az
import numpy as np

from hierax.errors import HieraxError
from hierax.present.bands import plot_band
from hierax.present.figures import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierax.results.fit import Fit

__all__ = [
    "MAX_COUNT_VALUES",
    "NEW_LEVEL",
    "PpcKind",
    "band_covariates",
    "plot_ppc",
    "plot_predictive_band",
]


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
    plt = pyplot()
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
    """Numeric predictors of a formula fit (candidates for :func:`plot_predictive_band`).

    Asks the fit's ``source_model`` for them (``covariate_columns()``, the
    numeric population-level predictor columns of a formula model); an empty
    list for a fit whose model cannot say (a model function, a loaded fit).
    """
    model = getattr(fit, "source_model", None)
    columns = getattr(model, "covariate_columns", None)
    return list(columns()) if callable(columns) else []


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
    plt = pyplot()
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
