"""Tiny NumPyro models and data shared by the hierax tests.

Everything here is deterministic (fixed seeds) so that a fresh Python process
can rebuild exactly the same data and fit (see ``test_fit.py``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

# --------------------------------------------------------------------- normal


def normal_model(y):
    """y ~ Normal(mu, sigma) with a HalfNormal scale: two scalar latent sites."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def normal_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {"y": rng.normal(1.5, 2.0, size=20)}


# ------------------------------------------------- hierarchical (non-centered)

SCHOOLS = ["alder", "birch", "cedar", "dogwood", "elm"]


def hierarchical_model(school, n_school, y):
    """Non-centered hierarchical normal: 5 groups, group effects theta = mu + tau * z."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("school", n_school):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * z)
    with numpyro.plate("obs", school.shape[0]):
        numpyro.sample("y", dist.Normal(theta[school], sigma), obs=y)


def hierarchical_data() -> dict[str, object]:
    """5 schools x 10 observations, school effects from N(1, 1), noise sd 1."""
    rng = np.random.default_rng(20240601)
    n_school, per_school = len(SCHOOLS), 10
    effects = rng.normal(1.0, 1.0, size=n_school)
    school = np.repeat(np.arange(n_school), per_school)
    y = effects[school] + rng.normal(0.0, 1.0, size=school.size)
    return {"school": school, "n_school": n_school, "y": y}


# ------------------------------------------------------ eight schools, centered

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_centered(y, sigma):
    """The classic centered parameterization: a funnel between tau and theta."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", y.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(y, sigma):
    """The same model with theta = mu + tau * z: no funnel for NUTS."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", y.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * z)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


# ------------------------------------------------------------------- bimodal


def bimodal_model():
    """theta from an equal mixture of N(-10, 0.1) and N(10, 0.1): two separated modes."""
    mixing = dist.Categorical(probs=jnp.array([0.5, 0.5]))
    components = dist.Normal(jnp.array([-10.0, 10.0]), 0.1)
    numpyro.sample("theta", dist.MixtureSameFamily(mixing, components))


# ------------------------------------------------------------------- support


def beta_prior_model(y):
    """p ~ Beta(2, 2) used as a location: p outside [0, 1] only breaks p's own prior."""
    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(p, 1.0), obs=y)


def uniform_upper_model(y, prior_median):
    """y ~ Uniform(0, upper): an ``upper`` below max(y) makes the data impossible.

    The support of the likelihood depends on the latent ``upper``; its prior is
    LogNormal(log(prior_median), 0.3).
    """
    upper = numpyro.sample("upper", dist.LogNormal(jnp.log(prior_median), 0.3))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Uniform(0.0, upper), obs=y)


# ------------------------------------------------------- reproducibility fit

SEED_FIT_SETTINGS = {"chains": 2, "draws": 100, "warmup": 100, "progress": False, "warn": False}


def seed_fit(seed: int):
    """The fit compared across processes in the reproducibility tests."""
    import hierax

    return hierax.fit(hierarchical_model, hierarchical_data(), seed=seed, **SEED_FIT_SETTINGS)


# ------------------------------------------------------------ posterior agreement


def _interval_widths(fit, name: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Width of each element's central 90 % interval."""
    draws = np.asarray(fit.posterior[name].values)
    flat = draws.reshape((draws.shape[0] * draws.shape[1],) + draws.shape[2:])
    return np.quantile(flat, 0.95, axis=0) - np.quantile(flat, 0.05, axis=0)


def assert_same_posterior(a, b, names, *, spread: str = "sd") -> None:  # type: ignore[no-untyped-def]
    """Two fits of one posterior: means within 4 combined MCSE, spreads within 10 %.

    ``spread="interval"`` compares the widths of central 90 % intervals
    instead of sds: the calibration seed's posterior has a thin ridge toward
    k -> 0 with a large slope that a NUTS chain enters now and then (one run:
    40 consecutive draws at slope 0.4-0.76, 20 sds from the mean 0.28), which
    moves a 4000-draw sample sd by 50 % while the posterior is the same.
    """
    import arviz as az

    for name in names:
        first, second = a.posterior[name], b.posterior[name]
        mcse = np.hypot(
            az.mcse(a.idata, var_names=[name])[name].values,
            az.mcse(b.idata, var_names=[name])[name].values,
        )
        difference = np.abs(
            first.mean(("chain", "draw")).values - second.mean(("chain", "draw")).values
        )
        assert np.all(difference < 4 * mcse), (name, difference, mcse)
        if spread == "interval":
            ratio = _interval_widths(a, name) / _interval_widths(b, name)
        else:
            ratio = first.std(("chain", "draw")).values / second.std(("chain", "draw")).values
        assert np.all(np.abs(ratio - 1) < 0.1), (name, ratio)
