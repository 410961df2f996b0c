"""The log-period distribution of 14 binary stars from radial velocities (seed 003, part 2).

``rv = a cos(2π t / P) + b sin(2π t / P) + v0`` per star, ``lnP ~ N(mu, exp(lnsigma))``.
The posterior is multimodal in period: each star starts at its periodogram peak
over 1.5-20 days with a, b, v0 from weighted least squares, as in the tutorial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from hierax.data import factorize
from hierax.examples._data import load_csv, load_truth
from hierax.inference.periodogram import best_sinusoid
from hierax.present.plots import plot_forest, plot_pair, plot_trace, save_figure
from hierax.results.fit import Fit
from hierax.results.fit import fit as hx_fit

NAME = "binaries"
TITLE = "log-period distribution of 14 binary stars from radial velocities"
HYPERPARAMETERS = ["mu", "lnsigma"]
MIN_PERIOD, MAX_PERIOD = 1.5, 20.0


def rv_model(t: Any, P: Any, a: Any, b: Any, v0: Any) -> Any:
    """The tutorial's sinusoid (zero-eccentricity orbit)."""
    return a * jnp.cos(2 * np.pi * t / P) + b * jnp.sin(2 * np.pi * t / P) + v0


def model(
    t: np.ndarray, star: np.ndarray, n_stars: int, rv_err: np.ndarray, rv: np.ndarray | None = None
) -> None:
    """The tutorial's ``model2``, vectorised over stars (no Python loop)."""
    mu = numpyro.sample("mu", dist.Uniform(1.0, 10.0))
    lnsigma = numpyro.sample("lnsigma", dist.Uniform(-2.0, 3.0))
    with numpyro.plate("star", n_stars):
        lnP = numpyro.sample("lnP", dist.Normal(mu, jnp.exp(lnsigma)))
        a = numpyro.sample("a", dist.Normal(0.0, 100.0))
        b = numpyro.sample("b", dist.Normal(0.0, 100.0))
        v0 = numpyro.sample("v0", dist.Normal(0.0, 150.0))
    P = jnp.exp(lnP)
    model_rv = rv_model(t, P[star], a[star], b[star], v0[star])
    with numpyro.plate("obs", t.shape[0]):
        numpyro.sample("rv", dist.Normal(model_rv, rv_err), obs=rv)


def load_data() -> pd.DataFrame:
    return load_csv(NAME)


def truth() -> dict[str, Any]:
    raw = load_truth(NAME)
    population = raw["population"]
    return {
        "mu": population["lnP_mean"],
        "lnsigma": float(np.log(population["lnP_sd"])),
        "lnP": raw["lnP"],
        "a": raw["a"],
        "b": raw["b"],
        "v0": raw["v0"],
    }


def initial_values(table: pd.DataFrame) -> dict[str, Any]:
    """Periodogram peak + weighted least squares per star (the tutorial's ``get_init_vals``)."""
    star, stars = factorize(table["star"], "star")
    fits = [
        best_sinusoid(
            table["t"].to_numpy()[star == s],
            table["rv"].to_numpy()[star == s],
            table["rv_err"].to_numpy()[star == s],
            min_period=MIN_PERIOD,
            max_period=MAX_PERIOD,
        )
        for s in range(len(stars))
    ]
    lnP = np.log([f.period for f in fits])
    return {
        "lnP": lnP,
        "a": np.array([f.a for f in fits]),
        "b": np.array([f.b for f in fits]),
        "v0": np.array([f.offset for f in fits]),
        "mu": float(np.clip(np.mean(lnP), 1.01, 9.99)),
        "lnsigma": float(np.clip(np.log(np.std(lnP) + 1e-3), -1.99, 2.99)),
    }


def setup(table: pd.DataFrame | None = None) -> dict[str, Any]:
    table = load_data() if table is None else table
    star, stars = factorize(table["star"], "star")
    data = {
        "t": table["t"].to_numpy(dtype=float),
        "star": star,
        "n_stars": len(stars),
        "rv_err": table["rv_err"].to_numpy(dtype=float),
        "rv": table["rv"].to_numpy(dtype=float),
    }
    return {
        "model_fn": model,
        "data": data,
        "coords": {"star": stars},
        "dims": {"t": ["obs"], "rv_err": ["obs"]},
        "init": initial_values(table),
    }


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return hx_fit(**setup(), seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    true = truth()
    paths = [
        save_figure(plot_forest(result, ["lnP"] + HYPERPARAMETERS, truth=true), out / "forest.png")
    ]
    paths.append(save_figure(plot_pair(result, HYPERPARAMETERS, truth=true), out / "pair.png"))
    paths.append(save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"))

    import matplotlib.pyplot as plt

    table = load_data()
    star, stars = factorize(table["star"], "star")
    lnP, a, b, v0 = (result.draws(n) for n in ("lnP", "a", "b", "v0"))
    best = int(np.argmax(np.asarray(result.idata["sample_stats"]["lp"]).reshape(-1)))
    ncols = 4
    nrows = int(np.ceil(len(stars) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.5 * nrows))
    rng = np.random.default_rng(0)
    for s, ax in enumerate(np.ravel(axes)):
        if s >= len(stars):
            ax.axis("off")
            continue
        mask = star == s
        P_best = float(np.exp(lnP[best, s]))
        t = table["t"].to_numpy()[mask]
        ax.errorbar(
            t % P_best / P_best,
            table["rv"].to_numpy()[mask],
            table["rv_err"].to_numpy()[mask],
            fmt="o",
            ms=3,
            lw=0.8,
        )
        phase = np.linspace(0, 1, 200)
        for i in rng.choice(lnP.shape[0], 15, replace=False):
            P_i = float(np.exp(lnP[i, s]))
            ax.plot(
                phase,
                rv_model(phase * P_i, P_i, a[i, s], b[i, s], v0[i, s]),
                color="tab:orange",
                lw=0.5,
                alpha=0.5,
            )
        ax.set_title(f"star {stars[s]}: P = {P_best:.4f} d", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.supxlabel("phase (folded at the MAP period)")
    fig.supylabel("RV / km/s")
    fig.tight_layout()
    paths.append(save_figure(fig, out / "predictive.png"))
    return paths
