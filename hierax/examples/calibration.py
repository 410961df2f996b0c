"""Calibration with batch effects (seed 000: calibr8 + PyMC).

A linear calibration ``readout = intercept_batch + slope * P`` whose intercept
varies by batch, observing the product of a first-order reaction
``P(t) = S0 (1 - exp(-k t))``; everything is estimated jointly.
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
from hierax.present.plots import plot_band, plot_pair, plot_ridge, plot_trace, save_figure
from hierax.results.fit import Fit
from hierax.results.fit import fit as hx_fit

NAME = "calibration"
TITLE = "calibration model with a batch effect on the intercept + 1st-order reaction"
HYPERPARAMETERS = ["k", "S0", "intercept", "slope", "sigma"]
UNITS = {
    "intercept_batch": "a.u.",
    "intercept": "a.u.",
    "slope": "a.u./mM",
    "sigma": "a.u.",
    "k": "1/s",
    "S0": "mM",
}


def predict_P(S0: Any, k: Any, time: Any) -> Any:
    """Product concentration of a first-order reaction started at P0 = 0."""
    return S0 * (1 - jnp.exp(-time * k))


def model(
    time_index: np.ndarray,
    timepoints: np.ndarray,
    batch: np.ndarray,
    n_batches: int,
    readout: np.ndarray | None = None,
) -> None:
    """The seed's PyMC model, in NumPyro, vectorised over rows (long format)."""
    # process model
    k = numpyro.sample("k", dist.HalfNormal(0.1))
    S0 = numpyro.sample("S0", dist.LogNormal(np.log(5.0), 0.05))
    P = numpyro.deterministic("P", predict_P(S0, k, timepoints))
    # calibration model
    intercept = numpyro.sample("intercept", dist.Normal(0.3, 0.2))
    with numpyro.plate("batch", n_batches):
        intercept_batch = numpyro.sample("intercept_batch", dist.Normal(intercept, 0.1))
    slope = numpyro.sample("slope", dist.Normal(0.5, 0.5))
    sigma = numpyro.sample("sigma", dist.LogNormal(np.log(0.1), 0.1))
    mu = intercept_batch[batch] + slope * P[time_index]
    with numpyro.plate("obs", batch.shape[0]):
        numpyro.sample("readout", dist.Normal(mu, sigma), obs=readout)


def load_data() -> pd.DataFrame:
    return load_csv(NAME)


def truth() -> dict[str, Any]:
    return dict(load_truth(NAME)["true"])


def setup(table: pd.DataFrame | None = None) -> dict[str, Any]:
    """Arguments for :func:`hierax.fit`: model, data, coords and dims."""
    table = load_data() if table is None else table
    batch, batch_levels = factorize(table["batch"], "batch")
    time_index, timepoints = factorize(table["time"], "time")
    data = {
        "time_index": time_index,
        "timepoints": np.asarray(timepoints, dtype=float),
        "batch": batch,
        "n_batches": len(batch_levels),
        "readout": table["readout"].to_numpy(dtype=float),
    }
    return {
        "model_fn": model,
        "data": data,
        "coords": {"batch": batch_levels, "timepoint": list(range(len(timepoints)))},
        "dims": {"P": ["timepoint"], "timepoints": ["timepoint"]},
    }


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return hx_fit(**setup(), seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    true = truth()
    names = ["intercept_batch", "intercept", "slope", "sigma", "k", "S0"]
    paths = [save_figure(plot_ridge(result, names, hdi_prob=0.99, units=UNITS), out / "ridge.png")]
    paths.append(
        save_figure(plot_pair(result, ["k", "S0", "slope", "sigma"], truth=true), out / "pair.png")
    )
    paths.append(save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"))

    import matplotlib.pyplot as plt

    time_dense = np.linspace(0, 60, 100)
    S0 = result.draws("S0")[:, None]
    k = result.draws("k")[:, None]
    P_dense = np.asarray(predict_P(S0, k, time_dense))
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_band(time_dense, P_dense, ax=ax)
    ax.plot(time_dense, predict_P(true["S0"], true["k"], time_dense), "k--", lw=1, label="truth")
    ax.set(
        title="Posterior of the product concentration over time",
        xlabel="time / s",
        ylabel="product concentration / mM",
        xlim=(0, 60),
        ylim=(0, None),
    )
    ax.legend(loc="lower right", fontsize=8)
    paths.append(save_figure(fig, out / "predictive.png"))
    return paths
