"""The calibration likelihood as the observation model of NumPyro model functions:
the seed workflow rebuilt from it agrees with the hand-written model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from models import assert_same_posterior
from numpyro import handlers
from numpyro.infer.util import log_density

import hierax as hx
from hierax.calibration import CalibrationModel, calibration_likelihood
from hierax.examples import calibration, calibration_cal


def _random_point(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "k": rng.uniform(0.02, 0.1),
        "S0": rng.uniform(4.5, 5.5),
        "intercept": rng.normal(0.3, 0.2),
        "intercept_batch": rng.normal(0.3, 0.2, 3),
        "slope": rng.uniform(0.2, 0.6),
        "sigma": rng.uniform(0.05, 0.15),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_density_equals_the_hand_written_model(seed: int) -> None:
    data = calibration.setup()["data"]
    point = _random_point(seed)
    ours, _ = log_density(calibration_cal.model, (), data, point)
    theirs, _ = log_density(calibration.model, (), data, point)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-9)


def test_wide_format_broadcasting_as_in_the_seed() -> None:
    """theta = [intercept_batch[:, None], slope, sigma] against x = P[None, :]."""
    setup = calibration.setup()
    data = setup["data"]
    readout_wide = np.zeros((3, 4))
    readout_wide[data["batch"], data["time_index"]] = data["readout"]
    cal = calibration_cal.LINEAR_CALIBRATION

    def wide(timepoints, y_obs):
        k = numpyro.sample("k", dist.HalfNormal(0.1))
        S0 = numpyro.sample("S0", dist.LogNormal(np.log(5.0), 0.05))
        P = calibration.predict_P(S0, k, timepoints)
        intercept = numpyro.sample("intercept", dist.Normal(0.3, 0.2))
        with numpyro.plate("batch", 3):
            intercept_batch = numpyro.sample("intercept_batch", dist.Normal(intercept, 0.1))
        slope = numpyro.sample("slope", dist.Normal(0.5, 0.5))
        sigma = numpyro.sample("sigma", dist.LogNormal(np.log(0.1), 0.1))
        calibration_likelihood(
            "likelihood",
            cal,
            x=P[None, :],
            theta=[intercept_batch[:, None], slope, sigma],
            obs=y_obs,
        )

    point = _random_point(4)
    ours, trace = log_density(wide, (data["timepoints"], readout_wide), {}, point)
    theirs, _ = log_density(calibration.model, (), data, point)
    assert trace["likelihood"]["value"].shape == (3, 4)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-9)


def test_unobserved_site_samples_readouts() -> None:
    cal = CalibrationModel("logistic", "studentt").with_theta([5.0, 1.0, 2.0, 0.4, 0.05, 5.0])

    def model(x):
        with numpyro.plate("obs", x.shape[0]):
            return calibration_likelihood("y", cal, x)

    with handlers.seed(rng_seed=0):
        y = model(jnp.linspace(0, 10, 2000))
    assert y.shape == (2000,)
    residual = np.asarray(y) - np.asarray(cal.predict_mean(jnp.linspace(0, 10, 2000)))
    assert abs(np.median(residual)) < 0.01


def test_fixed_calibration_inside_nuts_agrees_with_grid_inference() -> None:
    """A latent concentration observed through a fitted calibration: NUTS vs the grid."""
    cal = CalibrationModel("logistic", "normal").with_theta([5.0, 1.0, 2.0, 0.4, 0.08])
    readouts = np.array([0.62, 0.70, 0.66])

    def model(y):
        concentration = numpyro.sample("concentration", dist.Uniform(0.0, 10.0))
        with numpyro.plate("replicate", y.shape[0]):
            calibration_likelihood("y", cal, concentration, obs=y)

    fit = hx.fit(model, {"y": readouts}, chains=4, draws=1000, seed=3)
    grid = cal.infer_independent(readouts, 0.0, 10.0, steps=4000)
    draws = fit.draws("concentration")
    mean_grid = np.trapezoid(grid.pdf * grid.grid, grid.grid)
    mcse = float(fit.summary("concentration")["mcse_mean"].iloc[0])
    sd_grid = np.sqrt(np.trapezoid(grid.pdf * (grid.grid - mean_grid) ** 2, grid.grid))
    assert abs(draws.mean() - mean_grid) < 4 * mcse
    assert abs(draws.std() / sd_grid - 1) < 0.10


def test_seed_workflow_from_the_calibration_model_matches_the_hand_written_one() -> None:
    names = ["k", "S0", "P", "intercept", "intercept_batch", "slope", "sigma"]
    # different seeds: two independent runs of (mathematically) the same posterior
    hand_written = calibration.fit(seed=11, progress=False)
    from_calibration = calibration_cal.fit(seed=12, progress=False)
    assert (
        hand_written.posterior.sizes["chain"] == 4 and hand_written.posterior.sizes["draw"] == 1000
    )
    assert from_calibration.findings == [] and from_calibration.divergences == 0
    assert list(from_calibration.posterior["intercept_batch"].dims[2:]) == ["batch"]
    assert_same_posterior(hand_written, from_calibration, names, spread="interval")
    assert jax.numpy.isfinite(from_calibration.draws("sigma")).all()
