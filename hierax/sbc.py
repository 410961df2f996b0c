"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018).

Draw parameters from the prior, a dataset from the model given them, fit it,
and record the rank of each true value among thinned posterior draws. If the
fitting is correct, each rank is uniform on ``0 .. L`` (L kept draws): a
posterior that is too narrow piles the ranks at both ends, one that is too
wide in the middle, a biased one to one side.

>>> result = hx.sbc(  # doctest: +SKIP
...     lambda table: hx.Model("y ~ x + (1 | g)", table, priors=PRIORS),
...     data=df, n_simulations=200, seed=1,
...     fit_options={"chains": 2, "draws": 400, "warmup": 300},
... )
>>> result.summary(); result.passed(); result.plot()  # doctest: +SKIP

The rank statistics, the thinning and the uniformity test are written here
rather than taken from the ``simuk`` package: simuk (0.2) runs its own
PyMC/NumPyro samplers rather than a hierax fit, so it cannot check hierax's
inference paths, it keeps every draw (no thinning) and breaks no ties, and it
needs ``arviz_base`` from the ArviZ 1.0 stack while hierax pins ArviZ 0.23.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pandas as pd
from scipy import stats

from .chain_stats import ess_bulk
from .data import read_table
from .errors import HieraxError, ModelError, SamplingError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .fit import Fit

__all__ = [
    "SBCResult",
    "chi_square_uniformity",
    "rank_statistics",
    "sbc",
    "thin_draws",
]

#: The first fits that must not all fail: when every one of them does, the
#: setup is wrong (a bad fit option, an impossible model), and the study stops.
_EARLY_FAILURES = 5


# ----------------------------------------------------------------- statistics


def thin_draws(draws: np.ndarray, n_kept: int) -> np.ndarray:
    """``n_kept`` draws spread evenly over all chains, to cut autocorrelation.

    Parameters
    ----------
    draws : ndarray, shape (chain, draw, ...)
    n_kept : int
        Number of draws to keep (``L``).

    Returns
    -------
    ndarray, shape (n_kept, ...)
        Every ``stride``-th draw of the chains laid end to end, with
        ``stride = chains * draws // n_kept``, the last draw of each stride
        kept (furthest from the previous kept one across a chain boundary).
    """
    draws = np.asarray(draws)
    if draws.ndim < 2:
        raise ModelError(f"draws must have shape (chain, draw, ...), got {draws.shape}.")
    total = draws.shape[0] * draws.shape[1]
    if n_kept < 1 or total < n_kept:
        raise ModelError(
            f"cannot keep {n_kept} draws from {draws.shape[0]} chains x {draws.shape[1]} "
            f"draws ({total} in all); fit with more draws or keep fewer (draws_kept)."
        )
    flat = draws.reshape((total,) + draws.shape[2:])
    stride = total // n_kept
    return flat[stride - 1 :: stride][:n_kept]


def rank_statistics(truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of each true value among posterior draws, ties broken at random.

    Talts et al. (2018), algorithm 1: the rank is the number of draws below
    the true value. Draws equal to it (a discrete parameter, a value the
    sampler can hit exactly) add a uniform share: with ``e`` ties the rank is
    ``below + U{0, ..., e}``, which keeps it uniform on ``0 .. L``.

    Parameters
    ----------
    truth : ndarray, shape (parameter,)
    draws : ndarray, shape (L, parameter)
    rng : numpy Generator
        Source of the tie-breaking draws.

    Returns
    -------
    ndarray of int, shape (parameter,)
        Values in ``0 .. L``.
    """
    truth = np.asarray(truth, dtype=float)
    draws = np.asarray(draws, dtype=float)
    below = np.sum(draws < truth[None, :], axis=0)
    ties = np.sum(draws == truth[None, :], axis=0)
    return below + rng.integers(0, ties + 1)


def chi_square_uniformity(ranks: np.ndarray, n_kept: int, bins: int) -> tuple[float, float]:
    """Chi-square test that ranks in ``0 .. n_kept`` are uniform, on ``bins`` equal bins.

    ``n_kept + 1`` must be divisible by ``bins`` so that every bin holds the
    same number of rank values. Returns ``(statistic, p_value)``; ``bins - 1``
    degrees of freedom. Choose ``bins`` so that about 5 or more ranks fall in
    each bin (``len(ranks) / bins >= 5``).
    """
    if (n_kept + 1) % bins:
        raise ModelError(
            f"draws_kept + 1 = {n_kept + 1} is not divisible by bins = {bins}; choose e.g. "
            f"draws_kept = {bins * max(1, round((n_kept + 1) / bins)) - 1}."
        )
    ranks = np.asarray(ranks)
    ranks = ranks[~np.isnan(ranks.astype(float))].astype(np.int64)
    if ranks.size == 0:
        return math.nan, math.nan
    if ranks.min() < 0 or ranks.max() > n_kept:
        raise ModelError(f"ranks must lie in 0 .. {n_kept}; got {ranks.min()} .. {ranks.max()}.")
    counts = np.bincount(ranks // ((n_kept + 1) // bins), minlength=bins)
    result = stats.chisquare(counts)
    return float(result.statistic), float(result.pvalue)


# --------------------------------------------------------------------- result


@dataclass
class SBCResult:
    """Ranks of the true parameter values of an SBC study, and their uniformity.

    Attributes
    ----------
    ranks : DataFrame
        simulation x parameter; ``<NA>`` for a simulation whose fit failed.
    truth : DataFrame
        The true (prior-drawn) value of every tested parameter per simulation.
    fits : DataFrame
        One row per simulation: seed, ``method`` (``fit.info["method"]``, "nuts"
        for plain NUTS), ``marginalized`` (the integrated-out sites), divergences,
        ``problems`` (the convergence check's findings), ``ess_bulk_min`` over the
        tested parameters, seconds, and ``error`` (empty unless the fit failed).
    draws_kept, bins : int
        ``L`` (ranks lie in ``0 .. L``) and the number of chi-square bins.
    draws : ndarray, shape (simulation, draws_kept, parameter)
        The kept posterior draws (NaN for failed fits), for :meth:`with_draws`.
    label : str
        What was studied, for tables and plots.
    """

    ranks: pd.DataFrame
    truth: pd.DataFrame
    fits: pd.DataFrame
    draws_kept: int
    bins: int
    draws: np.ndarray = field(repr=False)
    seed: int = 0
    label: str = ""
    wall_seconds: float = 0.0

    @property
    def parameters(self) -> list[str]:
        """The tested scalar parameters, e.g. ``["sigma", "r_g[0]", ...]``."""
        return [str(c) for c in self.ranks.columns]

    @property
    def n_simulations(self) -> int:
        """Simulations run, failed fits included."""
        return len(self.fits)

    @property
    def n_failed(self) -> int:
        """Simulations whose fit raised an error (their ranks are missing)."""
        return int((self.fits["error"] != "").sum())

    @property
    def methods(self) -> dict[str, int]:
        """How many fits took each inference path (``fit.info["method"]``)."""
        ok = self.fits[self.fits["error"] == ""]
        return {str(k): int(v) for k, v in ok["method"].value_counts().items()}

    @property
    def p_values(self) -> pd.Series:
        """Chi-square p-value of rank uniformity per parameter."""
        return self.summary()["p_value"]

    def summary(self) -> pd.DataFrame:
        """Per parameter: ranks used, chi-square statistic and p-value, rank mean and sd.

        ``rank_mean`` and ``rank_sd`` are of ``rank / L``: 0.5 and 0.289 for
        uniform ranks. A lower sd means a posterior too wide, a higher one too
        narrow; a mean away from 0.5 a bias.
        """
        rows = []
        for name in self.parameters:
            column = self.ranks[name].dropna().to_numpy(dtype=float)
            statistic, p_value = chi_square_uniformity(column, self.draws_kept, self.bins)
            scaled = column / self.draws_kept
            rows.append(
                {
                    "parameter": name,
                    "n": column.size,
                    "chi2": statistic,
                    "p_value": p_value,
                    "rank_mean": float(scaled.mean()) if column.size else math.nan,
                    "rank_sd": float(scaled.std(ddof=1)) if column.size > 1 else math.nan,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def passed(self, alpha: float = 0.01, max_failed: int = 0) -> bool:
        """Whether every parameter's ranks are uniform at level ``alpha``, and fits ran.

        Bonferroni over the parameters: each p-value must be at least
        ``alpha / n_parameters``. Under correct inference the chance that the
        study fails is then at most ``alpha`` whatever the number of parameters
        and however their ranks depend on each other (they do: all come from
        the same fits), where testing each at ``alpha`` would fail a correct
        sampler with 40 parameters a third of the time. It is also the
        decision of Holm's procedure on "is any rank distribution non-uniform".
        More than ``max_failed`` failed fits fail the study as well: fits that
        fail for some parameter values and not others bias the ranks unseen.
        """
        if not 0.0 < alpha < 1.0:
            raise ModelError(f"alpha must lie in (0, 1), got {alpha}.")
        p_values = self.p_values.to_numpy(dtype=float)
        if p_values.size == 0 or np.isnan(p_values).any():
            return False
        return bool(p_values.min() >= alpha / p_values.size and self.n_failed <= max_failed)

    def with_draws(
        self, transform: Callable[[np.ndarray], np.ndarray], label: str | None = None
    ) -> SBCResult:
        """The study redone on transformed posterior draws (for negative controls).

        ``transform`` maps the kept draws ``(simulation, draws_kept, parameter)``
        to an array of the same shape; the ranks are recomputed against the
        same true values, with the same tie-breaking streams. Shrinking every
        posterior towards its mean, ``lambda d: m + 0.7 * (d - m)`` with ``m =
        d.mean(axis=1, keepdims=True)``, mimics a conditional draw that is too
        narrow, and must fail :meth:`passed`.
        """
        draws = np.asarray(transform(self.draws.copy()), dtype=float)
        if draws.shape != self.draws.shape:
            raise ModelError(
                f"transform must keep the shape {self.draws.shape} of the draws, gave {draws.shape}."
            )
        ranks = _ranks_table(self.truth.to_numpy(dtype=float), draws, self.fits, self.parameters)
        return SBCResult(
            ranks=ranks,
            truth=self.truth,
            fits=self.fits,
            draws_kept=self.draws_kept,
            bins=self.bins,
            draws=draws,
            seed=self.seed,
            label=label if label is not None else f"{self.label} (transformed)",
            wall_seconds=self.wall_seconds,
        )

    @classmethod
    def combine(cls, results: Sequence[SBCResult], label: str | None = None) -> SBCResult:
        """One study from several run with different seeds (e.g. in parallel processes).

        The simulations are independent draws in each, so their union is a
        study of them all; simulations are renumbered in order.
        """
        if not results:
            raise ModelError("combine needs at least one SBCResult.")
        first = results[0]
        for other in results[1:]:
            if (other.parameters, other.draws_kept, other.bins) != (
                first.parameters,
                first.draws_kept,
                first.bins,
            ):
                raise ModelError(
                    f"cannot combine {other.label!r} with {first.label!r}: parameters, "
                    "draws_kept or bins differ."
                )
        fits = pd.concat([r.fits for r in results], ignore_index=True)
        fits.index.name = "simulation"
        index = fits.index

        def stacked(frames: list[pd.DataFrame]) -> pd.DataFrame:
            return pd.concat(frames, ignore_index=True).set_axis(index, axis=0)

        return cls(
            ranks=stacked([r.ranks for r in results]),
            truth=stacked([r.truth for r in results]),
            fits=fits,
            draws_kept=first.draws_kept,
            bins=first.bins,
            draws=np.concatenate([r.draws for r in results]),
            seed=first.seed,
            label=first.label if label is None else label,
            wall_seconds=float(sum(r.wall_seconds for r in results)),
        )

    def table_row(self, alpha: float = 0.01) -> dict[str, Any]:
        """One JSON-able row for a table of studies."""
        p_values = self.p_values
        weakest = str(p_values.idxmin()) if p_values.notna().any() else ""
        return {
            "label": self.label,
            "n_simulations": self.n_simulations,
            "n_parameters": len(self.parameters),
            "min_p_value": float(p_values.min()),
            "weakest_parameter": weakest,
            "bonferroni_threshold": alpha / max(len(self.parameters), 1),
            "passed": self.passed(alpha),
            "failed_fits": self.n_failed,
            "fits_with_problems": int((self.fits["problems"] != "").sum()),
            "fits_with_ess_below_draws_kept": int(
                (self.fits["ess_bulk_min"] < self.draws_kept).sum()
            ),
            "methods": self.methods,
            "wall_seconds": round(self.wall_seconds, 1),
        }

    def to_dict(self, alpha: float = 0.01) -> dict[str, Any]:
        """Everything needed to redo the tests: ranks, fits, per-parameter statistics."""
        summary = self.summary().reset_index()
        return {
            **self.table_row(alpha),
            "seed": self.seed,
            "draws_kept": self.draws_kept,
            "bins": self.bins,
            "summary": summary.to_dict("records"),
            "ranks": {
                name: [None if pd.isna(v) else int(v) for v in self.ranks[name]]
                for name in self.parameters
            },
            "fits": self.fits.to_dict("records"),
        }

    def plot(
        self,
        var_names: Sequence[str] | None = None,
        *,
        kind: str = "hist",
        columns: int = 4,
        band: float = 0.99,
    ) -> Figure:
        """Rank histograms (``kind="hist"``) or ECDF differences (``"ecdf"``) per parameter.

        The grey band holds ``band`` of each bin's count (histogram; binomial)
        or of the ECDF's value at each rank (pointwise; beta) under uniform
        ranks. Returns the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        if kind not in ("hist", "ecdf"):
            raise ModelError(f"kind must be 'hist' or 'ecdf', got {kind!r}.")
        names = list(var_names) if var_names is not None else self.parameters
        unknown = [n for n in names if n not in self.parameters]
        if unknown:
            raise ModelError(f"no ranks for {unknown}; parameters: {self.parameters}.")
        rows = max(1, math.ceil(len(names) / columns))
        width = min(columns, max(len(names), 1))
        figure, axes = plt.subplots(
            rows, width, figsize=(2.6 * width, 2.0 * rows), squeeze=False, sharex=True
        )
        per_bin = (self.draws_kept + 1) // self.bins
        p_values = self.p_values
        for axis, name in zip(axes.flat, names, strict=False):
            ranks = self.ranks[name].dropna().to_numpy(dtype=np.int64)
            n = ranks.size
            if kind == "hist":
                counts = np.bincount(ranks // per_bin, minlength=self.bins)
                low, high = stats.binom.interval(band, n, 1.0 / self.bins)
                axis.axhspan(low, high, color="0.85", zorder=0)
                axis.bar(np.arange(self.bins), counts, width=1.0, color="C0", edgecolor="white")
                axis.axhline(n / self.bins, color="0.4", lw=0.8)
            else:
                grid = np.arange(self.draws_kept + 1)
                expected = (grid + 1) / (self.draws_kept + 1)
                ecdf = np.searchsorted(np.sort(ranks), grid, side="right") / max(n, 1)
                low = stats.beta.ppf((1 - band) / 2, expected * n, (1 - expected) * n + 1e-12)
                high = stats.beta.ppf((1 + band) / 2, expected * n + 1e-12, (1 - expected) * n)
                axis.fill_between(grid, low - expected, high - expected, color="0.85", step="post")
                axis.step(grid, ecdf - expected, where="post", color="C0")
                axis.axhline(0.0, color="0.4", lw=0.8)
            axis.set_title(f"{name}\np = {p_values[name]:.2g}", fontsize=8)
            axis.tick_params(labelsize=7)
        for axis in list(axes.flat)[len(names) :]:
            axis.set_visible(False)
        figure.suptitle(self.label or "SBC ranks", fontsize=9)
        figure.tight_layout()
        return figure

    def __repr__(self) -> str:
        verdict = "passed" if self.passed() else "FAILED"
        return (
            f"<hierax.SBCResult {self.label!r}: {self.n_simulations} simulations "
            f"({self.n_failed} failed fits), {len(self.parameters)} parameters, "
            f"L = {self.draws_kept}; min p = {self.p_values.min():.3g}; {verdict} at 1 %>"
        )


def _ranks_table(
    truth: np.ndarray, draws: np.ndarray, fits: pd.DataFrame, labels: Sequence[str]
) -> pd.DataFrame:
    """Ranks (simulation, parameter) from truths and kept draws; <NA> where a fit failed."""
    n_simulations, n_parameters = truth.shape
    ranks = np.zeros((n_simulations, n_parameters), dtype=np.int64)
    failed = (fits["error"] != "").to_numpy()
    seeds = fits["seed"].to_numpy()
    for index in range(n_simulations):
        if failed[index]:
            continue
        # a tie-breaking stream per fit: reproducible, and the same in a combined study
        rng = np.random.default_rng([int(seeds[index]), 1])
        ranks[index] = rank_statistics(truth[index], draws[index], rng)
    table = pd.DataFrame(ranks, index=fits.index, columns=list(labels)).astype("Int64")
    table.loc[failed, :] = pd.NA
    return table


# ---------------------------------------------------------------- simulation


class _PriorsMoveError(ModelError):
    """A prior that changes with the simulated data: the study cannot be run as set up."""


@dataclass
class _Study:
    """How to simulate data sets and fit them, for one kind of model."""

    simulate: Callable[[int, jax.Array], dict[str, np.ndarray]]  # n -> prior draws by site
    response: list[str]  # simulated sites that are data
    fit: Callable[[Mapping[str, np.ndarray], int], Fit]  # simulated data, seed -> fit


def _prior_draws(
    model_fn: Callable[..., Any], arguments: Mapping[str, Any], n: int, key: jax.Array
) -> dict[str, np.ndarray]:
    from numpyro.infer import Predictive

    draws = Predictive(model_fn, num_samples=n)(key, **arguments)
    return {name: np.asarray(value) for name, value in draws.items()}


def _formula_study(
    build: Callable[[pd.DataFrame], Any],
    table: pd.DataFrame,
    fit_build: Callable[[pd.DataFrame], Any],
    fit_options: Mapping[str, Any],
) -> _Study:
    template = build(table)
    if not hasattr(template, "model_fn") or not hasattr(template, "parsed"):
        raise ModelError(
            "with a table as data, model must be a function of the table that returns a "
            f"hierax.Model or NonlinearModel, e.g. lambda t: hx.Model('y ~ x', t, priors=...); "
            f"it returned {type(template).__name__}."
        )
    response = template.parsed.response
    arguments = {k: v for k, v in template.arrays().items() if k != response}
    design = template.response_design if hasattr(template, "response_design") else template.design
    rows = design.rows  # the table's rows the model uses (after dropna)
    arguments["_n"] = len(rows)  # nonlinear models size the plate by it
    fit_template = template if fit_build is build else fit_build(table)

    def simulate(n: int, key: jax.Array) -> dict[str, np.ndarray]:
        return _prior_draws(template.model_fn, arguments, n, key)

    checked: list[bool] = []

    def fit(simulated: Mapping[str, np.ndarray], seed: int) -> Fit:
        new_table = table.copy()
        new_table.loc[rows, response] = np.asarray(simulated[response])
        if fit_build is not build and not checked:
            # the generating model's priors must not move with the data either
            _check_same_priors(template, build(new_table))
            checked.append(True)
        model = fit_build(new_table)
        _check_same_priors(fit_template, model)
        return model.fit(seed=seed, **fit_options)

    return _Study(simulate, [response], fit)


def _check_same_priors(reference: Any, model: Any) -> None:
    """The priors of a model built on simulated data must be those of the template."""
    if model is None:
        return
    before = reference.priors["prior"].astype(str)
    after = model.priors["prior"].astype(str)
    changed = [
        name for name in before.index if name not in after.index or before[name] != after[name]
    ]
    if changed:
        raise _PriorsMoveError(
            f"the prior of {changed} changes with the data ({before[changed[0]]} -> "
            f"{after.get(changed[0], 'absent')}): default priors are scaled by the response, so "
            "data drawn from one model are fitted with another. SBC needs fixed priors: give "
            f"each of {changed} in priors={{...}}."
        )


def _function_study(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    fit_fn: Callable[..., Any],
    observed: Sequence[str] | None,
    fit_options: Mapping[str, Any],
) -> _Study:
    from .fit import fit as hierax_fit
    from .model_info import trace_model

    if observed is None:
        trace = trace_model(model_fn, data, abstract=True)
        observed = [
            name
            for name, site in trace.items()
            if site["type"] == "sample" and site.get("is_observed", False) and name in data
        ]
        if not observed:
            raise ModelError(
                "no observed site of the model is named like a data argument; pass "
                "observed=[...] with the data arguments to simulate."
            )
    missing = [name for name in observed if name not in data]
    if missing:
        raise ModelError(f"observed names {missing}, which are not in data {sorted(data)}.")
    arguments = {k: v for k, v in data.items() if k not in observed}

    def simulate(n: int, key: jax.Array) -> dict[str, np.ndarray]:
        draws = _prior_draws(model_fn, arguments, n, key)
        absent = [name for name in observed if name not in draws]
        if absent:
            raise ModelError(
                f"the model simulated no site named {absent}; the observed sites must be named "
                "like their data arguments (numpyro.sample('y', ..., obs=y)), and the model "
                "must accept them missing (def model(x, y=None))."
            )
        return draws

    def fit(simulated: Mapping[str, np.ndarray], seed: int) -> Fit:
        new_data = {**data, **{name: simulated[name] for name in observed}}
        return hierax_fit(fit_fn, new_data, seed=seed, **fit_options)

    return _Study(simulate, list(observed), fit)


def _scalar_entries(values: np.ndarray, name: str) -> tuple[list[str], np.ndarray]:
    """Labels ``name[i,j]`` and the flattened values (simulation, entry)."""
    values = np.asarray(values, dtype=float)
    shape = values.shape[1:]
    if not shape:
        return [name], values[:, None]
    labels = [f"{name}[{','.join(map(str, index))}]" for index in np.ndindex(*shape)]
    return labels, values.reshape(values.shape[0], -1)


def _select_parameters(
    prior: Mapping[str, np.ndarray], response: Sequence[str], var_names: Sequence[str] | None
) -> tuple[list[str], list[str], np.ndarray]:
    """Tested sites, their scalar labels and true values (simulation, parameter).

    Entries that are the same in every simulation (a correlation matrix's
    unit diagonal, a fixed value) carry no information and are left out.
    """
    candidates = [n for n in prior if n not in response]
    if var_names is None:
        sites = candidates
    else:
        sites = list(var_names)
        unknown = [n for n in sites if n not in candidates]
        if unknown:
            raise ModelError(f"var_names {unknown} are not parameters of the model: {candidates}.")
    labels: list[str] = []
    columns: list[np.ndarray] = []
    kept_sites: list[str] = []
    for name in sites:
        names, values = _scalar_entries(prior[name], name)
        varying = np.ptp(values, axis=0) > 0
        if varying.any():
            kept_sites.append(name)
        labels += [label for label, keep in zip(names, varying, strict=True) if keep]
        columns.append(values[:, varying])
    if not labels:
        raise ModelError("no parameter varies between prior draws; nothing to test.")
    return kept_sites, labels, np.concatenate(columns, axis=1)


def _kept_draws(
    fit: Fit, sites: Sequence[str], labels: Sequence[str], n_kept: int
) -> tuple[np.ndarray, np.ndarray]:
    """Thinned draws ``(draws_kept, parameter)`` and all ``(chain, draw, parameter)``."""
    pieces = []
    names: list[str] = []
    missing = [s for s in sites if s not in fit.posterior]
    if missing:
        raise SamplingError(
            f"the fit has no posterior draws of {missing} (the parameterization changed with "
            "the data? fix centered=... in the model)."
        )
    for site in sites:
        values = np.asarray(fit.posterior[site], dtype=float)  # (chain, draw, ...)
        entry_labels, _ = _scalar_entries(values[0], site)
        names += entry_labels
        pieces.append(values.reshape(values.shape[0], values.shape[1], -1))
    every = np.concatenate(pieces, axis=2)  # (chain, draw, entry)
    index = {name: position for position, name in enumerate(names)}
    chosen = every[:, :, [index[label] for label in labels]]
    return thin_draws(chosen, n_kept), chosen


def _info_method(fit: Fit) -> str:
    return str(fit.info.get("method", "nuts"))


# ------------------------------------------------------------------- the study


def sbc(
    model: Callable[..., Any],
    data: pd.DataFrame | str | Mapping[str, Any],
    *,
    n_simulations: int = 200,
    seed: int = 0,
    fit_options: Mapping[str, Any] | None = None,
    draws_kept: int = 99,
    bins: int = 20,
    var_names: Sequence[str] | None = None,
    fit_model: Callable[..., Any] | None = None,
    observed: Sequence[str] | None = None,
    label: str = "",
    progress: bool = False,
) -> SBCResult:
    """Simulation-based calibration of a hierax model and inference path.

    Draws ``n_simulations`` parameter sets from the prior and one dataset
    from each (NumPyro ``Predictive`` on the model function), fits every
    dataset with ``fit_options``, and ranks each true scalar parameter among
    ``draws_kept`` posterior draws thinned evenly over the chains. Then
    tests per parameter that the ranks are uniform (chi-square on ``bins``
    bins). Failed fits are kept as rows with their error, never dropped.

    Parameters
    ----------
    model : callable
        With a table as ``data``: a function of the table returning a
        :class:`hierax.Model` or :class:`hierax.NonlinearModel` (``lambda t:
        hx.Model("y ~ x", t, priors={...})``), called again on each simulated
        table; every prior must be given (default priors scale with the
        response, which then changes between simulations: an error). With a
        dict as ``data``: a NumPyro model function fitted by
        :func:`hierax.fit`, whose observed sites are named like their data
        arguments and may be missing (``def model(x, y=None)``).
    data : DataFrame, path or dict
        The template: predictors, groups, ``se``... The response's values
        are replaced by simulated ones (they must exist and be valid for the
        family, e.g. counts for poisson).
    n_simulations : int
        Datasets to simulate and fit (Talts et al. use 1000; >= 200 finds a
        posterior sd off by 15-20 %).
    seed : int
        Seed of the prior draws, every fit and the tie-breaking; the same
        seed gives the same result.
    fit_options : dict, optional
        Passed to ``Model.fit`` / :func:`hierax.fit` (chains, draws, warmup,
        marginalize, draw_method...). ``warn`` and ``progress`` default to
        False. ``chains * draws`` must be at least ``draws_kept``.
    draws_kept : int
        ``L``: posterior draws each rank is taken among (ranks lie in ``0 ..
        L``). ``L + 1`` must be divisible by ``bins``. Thinning keeps every
        ``chains * draws // L``-th draw; ``fits["ess_bulk_min"]`` below ``L``
        flags fits whose kept draws are still autocorrelated.
    bins : int
        Chi-square bins.
    var_names : list of str, optional
        Sites to test (every latent and deterministic site by default, the
        integrated-out ones of a marginalized fit included). Entries constant
        across the prior draws are left out.
    fit_model : callable, optional
        Fit with this model instead (same kind as ``model``) while simulating
        from ``model``: a deliberately wrong model is a negative control that
        must fail.
    observed : list of str, optional
        For a model function: the data arguments to simulate (default: the
        observed sites named like a data argument).
    label : str
        A name for tables and plots.
    progress : bool
        Print one line per 10 fits to stderr.

    Returns
    -------
    SBCResult
    """
    started = time.perf_counter()
    if isinstance(n_simulations, bool) or not isinstance(n_simulations, int | np.integer):
        raise ModelError(f"n_simulations must be an integer, got {n_simulations!r}.")
    if n_simulations < 1:
        raise ModelError(f"n_simulations must be >= 1, got {n_simulations}.")
    if draws_kept < 1 or bins < 2 or (draws_kept + 1) % bins:
        raise ModelError(
            f"need draws_kept >= 1, bins >= 2 and draws_kept + 1 divisible by bins; got "
            f"draws_kept={draws_kept}, bins={bins} (e.g. 99 and 20, 199 and 20)."
        )
    options = {"warn": False, "progress": False, **dict(fit_options or {})}
    if "seed" in options:
        raise ModelError("give the seed as sbc(seed=...), not in fit_options.")
    chains, draws = int(options.get("chains", 4)), int(options.get("draws", 1000))
    if chains * draws < draws_kept:
        raise ModelError(
            f"fit_options give {chains} chains x {draws} draws = {chains * draws} draws, fewer "
            f"than draws_kept={draws_kept}; fit more draws or keep fewer."
        )
    if isinstance(data, Mapping):
        study = _function_study(model, data, fit_model or model, observed, options)
    else:
        table = read_table(data)
        study = _formula_study(model, table, fit_model or model, options)

    # one seed for the prior draws, one per fit; derived, so a subset is reproducible
    streams = np.random.SeedSequence(seed)
    prior_seed, fit_seeds_source = streams.spawn(2)
    key = jax.random.PRNGKey(int(prior_seed.generate_state(1)[0]))
    fit_seeds = fit_seeds_source.generate_state(n_simulations) % (2**31 - 1)
    prior = study.simulate(n_simulations, key)
    for name in study.response:
        simulated = np.asarray(prior[name], dtype=float)
        bad = ~np.isfinite(simulated).reshape(n_simulations, -1).all(axis=1)
        if bad.any():
            raise ModelError(
                f"{int(bad.sum())} of {n_simulations} simulated datasets hold non-finite "
                f"values of {name!r} (first: simulation {int(np.argmax(bad))}); the priors "
                "are too wide for data drawn from them to be sane."
            )
    sites, labels, truth = _select_parameters(prior, study.response, var_names)

    kept = np.full((n_simulations, draws_kept, len(labels)), np.nan)
    records: list[dict[str, Any]] = []
    for index in range(n_simulations):
        fit_started = time.perf_counter()
        record: dict[str, Any] = {
            "simulation": index,
            "seed": int(fit_seeds[index]),
            "method": "",
            "marginalized": "",
            "divergences": 0,
            "problems": "",
            "ess_bulk_min": math.nan,
            "seconds": 0.0,
            "error": "",
        }
        try:
            result = study.fit({n: prior[n][index] for n in study.response}, int(fit_seeds[index]))
            kept[index], chosen = _kept_draws(result, sites, labels, draws_kept)
            record.update(
                method=_info_method(result),
                marginalized=",".join(map(str, result.info.get("marginalized", []))),
                divergences=result.divergences,
                problems=",".join(sorted({f.check for f in result.findings})),
                ess_bulk_min=float(np.min(ess_bulk(chosen))) if chosen.shape[1] > 3 else math.nan,
            )
        except _PriorsMoveError:
            raise  # the same for every dataset: stop at once
        except Exception as error:  # every other failure is recorded, never dropped
            record["error"] = f"{type(error).__name__}: {error}".strip()[:500]
            if not isinstance(error, HieraxError):
                record["error"] += " | " + traceback.format_exc(limit=-2).replace("\n", " ")[-300:]
        record["seconds"] = round(time.perf_counter() - fit_started, 3)
        records.append(record)
        if index + 1 == min(_EARLY_FAILURES, n_simulations) and all(r["error"] for r in records):
            raise SamplingError(
                f"each of the first {index + 1} fits failed; the first: {records[0]['error']}"
            )
        if progress and ((index + 1) % 10 == 0 or index + 1 == n_simulations):
            failed = sum(1 for r in records if r["error"])
            print(
                f"sbc {label}: {index + 1}/{n_simulations} fits ({failed} failed), "
                f"{time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    fits = pd.DataFrame.from_records(records).set_index("simulation")
    ranks = _ranks_table(truth, kept, fits, labels)
    return SBCResult(
        ranks=ranks,
        truth=pd.DataFrame(truth, columns=labels, index=fits.index),
        fits=fits,
        draws_kept=draws_kept,
        bins=bins,
        draws=kept,
        seed=seed,
        label=label,
        wall_seconds=time.perf_counter() - started,
    )
