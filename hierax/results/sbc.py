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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import pandas as pd
from numpyro.infer import Predictive

from hierax.data import read_table
from hierax.errors import HieraxError, ModelError, SamplingError
from hierax.inference.chain_stats import ess_bulk
from hierax.models.model_info import trace_model
from hierax.results import fit as fit_module
from hierax.results.sbc_ranks import ranks_table, thin_draws
from hierax.results.sbc_result import SBCResult

if TYPE_CHECKING:
    from hierax.results.fit import Fit

__all__ = ["sbc"]

#: The first fits that must not all fail: when every one of them does, the
#: setup is wrong (a bad fit option, an impossible model), and the study stops.
_EARLY_FAILURES = 5


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
        # looked up at call time: a replaced hierax.results.fit.fit is used
        return fit_module.fit(fit_fn, new_data, seed=seed, **fit_options)

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
    ranks = ranks_table(truth, kept, fits, labels)
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
