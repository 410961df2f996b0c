"""Calibration models: readouts (absorbance, fluorescence, peak area) as a noisy,
often nonlinear function of the quantity of interest (a concentration).

A calibration model is a mean function with its inverse plus a noise model
whose scale may depend on the mean (calibr8's design, on JAX). Fit it by
maximum likelihood or with NUTS, predict readouts, infer concentrations from
readouts, save it as versioned JSON, plot it, and use it as the observation
model of any NumPyro model function with :func:`calibration_likelihood`.

>>> from hierax.calibration import CalibrationModel
>>> cal = CalibrationModel("logistic", "studentt")  # doctest: +SKIP
>>> cal = cal.fit_mle(concentration, absorbance)  # doctest: +SKIP
>>> cal.infer_independent([0.52, 0.55, 0.51], lower=0, upper=10).median  # doctest: +SKIP
"""

from __future__ import annotations

from hierax.calibration.fitting import MLEResult
from hierax.calibration.inference import IndependentPosterior
from hierax.calibration.mean_functions import (
    MEAN_FUNCTIONS,
    MeanFunction,
    asymmetric_logistic,
    exponential,
    inverse_asymmetric_logistic,
    inverse_exponential,
    inverse_logistic,
    inverse_polynomial,
    inverse_xlog_asymmetric_logistic,
    logistic,
    mean_function,
    polynomial,
    xlog_asymmetric_logistic,
)
from hierax.calibration.model import CalibrationModel, load_model
from hierax.calibration.noise import (
    NOISE_MODELS,
    LaplaceNoise,
    LogNormalNoise,
    NoiseModel,
    NormalNoise,
    PoissonNoise,
    StudentTNoise,
    noise_model,
)
from hierax.calibration.numpyro_site import calibration_likelihood
from hierax.calibration.persistence import save_model
from hierax.calibration.plotting import plot_model

__all__ = [
    "MEAN_FUNCTIONS",
    "NOISE_MODELS",
    "CalibrationModel",
    "IndependentPosterior",
    "LaplaceNoise",
    "LogNormalNoise",
    "MLEResult",
    "MeanFunction",
    "NoiseModel",
    "NormalNoise",
    "PoissonNoise",
    "StudentTNoise",
    "asymmetric_logistic",
    "calibration_likelihood",
    "exponential",
    "inverse_asymmetric_logistic",
    "inverse_exponential",
    "inverse_logistic",
    "inverse_polynomial",
    "inverse_xlog_asymmetric_logistic",
    "load_model",
    "logistic",
    "mean_function",
    "noise_model",
    "plot_model",
    "polynomial",
    "save_model",
    "xlog_asymmetric_logistic",
]
