"""The calibration seed as a nonlinear formula: no model code at all.

``readout ~ intercept + slope * S0 * (1 - exp(-k * time))`` with the intercept
varying by batch (``intercept: 1 + (1 | batch)``, batch sd fixed at 0.1 as in
the seed). Same names and posterior as :mod:`hierax.examples.calibration`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hierax.examples import calibration
from hierax.examples.calibration import HYPERPARAMETERS, load_data, truth
from hierax.frontends.nonlinear import NonlinearModel
from hierax.results.fit import Fit

NAME = "calibration_nl"
TITLE = "calibration seed from the nonlinear formula readout ~ intercept + slope * S0 * (1 - exp(-k * time))"
FORMULA = "readout ~ intercept + slope * S0 * (1 - exp(-k * time))"
PARAMS = {"intercept": "1 + (1 | batch)", "slope": "1", "S0": "1", "k": "1"}
PRIORS = {
    "intercept": "Normal(0.3, 0.2)",
    "sd_intercept_batch": 0.1,  # fixed, as in the seed
    "slope": "Normal(0.5, 0.5)",
    "S0": "LogNormal(log(5), 0.05)",
    "k": "HalfNormal(0.1)",
    "sigma": "LogNormal(log(0.1), 0.1)",
}
__all__ = ["HYPERPARAMETERS", "NAME", "TITLE", "fit", "figures", "load_data", "model", "truth"]


def model() -> Any:
    return NonlinearModel(
        FORMULA, load_data(), params=PARAMS, priors=PRIORS, centered={"intercept_batch": True}
    )


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return model().fit(seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    return calibration.figures(result, out)
