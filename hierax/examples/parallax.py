"""The distance of a (simulated) star cluster from noisy parallaxes (seed 003, part 1).

Distances in kpc, parallaxes in mas, so the predicted parallax is ``1 / r``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from hierax.examples._data import load_csv, load_truth
from hierax.present.plots import plot_forest, plot_pair, plot_trace, save_figure
from hierax.results.fit import Fit
from hierax.results.fit import fit as hx_fit

NAME = "parallax"
TITLE = "star cluster distance from parallaxes (latent per-star distances)"
HYPERPARAMETERS = ["mu_r", "ln_std_r", "std_r"]


def model(parallax_error: np.ndarray, parallax: np.ndarray | None = None) -> None:
    """The tutorial's ``plx_model``."""
    mu_r = numpyro.sample("mu_r", dist.TruncatedNormal(1.0, 2.0, low=0.0))
    ln_std_r = numpyro.sample("ln_std_r", dist.Uniform(-8.0, 0.0))
    std_r = numpyro.deterministic("std_r", jnp.exp(ln_std_r))
    with numpyro.plate("star", parallax_error.shape[0]):
        r = numpyro.sample("r", dist.TruncatedNormal(mu_r, std_r, low=0.0))
        numpyro.sample("parallax", dist.Normal(1.0 / r, parallax_error), obs=parallax)


def load_data() -> pd.DataFrame:
    return load_csv(NAME)


def truth() -> dict[str, Any]:
    raw = load_truth(NAME)
    return {
        "mu_r": raw["mu_r_kpc"],
        "ln_std_r": raw["ln_std_r_kpc"],
        "std_r": raw["std_distance_pc"] / 1000.0,
        "r": np.asarray(raw["true_distance_pc"]) / 1000.0,
    }


def initial_values(table: pd.DataFrame) -> dict[str, Any]:
    """The tutorial's start: every distance at the inverse-variance weighted mean parallax."""
    inv_var = 1.0 / table["parallax_error"].to_numpy() ** 2
    est_mean_plx = np.sum(table["parallax"].to_numpy() * inv_var) / np.sum(inv_var)
    est_mean_r = 1.0 / est_mean_plx  # mas -> kpc
    return {"mu_r": est_mean_r, "ln_std_r": -3.0, "r": np.full(len(table), est_mean_r)}


def setup(table: pd.DataFrame | None = None) -> dict[str, Any]:
    table = load_data() if table is None else table
    data = {
        "parallax_error": table["parallax_error"].to_numpy(dtype=float),
        "parallax": table["parallax"].to_numpy(dtype=float),
    }
    return {
        "model_fn": model,
        "data": data,
        "coords": {"star": list(range(len(table)))},
        "dims": {"parallax_error": ["star"]},
        "init": initial_values(table),
    }


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return hx_fit(**setup(), seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    true = truth()
    first = {"star": [0, 1, 2]}
    paths = [
        save_figure(
            plot_forest(result, HYPERPARAMETERS, truth=true, hdi_prob=0.94), out / "forest.png"
        )
    ]
    paths.append(
        save_figure(
            plot_pair(result, ["mu_r", "std_r", "r"], truth=true, coords=first), out / "pair.png"
        )
    )
    paths.append(save_figure(plot_trace(result, ["mu_r", "ln_std_r"]), out / "trace.png"))

    import matplotlib.pyplot as plt

    r = result.draws("r")  # (sample, star)
    lower, median, upper = np.percentile(r, [5, 50, 95], axis=0)
    order = np.argsort(true["r"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    ax.errorbar(
        true["r"][order] * 1000,
        median[order] * 1000,
        yerr=[(median - lower)[order] * 1000, (upper - median)[order] * 1000],
        fmt=".",
        ms=3,
        alpha=0.6,
        label="posterior median, 90 %",
    )
    lims = [true["r"].min() * 1000 - 5, true["r"].max() * 1000 + 5]
    ax.plot(lims, lims, "k--", lw=1, label="truth = estimate")
    ax.set(
        xlabel="true distance / pc", ylabel="estimated distance / pc", title="per-star distances"
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    table = load_data()
    naive = 1000.0 / table["parallax"].to_numpy()
    ax.hist(naive, bins=40, alpha=0.5, density=True, label="1 / parallax (naive)")
    ax.hist(median * 1000, bins=40, alpha=0.5, density=True, label="posterior medians")
    ax.axvline(true["mu_r"] * 1000, color="k", ls="--", label="true cluster mean")
    ax.set(xlabel="distance / pc", title="shrinkage toward the cluster")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out / "predictive.png"))
    return paths
