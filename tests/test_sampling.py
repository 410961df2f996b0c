"""Known posteriors: conjugate models and a badly scaled Gaussian.

Criteria (testing guide): each posterior mean within 4 MCSE of the exact value,
sd within 10 %, no divergences.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

import hierax as hx

SETTINGS = {"chains": 4, "draws": 1000, "warmup": 500, "progress": False}


def _check(fit: hx.Fit, name: str, mean: np.ndarray, sd: np.ndarray) -> None:
    table = fit.summary(var_names=[name])
    mean = np.atleast_1d(mean)
    sd = np.atleast_1d(sd)
    assert fit.divergences == 0
    z = (table["mean"].to_numpy() - mean) / table["mcse_mean"].to_numpy()
    assert np.all(np.abs(z) < 4), f"{name}: means {table['mean'].to_numpy()} vs exact {mean}"
    np.testing.assert_allclose(table["sd"].to_numpy(), sd, rtol=0.10)
    assert np.all(table["r_hat"].to_numpy() < 1.01)


def test_normal_normal() -> None:
    y = np.array([1.2, 0.4, 2.1, 1.5, 0.9, 1.1])
    sigma, m0, s0 = 0.8, 0.0, 2.0

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(m0, s0))
        with numpyro.plate("obs", y.shape[0]):
            numpyro.sample("y", dist.Normal(mu, sigma), obs=y)

    precision = 1 / s0**2 + y.size / sigma**2
    exact_mean = (m0 / s0**2 + y.sum() / sigma**2) / precision
    fit = hx.fit(model, {"y": y}, seed=11, **SETTINGS)
    _check(fit, "mu", exact_mean, precision**-0.5)


def test_beta_binomial() -> None:
    def model(k, n):
        p = numpyro.sample("p", dist.Beta(2.0, 3.0))
        numpyro.sample("k", dist.Binomial(n, p), obs=k)

    fit = hx.fit(model, {"k": np.array(7), "n": 20}, seed=12, **SETTINGS)
    exact = stats.beta(2 + 7, 3 + 13)
    _check(fit, "p", exact.mean(), exact.std())


def test_gamma_poisson() -> None:
    y = np.array([3, 5, 2, 4, 6, 3, 2, 5, 4, 3])

    def model(y):
        lam = numpyro.sample("lam", dist.Gamma(2.0, 1.0))
        with numpyro.plate("obs", y.shape[0]):
            numpyro.sample("y", dist.Poisson(lam), obs=y)

    fit = hx.fit(model, {"y": y}, seed=13, **SETTINGS)
    exact = stats.gamma(2 + y.sum(), scale=1 / (1 + y.size))
    _check(fit, "lam", exact.mean(), exact.std())


def test_hierarchical_normal_with_known_variances() -> None:
    y = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
    sigma = np.array([15.0, 10, 16, 11, 9, 11, 10, 18])
    tau = 5.0

    def model(y, sigma):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("school", y.shape[0]):
            theta = numpyro.sample("theta", dist.Normal(mu, tau))
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    # mu | y is Gaussian: y_j ~ N(mu, sigma_j^2 + tau^2) after integrating theta out
    weights = 1 / (sigma**2 + tau**2)
    precision = 1 / 10.0**2 + weights.sum()
    fit = hx.fit(model, {"y": y, "sigma": sigma}, seed=14, **SETTINGS)
    _check(fit, "mu", (weights * y).sum() / precision, precision**-0.5)


@pytest.mark.parametrize("precondition", ["auto", "diag"])
def test_scales_from_1e_minus_6_to_1e3(precondition: str) -> None:
    """The case NumPyro's and Stan's adaptation get wrong (absolute 1e-3 variance shrinkage)."""
    means = np.array([2.0, -1.0, 0.5, 300.0])
    sds = np.array([1e-6, 1e-3, 1.0, 1e3])

    def model():
        with numpyro.plate("k", 4):
            numpyro.sample("x", dist.Normal(means, sds))

    with warnings.catch_warnings():
        warnings.simplefilter("error", hx.ConvergenceWarning)
        fit = hx.fit(model, seed=15, precondition=precondition, **SETTINGS)
    _check(fit, "x", means, sds)
    depth = np.asarray(fit.idata["sample_stats"]["tree_depth"])
    assert depth.max() <= 5  # a well-conditioned problem needs few leapfrog steps


def test_constrained_site_with_tiny_scale() -> None:
    """A positive parameter known to a part in a million (log transform + tiny sd)."""

    def model():
        numpyro.sample("P", dist.LogNormal(np.log(3.0), 1e-6))

    fit = hx.fit(model, seed=16, **SETTINGS)
    exact = stats.lognorm(s=1e-6, scale=3.0)
    _check(fit, "P", exact.mean(), exact.std())


def test_negative_control_plain_nuts_fails_on_wide_scales() -> None:
    """Without hierax's preconditioning, NumPyro's adaptation stalls here, and the check says so."""
    means = np.array([2.0, -1.0, 0.5, 300.0])
    sds = np.array([1e-6, 1e-3, 1.0, 1e3])

    def model():
        with numpyro.plate("k", 4):
            numpyro.sample("x", dist.Normal(means, sds))

    with pytest.warns(hx.ConvergenceWarning, match=r"x\[3\]"):
        fit = hx.fit(model, seed=15, precondition="none", **SETTINGS)
    assert {f.check for f in fit.findings} >= {"r_hat", "tree_depth"}
