"""The varying intercepts and slopes workflow as one formula line.

``response ~ predictor + (predictor | group)``: correlated group intercepts
and slopes with an LKJ(2) prior on their correlation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hierax.examples import regression
from hierax.frontends.model import Model
from hierax.present.plots import band_by_group, plot_forest, plot_pair, plot_trace, save_figure
from hierax.results.fit import Fit

NAME = "regression_formula"
TITLE = "varying intercepts and slopes from response ~ predictor + (predictor | group)"
FORMULA = "response ~ predictor + (predictor | group)"
HYPERPARAMETERS = ["Intercept", "b_predictor", "sd_group", "sigma"]
load_data = regression.load_data


def truth() -> dict[str, Any]:
    raw = regression.truth()
    return {
        "Intercept": raw["mu_intercept"],
        "b_predictor": raw["mu_slope"],
        "sd_group": [raw["sigma_intercept"], raw["sigma_slope"]],
        "sigma": raw["sigma_noise"],
    }


def model() -> Model:
    return Model(FORMULA, load_data())


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return model().fit(seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    true = truth()
    paths = [
        save_figure(
            plot_forest(result, ["r_group", *HYPERPARAMETERS, "cor_group"], truth=true),
            out / "forest.png",
        ),
        save_figure(
            plot_pair(result, ["Intercept", "b_predictor", "sigma"], truth=true), out / "pair.png"
        ),
        save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"),
    ]
    table = load_data()
    draws = np.asarray(result.predict(table, kind="response")).reshape(-1, len(table))
    fig = band_by_group(
        table["predictor"].to_numpy(),
        table["response"].to_numpy(),
        table["group"].to_numpy(),
        draws,
        title=f"posterior predictive check per group: {FORMULA}",
    )
    paths.append(save_figure(fig, out / "predictive.png"))
    return paths
