"""Per-row latent values integrated out by quadrature (hierax/marginal/latent.py)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats as st

import hierax as hx
from hierax.examples import parallax_nl
from hierax.inference.marginal.latent import (
    LatentPlan,
    _up_to_row_constants,
    integrated_log_likelihood,
    plan_latent_integration,
)


def _small_cluster(n: int = 30, seed: int = 0):  # type: ignore[no-untyped-def]
    table = parallax_nl.load_data().iloc[:n].reset_index(drop=True)
    return hx.NonlinearModel(
        parallax_nl.FORMULA, table, params=parallax_nl.PARAMS, priors=parallax_nl.PRIORS
    )


def test_plan_names_the_latent_and_says_why_not():
    assert plan_latent_integration(_small_cluster().description) == LatentPlan("r")
    table = parallax_nl.load_data().iloc[:10]
    two = hx.NonlinearModel(
        "parallax | se(parallax_error) ~ 1 / (r + s)",
        table,
        params={
            "r": hx.latent("TruncatedNormal(mu_r, 0.1, low=0)"),
            "s": hx.latent("Normal(0, 0.01)"),
            "mu_r": "1",
        },
        priors={"mu_r": "TruncatedNormal(1, 2, low=0)"},
    )
    assert "2 latent parameters" in plan_latent_integration(two.description)


@pytest.mark.parametrize(
    "population",
    [
        dist.TruncatedNormal(jnp.array([0.5, 1.0, 3.0]), 0.7, low=0.0),
        dist.TruncatedNormal(1.0, jnp.array([0.2, 1.0, 5.0]), low=0.0).expand((3,)),
        dist.TruncatedNormal(jnp.array([0.5, 1.0, 3.0]), 2.0, low=0.2, high=4.0),
        dist.TruncatedNormal(jnp.array([0.5, 1.0, 3.0]), 1.0, high=2.5),
        dist.TruncatedCauchy(jnp.array([0.5, 1.0, 3.0]), 1.0, low=0.0),
    ],
)
def test_draws_density_differs_from_the_populations_by_a_constant_per_row(population):
    """The conditional draws' population density: normalizer dropped, shape kept."""
    cheaper = _up_to_row_constants(population)
    assert cheaper is not population
    values = jnp.array([[0.25, 0.5, 0.75], [1.0, 1.5, 2.0], [2.2, 0.3, 1.1]])
    difference = np.asarray(population.log_prob(values) - cheaper.log_prob(values))
    assert difference.shape == (3, 3)
    np.testing.assert_allclose(difference, difference[:1].repeat(3, axis=0), rtol=0, atol=1e-9)
    assert np.any(np.abs(difference[0]) > 1e-2)  # the normalizer did change


def test_untruncated_population_is_kept():
    population = dist.Normal(jnp.zeros(3), 1.0)
    assert _up_to_row_constants(population) is population
    assert _up_to_row_constants(population.expand((2, 3))) is not None


@pytest.mark.parametrize(
    "mu_r, ln_std_r",
    # the last: a population cut at 0.4 sd below its mean (its normalizer -0.4 in the log)
    [(0.5, -4.8), (0.45, -2.0), (0.6, -7.5), (0.05, -2.0)],
)
def test_integrated_likelihood_matches_numerical_integration_per_row(mu_r, ln_std_r):
    model = _small_cluster()
    data = model.arrays()
    values = {"mu_r": jnp.asarray(mu_r), "ln_std_r": jnp.asarray(ln_std_r)}
    result = np.asarray(integrated_log_likelihood(LatentPlan("r"), model.description, data, values))
    s = np.exp(ln_std_r)
    plx, err = data["parallax"], data["se"]
    expected = []
    for i in range(len(plx)):
        # r on a fine grid over the whole region holding the integrand's mass
        r = np.linspace(max(mu_r - 12 * s, 1e-6), mu_r + 12 * s, 400_001)
        log_f = st.truncnorm.logpdf(r, -mu_r / s, np.inf, mu_r, s) + st.norm.logpdf(
            plx[i], 1.0 / r, err[i]
        )
        peak = log_f.max()
        expected.append(np.log(np.trapezoid(np.exp(log_f - peak), r)) + peak)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-7)


def test_integrated_fit_has_the_plain_fits_variables():
    model = _small_cluster()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(chains=2, draws=200, warmup=200, seed=1, progress=False)
        plain = model.fit(
            chains=2, draws=200, warmup=200, seed=1, progress=False, marginalize=False
        )
    assert fit.info["marginalized"] == ["r"]
    assert plain.info["marginalized"] == []
    assert set(fit.posterior.data_vars) == set(plain.posterior.data_vars)
    for name in plain.posterior.data_vars:
        assert fit.posterior[name].dims == plain.posterior[name].dims, name
    assert np.all(fit.posterior["r"].values > 0)


def test_independence_evaluation_equals_numpyros_potential_and_constrained_sites():
    """One model run gives NumPyro's -potential and constrain_fn's sites, row modes included."""
    import jax
    from numpyro.infer.util import constrain_fn, potential_energy

    from hierax.inference.batch_density import density_and_sites
    from hierax.inference.marginal.latent import collapsed_model

    model = _small_cluster()
    plan = LatentPlan("r")
    collapsed = collapsed_model(plan, model.description)
    data = model.arrays()
    evaluate = jax.jit(density_and_sites(collapsed, data))
    for mu, ln_sd in [(-0.7, 0.3), (-0.6, -1.2)]:  # unconstrained values
        params = {"mu_r": jnp.asarray(mu), "ln_std_r": jnp.asarray(ln_sd)}
        log_density, sites = evaluate(params)
        expected = constrain_fn(collapsed, (), data, params, return_deterministic=True)
        np.testing.assert_allclose(
            float(log_density), -float(potential_energy(collapsed, (), data, params)), rtol=1e-9
        )
        assert set(sites) == set(expected) >= {"mu_r", "ln_std_r", plan.mode_site}
        for name, value in expected.items():
            np.testing.assert_allclose(
                np.asarray(sites[name]), np.asarray(value), rtol=1e-9, atol=1e-12
            )


@pytest.mark.slow
def test_integrated_and_plain_posteriors_agree():
    """Means within 4 MCSE, sds within 10 %, for θ and the first stars' distances."""
    import arviz as az

    model = _small_cluster(n=60)
    start = {"mu_r": 0.5, "ln_std_r": -4.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integrated = model.fit(chains=4, draws=3000, warmup=1000, seed=3, progress=False)
        plain = model.fit(
            chains=4,
            draws=3000,
            warmup=1000,
            seed=4,
            progress=False,
            marginalize=False,
            init=start,
        )
    assert integrated.info["marginalized"] == ["r"]
    names = ["mu_r", "ln_std_r", "r"]
    coords = {"obs": list(range(5))}
    a = az.summary(integrated.idata, var_names=names, coords=coords, round_to="none")
    b = az.summary(plain.idata, var_names=names, coords=coords, round_to="none")
    z = np.abs(a["mean"] - b["mean"]) / np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert (z < 4).all(), z
    ratio = a["sd"] / b["sd"]
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio
