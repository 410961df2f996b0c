"""Noise models against scipy: log densities (with a scale that depends on mu),
support and invalid parameters."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

from hierax.calibration import CalibrationModel, noise_model
from hierax.errors import ModelError

MU = np.linspace(0.5, 6.0, 12)


def _readouts(name: str, rng: np.random.Generator) -> np.ndarray:
    if name == "poisson":
        return rng.poisson(MU).astype(float)
    if name == "lognormal":
        return MU * np.exp(rng.normal(0, 0.3, MU.size))
    return MU + rng.normal(0, 0.5, MU.size)


# (noise, scale_degree, noise theta, scipy reference as a function of mu)
CASES = [
    ("normal", 0, [0.4], lambda mu: stats.norm(mu, 0.4)),
    ("normal", 1, [0.1, 0.05], lambda mu: stats.norm(mu, 0.1 + 0.05 * mu)),
    ("normal", 2, [0.1, 0.02, 0.01], lambda mu: stats.norm(mu, 0.1 + 0.02 * mu + 0.01 * mu**2)),
    ("studentt", 0, [0.3, 4.0], lambda mu: stats.t(4.0, mu, 0.3)),
    ("studentt", 1, [0.05, 0.08, 2.5], lambda mu: stats.t(2.5, mu, 0.05 + 0.08 * mu)),
    ("laplace", 0, [0.25], lambda mu: stats.laplace(mu, 0.25)),
    ("laplace", 1, [0.02, 0.1], lambda mu: stats.laplace(mu, 0.02 + 0.1 * mu)),
    ("lognormal", 0, [0.2], lambda mu: stats.lognorm(s=0.2, scale=mu)),
    ("lognormal", 1, [0.1, 0.03], lambda mu: stats.lognorm(s=0.1 + 0.03 * mu, scale=mu)),
    ("poisson", 0, [], lambda mu: stats.poisson(mu)),
]


@pytest.mark.parametrize(("name", "degree", "theta", "reference"), CASES)
def test_log_density_equals_scipy(name, degree, theta, reference) -> None:
    rng = np.random.default_rng(7)
    y = _readouts(name, rng)
    noise = noise_model(name, degree)
    ours = np.asarray(noise.log_prob(y, MU, theta))
    frozen = reference(MU)
    expected = frozen.logpmf(y) if name == "poisson" else frozen.logpdf(y)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=0)
    # the scipy object hierax builds for plots is the same distribution
    ours_scipy = noise.scipy(noise.parameters(MU, theta))
    via = ours_scipy.logpmf(y) if name == "poisson" else ours_scipy.logpdf(y)
    np.testing.assert_allclose(via, expected, rtol=1e-6)


@pytest.mark.parametrize(("name", "degree", "theta", "reference"), CASES)
def test_calibration_loglikelihood_sums_scipy(name, degree, theta, reference) -> None:
    rng = np.random.default_rng(11)
    x = np.linspace(0.0, 5.0, MU.size)
    mean_theta = [0.5, 1.1]
    y = _readouts(name, rng)
    cal = CalibrationModel("linear", name, scale_degree=degree)
    frozen = reference(0.5 + 1.1 * x)
    expected = (frozen.logpmf(y) if name == "poisson" else frozen.logpdf(y)).sum()
    ours = float(cal.loglikelihood(y=y, x=x, theta=mean_theta + theta))
    assert ours == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("name", "theta", "y"),
    [
        ("lognormal", [0.2], [-1.0, 0.0]),
        ("poisson", [], [-1.0, 2.5]),
    ],
)
def test_outside_the_support_is_minus_inf(name, theta, y) -> None:
    noise = noise_model(name)
    values = np.asarray(noise.log_prob(np.asarray(y), 2.0, theta))
    assert np.all(values == -np.inf)


@pytest.mark.parametrize(
    ("name", "degree", "theta"),
    [
        ("normal", 0, [-0.1]),
        ("normal", 1, [0.1, -1.0]),  # scale = 0.1 - mu < 0 for mu = 2
        ("studentt", 0, [0.1, -3.0]),
        ("laplace", 0, [0.0]),
    ],
)
def test_invalid_parameters_give_minus_inf_with_finite_gradient(name, degree, theta) -> None:
    noise = noise_model(name, degree)
    value = noise.log_prob(1.0, 2.0, theta)
    assert float(value) == -np.inf
    gradient = jax.grad(lambda t: noise.log_prob(1.0, 2.0, list(t)))(np.asarray(theta))
    assert np.all(np.isfinite(np.asarray(gradient)))


def test_noise_names_and_parameters() -> None:
    assert noise_model("normal").theta_names == ("sigma",)
    assert noise_model("normal", 1).theta_names == ("sigma_0", "sigma_1")
    assert noise_model("studentt").theta_names == ("scale", "df")
    assert noise_model("poisson", 3).theta_names == ()
    cal = CalibrationModel("logistic", "studentt", scale_degree=1)
    assert cal.theta_names == ("I_x", "I_y", "Lmax", "s", "scale_0", "scale_1", "df")
    mu, scale, df = cal.predict_dependent(np.array([1.0, 2.0]), [1.0, 0.5, 1.0, 0.3, 0.1, 0.2, 5.0])
    np.testing.assert_allclose(scale, 0.1 + 0.2 * np.asarray(mu))
    assert float(df) == 5.0


def test_unknown_noise_names_close_matches() -> None:
    with pytest.raises(ModelError, match="'studnett'") as info:
        noise_model("studnett")
    assert "'studentt'" in str(info.value)
