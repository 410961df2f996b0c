"""Calibration with batch effects (seed 000), built from a hierax calibration model.

The same workflow as :mod:`hierax.examples.calibration`, written the way the
calibr8 + PyMC seed writes it: a linear :class:`~hierax.calibration.CalibrationModel`
(``readout = intercept + slope * P``, Normal noise) is the observation model of
the reaction ``P(t) = S0 (1 - exp(-k t))``, with the intercept varying by batch.
Priors, variable names and data are those of the hand-written model, so both
give the same posterior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd

from hierax.calibration import CalibrationModel, calibration_likelihood
from hierax.examples import calibration as _handwritten
from hierax.examples.calibration import HYPERPARAMETERS, UNITS, load_data, predict_P, truth
from hierax.results.fit import Fit
from hierax.results.fit import fit as hx_fit

NAME = "calibration_cal"
TITLE = "calibration model (hierax.calibration) with a batch effect on the intercept + reaction"

__all__ = [
    "HYPERPARAMETERS",
    "LINEAR_CALIBRATION",
    "NAME",
    "TITLE",
    "UNITS",
    "figures",
    "fit",
    "load_data",
    "model",
    "predict_P",
    "setup",
    "truth",
]

# the seed's ``LinearCalibration(calibr8.ContinuousUnivariateModel, calibr8.NormalNoise)``
LINEAR_CALIBRATION = CalibrationModel(
    "linear",
    "normal",
    theta_names=["intercept", "slope", "sigma"],
    independent_key="P",
    dependent_key="readout",
)


def model(
    time_index: np.ndarray,
    timepoints: np.ndarray,
    batch: np.ndarray,
    n_batches: int,
    readout: np.ndarray | None = None,
) -> None:
    """The seed's PyMC model with the calibration as observation model (long format)."""
    # process model
    k = numpyro.sample("k", dist.HalfNormal(0.1))
    S0 = numpyro.sample("S0", dist.LogNormal(np.log(5.0), 0.05))
    P = numpyro.deterministic("P", predict_P(S0, k, timepoints))
    # priors of the calibration parameters; the intercept varies by batch
    intercept = numpyro.sample("intercept", dist.Normal(0.3, 0.2))
    with numpyro.plate("batch", n_batches):
        intercept_batch = numpyro.sample("intercept_batch", dist.Normal(intercept, 0.1))
    slope = numpyro.sample("slope", dist.Normal(0.5, 0.5))
    sigma = numpyro.sample("sigma", dist.LogNormal(np.log(0.1), 0.1))
    # observing the product concentrations through the calibration model
    with numpyro.plate("obs", batch.shape[0]):
        calibration_likelihood(
            "readout",
            LINEAR_CALIBRATION,
            x=P[time_index],
            theta={"intercept": intercept_batch[batch], "slope": slope, "sigma": sigma},
            obs=readout,
        )


def setup(table: pd.DataFrame | None = None) -> dict[str, Any]:
    """Arguments for :func:`hierax.fit`: the hand-written workflow's data, coords and
    dims, with this module's model."""
    return {**_handwritten.setup(table), "model_fn": model}


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return hx_fit(**setup(), seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    """The same plots as the hand-written workflow."""
    return _handwritten.figures(result, out)
