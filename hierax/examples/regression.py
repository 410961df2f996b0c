"""Varying intercepts and slopes (seed 002: the NumPyro tutorial)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from hierax.data import factorize
from hierax.examples._data import load_csv, load_truth
from hierax.present.plots import band_by_group, plot_forest, plot_pair, plot_trace, save_figure
from hierax.results.fit import Fit
from hierax.results.fit import fit as hx_fit

NAME = "regression"
TITLE = "hierarchical regression: varying intercepts and slopes"
HYPERPARAMETERS = ["mu_intercept", "mu_slope", "sigma_intercept", "sigma_slope", "sigma_noise"]


def model(x: np.ndarray, group_idx: np.ndarray, n_groups: int, y: np.ndarray | None = None) -> None:
    """The tutorial's ``hierarchical_bayesian_model`` (centered, as written there)."""
    mu_intercept = numpyro.sample("mu_intercept", dist.Normal(0.0, 5.0))
    mu_slope = numpyro.sample("mu_slope", dist.Normal(0.0, 5.0))
    sigma_intercept = numpyro.sample("sigma_intercept", dist.HalfCauchy(2.0))
    sigma_slope = numpyro.sample("sigma_slope", dist.HalfCauchy(2.0))
    with numpyro.plate("group", n_groups):
        intercept_group = numpyro.sample(
            "intercept_group", dist.Normal(mu_intercept, sigma_intercept)
        )
        slope_group = numpyro.sample("slope_group", dist.Normal(mu_slope, sigma_slope))
    sigma_noise = numpyro.sample("sigma_noise", dist.Exponential(1.0))
    mean_response = intercept_group[group_idx] + slope_group[group_idx] * x
    with numpyro.plate("obs", x.shape[0]):
        numpyro.sample("y", dist.Normal(mean_response, sigma_noise), obs=y)


def load_data() -> pd.DataFrame:
    return load_csv(NAME)


def truth() -> dict[str, Any]:
    raw = load_truth(NAME)
    return {
        "mu_intercept": raw["base_intercept"],
        "mu_slope": raw["base_slope"],
        "sigma_intercept": raw["intercept_sd_group"],
        "sigma_slope": raw["slope_sd_group"],
        "sigma_noise": raw["noise_sd"],
        "intercept_group": raw["intercept_group"],
        "slope_group": raw["slope_group"],
    }


def setup(table: pd.DataFrame | None = None) -> dict[str, Any]:
    table = load_data() if table is None else table
    group_idx, groups = factorize(table["group"], "group")
    data = {
        "x": table["predictor"].to_numpy(dtype=float),
        "group_idx": group_idx,
        "n_groups": len(groups),
        "y": table["response"].to_numpy(dtype=float),
    }
    return {"model_fn": model, "data": data, "coords": {"group": groups}, "dims": {"x": ["obs"]}}


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return hx_fit(**setup(), seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    true = truth()
    paths = [
        save_figure(
            plot_forest(result, ["intercept_group", "slope_group"] + HYPERPARAMETERS, truth=true),
            out / "forest.png",
        )
    ]
    paths.append(save_figure(plot_pair(result, HYPERPARAMETERS, truth=true), out / "pair.png"))
    paths.append(save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"))

    import matplotlib.pyplot as plt

    if "posterior_predictive" not in result.idata.groups():
        result = result.with_posterior_predictive(seed=2)
    y_rep = np.asarray(result.idata["posterior_predictive"]["y"]).reshape(-1, result.data["y"].size)
    table = load_data()
    groups = sorted(table["group"].unique())
    fig = band_by_group(
        table["predictor"].to_numpy(),
        table["response"].to_numpy(),
        table["group"].to_numpy(),
        y_rep,
    )
    paths.append(save_figure(fig, out / "predictive.png"))

    fig, axs = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, name in zip(axs, ["intercept_group", "slope_group"], strict=True):
        draws = result.draws(name)
        lower, upper = np.percentile(draws, [5, 95], axis=0)
        mean = draws.mean(axis=0)
        ax.errorbar(
            groups, mean, yerr=[mean - lower, upper - mean], fmt="o", label="posterior mean, 90 %"
        )
        ax.plot(groups, true[name], "x", color="k", ms=7, label="truth")
        ax.set(title=name, xlabel="group")
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out / "groups.png"))
    return paths
