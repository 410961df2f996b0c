"""Adaptive Gauss-Hermite integration of per-row latent values (hierax/marginal/quadrature.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats as st

from hierax.marginal.quadrature import (
    NODES,
    conditional_draws,
    conditional_quantiles,
    log_marginal,
)

jax.config.update("jax_enable_x64", True)


def _measurement_rows(seed: int = 0, n: int = 40) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Noisy inverse distances, as in the star-cluster seed."""
    rng = np.random.default_rng(seed)
    distance = rng.normal(1.0, 0.1, n)
    error = rng.uniform(0.01, 0.4, n)
    return jnp.asarray(1.0 / distance + error * rng.normal(size=n)), jnp.asarray(error)


def _parallax_integrand(mu: float, s: float, plx: jax.Array, err: jax.Array):  # type: ignore[no-untyped-def]
    """g_i(u) with r = exp(u) ~ TruncatedNormal(mu, s, low=0) and plx_i ~ N(1/r, err_i)."""
    prior = dist.TruncatedNormal(mu, s, low=0.0)

    def g(u: jax.Array) -> jax.Array:
        r = jnp.exp(u)
        return prior.log_prob(r) + u + dist.Normal(1.0 / r, err).log_prob(plx)

    return g


def _grid_reference(g, n: int, center: np.ndarray, half_width: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """log ∫ exp(g_i) by the trapezoidal rule on 200 001 points around each row's center."""
    offsets = np.linspace(-half_width, half_width, 200_001)
    grid = jnp.asarray(center[None, :] + offsets[:, None])
    values = np.asarray(jax.jit(g)(grid))
    peak = values.max(axis=0)
    return np.log(np.trapezoid(np.exp(values - peak), offsets, axis=0)) + peak


def test_gaussian_integrand_is_integrated_exactly():
    rng = np.random.default_rng(1)
    mean, sd, height = rng.normal(size=7), rng.uniform(0.01, 3.0, 7), rng.normal(size=7)

    def g(u: jax.Array) -> jax.Array:
        return height + st.norm.logpdf(0.0) - 0.5 * ((u - mean) / sd) ** 2

    result = np.asarray(log_marginal(g, jnp.zeros(7)))
    np.testing.assert_allclose(result, height + np.log(sd), rtol=0, atol=1e-12)


@pytest.mark.parametrize("nodes, tolerance", [(64, 1e-8), (NODES, 1e-7)])
@pytest.mark.parametrize("mu, s", [(0.8, 0.05), (1.2, 0.3), (0.5, 1.0), (2.0, 0.01), (1.0, 3e-4)])
def test_measurement_integral_matches_a_fine_grid(mu, s, nodes, tolerance):
    """Per-row log integrals within ``tolerance``: 1e-8 with 64 nodes, 1e-7 with the default.

    The widest population (s = 1) leaves skewed, likelihood-dominated rows
    (parallax errors up to 40 %), the hardest case.
    """
    plx, err = _measurement_rows()
    g = _parallax_integrand(mu, s, plx, err)
    start = jnp.full(plx.shape, np.log(mu))
    result = np.asarray(jax.jit(lambda v: log_marginal(g, v, nodes=nodes))(start))
    # the reference grid is centered at a crude mode (argmax on a coarse grid) and
    # wide enough to hold every row's mass
    coarse = np.linspace(np.log(mu) - 3.0, np.log(mu) + 3.0, 60_001)
    values = np.asarray(jax.jit(g)(jnp.asarray(coarse[:, None] + np.zeros(plx.shape))))
    center = coarse[np.argmax(values, axis=0)]
    width = 40.0 * np.minimum(s / mu, np.asarray(err)).max()
    reference = _grid_reference(g, plx.size, center, max(width, 1e-3))
    np.testing.assert_allclose(result, reference, rtol=0, atol=tolerance)


def test_gradient_matches_finite_differences():
    plx, err = _measurement_rows(seed=2)

    def total(theta: jax.Array) -> jax.Array:
        g = _parallax_integrand(theta[0], jnp.exp(theta[1]), plx, err)
        return jnp.sum(log_marginal(g, jnp.full(plx.shape, jnp.log(1.0))))

    theta = jnp.array([1.05, np.log(0.08)])
    gradient = np.asarray(jax.grad(total)(theta))
    step = 1e-6
    numeric = [
        (float(total(theta.at[i].add(step))) - float(total(theta.at[i].add(-step)))) / (2 * step)
        for i in range(2)
    ]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6)


def test_conditional_draws_follow_the_exact_distribution():
    """Row 0 Gaussian, row 1 skewed (a measurement of 1/r): Kolmogorov-Smirnov on 4000 draws."""
    plx, err = _measurement_rows(seed=3, n=2)
    err = err.at[1].set(0.35)  # a wide likelihood: a clearly skewed conditional in log r
    skewed = _parallax_integrand(1.0, 0.4, plx, err)

    def g(u: jax.Array) -> jax.Array:
        gaussian = -0.5 * ((u[..., 0] - 0.3) / 0.2) ** 2
        return jnp.stack([gaussian, skewed(u)[..., 1]], axis=-1)

    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    draws = np.asarray(jax.jit(jax.vmap(lambda k: conditional_draws(g, jnp.zeros(2), k)))(keys))
    assert st.kstest(draws[:, 0], st.norm(0.3, 0.2).cdf).pvalue > 0.01
    # exact CDF of row 1 from a fine grid
    grid = np.linspace(-4.0, 2.0, 400_001)
    values = np.asarray(jax.jit(g)(jnp.asarray(np.stack([grid, grid], axis=1))))[:, 1]
    density = np.exp(values - values.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
    cdf /= cdf[-1]
    assert st.kstest(draws[:, 1], lambda x: np.interp(x, grid, cdf)).pvalue > 0.01
    assert abs(st.skew(draws[:, 1])) > 0.1  # the test does probe a skewed case


@pytest.mark.parametrize("error", [0.05, 0.2, 0.4])
def test_conditional_quantiles_invert_the_exact_distribution_function(error):
    """At 999 probabilities, the exact CDF at the returned quantile is within 7e-4 of it.

    Rows are parallax-like conditionals in log r, skewed more as the measurement
    error grows (about a tenth of the Monte Carlo error of 4000 draws' quantiles).
    """
    plx, _ = _measurement_rows(seed=4, n=6)
    err = jnp.full(plx.shape, error)
    g = _parallax_integrand(1.0, 0.4, plx, err)
    probabilities = np.linspace(0.0005, 0.9995, 999)
    quantiles = np.asarray(
        jax.jit(
            jax.vmap(
                lambda p: conditional_quantiles(g, jnp.zeros(plx.shape), jnp.full(plx.shape, p))
            )
        )(jnp.asarray(probabilities))
    )
    grid = np.linspace(-6.0, 4.0, 400_001)
    values = np.asarray(jax.jit(g)(jnp.asarray(np.repeat(grid[:, None], plx.size, axis=1))))
    for row in range(plx.size):
        density = np.exp(values[:, row] - values[:, row].max())
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
        cdf /= cdf[-1]
        assert np.max(np.abs(np.interp(quantiles[:, row], grid, cdf) - probabilities)) < 7e-4
