"""The seed models written independently of hierax, and a plain NumPyro runner.

These are the references the examples are compared against: they share no
code with ``hierax`` (only NumPyro and numpy), and they are run with
NumPyro's own ``MCMC`` and ``NUTS``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, init_to_value


def run_numpyro(model, data, *, seed=0, init=None, chains=4, draws=1000, warmup=1000, **nuts):
    """Plain NumPyro NUTS; returns {name: (chain, draw, ...)} and the number of divergences."""
    kernel = NUTS(
        model,
        init_strategy=init_to_value(values=init) if init else numpyro.infer.init_to_median,
        **nuts,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging",), **data)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return samples, divergences


def calibration(time, batch, readout):
    k = numpyro.sample("k", dist.HalfNormal(0.1))
    S0 = numpyro.sample("S0", dist.LogNormal(jnp.log(5.0), 0.05))
    intercept = numpyro.sample("intercept", dist.Normal(0.3, 0.2))
    intercept_batch = numpyro.sample(
        "intercept_batch", dist.Normal(intercept, 0.1).expand([3]).to_event(1)
    )
    slope = numpyro.sample("slope", dist.Normal(0.5, 0.5))
    sigma = numpyro.sample("sigma", dist.LogNormal(jnp.log(0.1), 0.1))
    P = S0 * (1.0 - jnp.exp(-k * time))
    numpyro.sample(
        "readout", dist.Normal(intercept_batch[batch] + slope * P, sigma).to_event(1), obs=readout
    )


def crossed(gene, cell_line, logfc):
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 5.0))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.Exponential(1.0))
    sigma_beta = numpyro.sample("sigma_beta", dist.Exponential(1.0))
    # non-centered here, on purpose: a different parameterization of the same posterior
    z_alpha = numpyro.sample("z_alpha", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    z_beta = numpyro.sample("z_beta", dist.Normal(0.0, 1.0).expand([10]).to_event(1))
    numpyro.deterministic("alpha_g", sigma_alpha * z_alpha)
    numpyro.deterministic("beta_c", sigma_beta * z_beta)
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    mu = intercept + sigma_alpha * z_alpha[gene] + sigma_beta * z_beta[cell_line]
    numpyro.sample("logfc", dist.Normal(mu, sigma).to_event(1), obs=logfc)


def regression(x, group, y):
    mu_intercept = numpyro.sample("mu_intercept", dist.Normal(0.0, 5.0))
    mu_slope = numpyro.sample("mu_slope", dist.Normal(0.0, 5.0))
    sigma_intercept = numpyro.sample("sigma_intercept", dist.HalfCauchy(2.0))
    sigma_slope = numpyro.sample("sigma_slope", dist.HalfCauchy(2.0))
    intercept_group = numpyro.sample(
        "intercept_group", dist.Normal(mu_intercept, sigma_intercept).expand([8]).to_event(1)
    )
    slope_group = numpyro.sample(
        "slope_group", dist.Normal(mu_slope, sigma_slope).expand([8]).to_event(1)
    )
    sigma_noise = numpyro.sample("sigma_noise", dist.Exponential(1.0))
    mu = intercept_group[group] + slope_group[group] * x
    numpyro.sample("y", dist.Normal(mu, sigma_noise).to_event(1), obs=y)


def parallax(parallax_error, parallax):
    mu_r = numpyro.sample("mu_r", dist.TruncatedNormal(1.0, 2.0, low=0.0))
    ln_std_r = numpyro.sample("ln_std_r", dist.Uniform(-8.0, 0.0))
    std_r = numpyro.deterministic("std_r", jnp.exp(ln_std_r))
    n = parallax_error.shape[0]
    r = numpyro.sample("r", dist.TruncatedNormal(mu_r, std_r, low=0.0).expand([n]).to_event(1))
    numpyro.sample("parallax", dist.Normal(1.0 / r, parallax_error).to_event(1), obs=parallax)


def binaries_rescaled(t, star, rv_err, lnP_center, lnP_scale, rv):
    """The binary-star model with lnP = lnP_center + lnP_scale * eps (constant Jacobian).

    Plain NumPyro cannot adapt to lnP posterior sds of ~1e-6 (see the foundation
    issue), so the reference rescales lnP by hand with a per-star Fisher-information
    scale; the posterior is unchanged by this affine map.
    """
    mu = numpyro.sample("mu", dist.Uniform(1.0, 10.0))
    lnsigma = numpyro.sample("lnsigma", dist.Uniform(-2.0, 3.0))
    n = lnP_center.shape[0]
    eps = numpyro.sample("eps", dist.ImproperUniform(dist.constraints.real, (), (n,)))
    lnP = numpyro.deterministic("lnP", lnP_center + lnP_scale * eps)
    numpyro.factor("lnP_prior", dist.Normal(mu, jnp.exp(lnsigma)).log_prob(lnP).sum())
    a = numpyro.sample("a", dist.Normal(0.0, 100.0).expand([n]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 100.0).expand([n]).to_event(1))
    v0 = numpyro.sample("v0", dist.Normal(0.0, 150.0).expand([n]).to_event(1))
    P = jnp.exp(lnP)[star]
    phase = 2 * jnp.pi * t / P
    model_rv = a[star] * jnp.cos(phase) + b[star] * jnp.sin(phase) + v0[star]
    numpyro.sample("rv", dist.Normal(model_rv, rv_err).to_event(1), obs=rv)


def fisher_lnP_scale(t, star, rv_err, lnP, a, b):
    """1/sqrt(Fisher information) of each star's lnP at fixed a, b (numpy, independent)."""
    P = np.exp(lnP)[star]
    phase = 2 * np.pi * t / P
    # d rv / d lnP = (2 pi t / P) (a sin(phase) - b cos(phase))
    derivative = (2 * np.pi * t / P) * (a[star] * np.sin(phase) - b[star] * np.cos(phase))
    information = np.bincount(star, weights=(derivative / rv_err) ** 2)
    return 1.0 / np.sqrt(information)
