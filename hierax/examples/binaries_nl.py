"""The binary-star seed as a nonlinear formula: no model code at all.

``rv | se(rv_err) ~ a * cos(2 * pi * t / exp(lnP)) + b * sin(2 * pi * t / exp(lnP)) + v0``
with ``lnP: 1 + (1 | star)`` (the population mean is ``lnP``, its sd
``sd_lnP_star``, each star's log period ``lnP_star``) and per-star ``a``, ``b``,
``v0`` with fixed prior sds 100, 100, 150 as in the tutorial. The prior
``sd_lnP_star ~ LogUniform(e^-2, e^3)`` is the tutorial's
``lnsigma ~ Uniform(-2, 3)`` written on the sd. Every star starts at its
periodogram peak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hierax.examples import binaries
from hierax.examples.binaries import load_data
from hierax.frontends.nonlinear import NonlinearModel
from hierax.results.fit import Fit

NAME = "binaries_nl"
TITLE = "binary stars from a nonlinear formula with per-star parameters"
FORMULA = "rv | se(rv_err) ~ a * cos(2 * pi * t / exp(lnP)) + b * sin(2 * pi * t / exp(lnP)) + v0"
HYPERPARAMETERS = ["lnP", "sd_lnP_star"]
PARAMS = {
    "lnP": "1 + (1 | star)",
    "a": "0 + (1 | star)",
    "b": "0 + (1 | star)",
    "v0": "0 + (1 | star)",
}
PRIORS: dict[str, Any] = {
    "lnP": "Uniform(1, 10)",
    "sd_lnP_star": "LogUniform(exp(-2), exp(3))",
    "sd_a_star": 100.0,
    "sd_b_star": 100.0,
    "sd_v0_star": 150.0,
}
CENTERED = {"lnP_star": True, "a_star": True, "b_star": True, "v0_star": True}
__all__ = [
    "HYPERPARAMETERS",
    "NAME",
    "TITLE",
    "fit",
    "figures",
    "initial_values",
    "load_data",
    "model",
    "truth",
]


def truth() -> dict[str, Any]:
    raw = binaries.truth()
    return {"lnP": raw["mu"], "sd_lnP_star": float(np.exp(raw["lnsigma"])), "lnP_star": raw["lnP"]}


def initial_values(table: Any) -> dict[str, Any]:
    """Periodogram peak and weighted least squares per star, mapped onto the model's sites."""
    start = binaries.initial_values(table)
    return {
        "lnP": start["mu"],
        "sd_lnP_star": float(np.exp(start["lnsigma"])),
        "lnP_star": start["lnP"],
        "r_a_star": start["a"],
        "r_b_star": start["b"],
        "r_v0_star": start["v0"],
    }


def model() -> NonlinearModel:
    return NonlinearModel(FORMULA, load_data(), params=PARAMS, priors=PRIORS, centered=CENTERED)


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return model().fit(
        seed=seed, draws=draws, warmup=draws, progress=progress, init=initial_values, **kwargs
    )


def figures(result: Fit, out: Path) -> list[Path]:
    from hierax.present.plots import plot_forest, plot_pair, plot_trace, save_figure

    true = truth()
    return [
        save_figure(
            plot_forest(result, ["lnP_star", *HYPERPARAMETERS], truth=true), out / "forest.png"
        ),
        save_figure(plot_pair(result, HYPERPARAMETERS, truth=true), out / "pair.png"),
        save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"),
    ]
