"""For every family: the formula model's log density equals the same model
written by hand in NumPyro, at random parameter values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer.util import log_density

import hierax as hx

RNG = np.random.default_rng(7)
N, G = 40, 5
X = RNG.normal(size=N)
GROUP = np.repeat(np.arange(G), N // G)
TRIALS = RNG.integers(5, 15, size=N)

RESPONSES = {
    "gaussian": RNG.normal(size=N),
    "student_t": RNG.standard_t(4, size=N),
    "bernoulli": RNG.integers(0, 2, size=N),
    "binomial": RNG.binomial(TRIALS, 0.4),
    "poisson": RNG.poisson(3.0, size=N),
    "negative_binomial": RNG.poisson(3.0, size=N),
    "gamma": RNG.gamma(2.0, 1.5, size=N),
    "lognormal": RNG.lognormal(0.3, 0.5, size=N),
    "beta": RNG.beta(2.0, 3.0, size=N),
}
AUX_PRIORS = {
    "gaussian": {"sigma": "Exponential(1)"},
    "student_t": {"sigma": "Exponential(1)", "nu": "Gamma(2, 0.1)"},
    "negative_binomial": {"phi": "Gamma(2, 0.1)"},
    "gamma": {"shape": "Gamma(2, 0.1)"},
    "lognormal": {"sigma": "Exponential(1)"},
    "beta": {"phi": "Gamma(2, 0.1)"},
}


def hand_written(family: str, link: str, x, g, n_groups, y, trials=None):
    intercept = numpyro.sample("Intercept", dist.Normal(0.0, 5.0))
    slope = numpyro.sample("b_x", dist.Normal(0.0, 2.0))
    sd = numpyro.sample("sd_g", dist.HalfNormal(1.0))
    with numpyro.plate("g", n_groups):
        z = numpyro.sample("z_g", dist.Normal(0.0, 1.0))
    eta = intercept + slope * x + sd * z[g]
    aux = {}
    if family in ("gaussian", "student_t", "lognormal"):
        aux["sigma"] = numpyro.sample("sigma", dist.Exponential(1.0))
    if family == "student_t":
        aux["nu"] = numpyro.sample("nu", dist.Gamma(2.0, 0.1))
    if family in ("negative_binomial", "beta"):
        aux["phi"] = numpyro.sample("phi", dist.Gamma(2.0, 0.1))
    if family == "gamma":
        aux["shape"] = numpyro.sample("shape", dist.Gamma(2.0, 0.1))
    inverse = {
        "identity": lambda e: e,
        "log": jnp.exp,
        "logit": jax.nn.sigmoid,
        "probit": jax.scipy.stats.norm.cdf,
    }[link]
    mu = inverse(eta)
    likelihood = {
        "gaussian": lambda: dist.Normal(mu, aux.get("sigma")),
        "student_t": lambda: dist.StudentT(aux.get("nu"), mu, aux.get("sigma")),
        "bernoulli": lambda: dist.Bernoulli(probs=mu),
        "binomial": lambda: dist.Binomial(trials, probs=mu),
        "poisson": lambda: dist.Poisson(mu),
        "negative_binomial": lambda: dist.NegativeBinomial2(mu, aux.get("phi")),
        "gamma": lambda: dist.Gamma(aux.get("shape"), aux.get("shape") / mu),
        "lognormal": lambda: dist.LogNormal(mu, aux.get("sigma")),
        "beta": lambda: dist.Beta(mu * aux.get("phi"), (1 - mu) * aux.get("phi")),
    }[family]()
    with numpyro.plate("obs", x.shape[0]):
        numpyro.sample("y", likelihood, obs=y)


CASES = [(family, None) for family in RESPONSES] + [
    ("bernoulli", "probit"),
    ("binomial", "probit"),
    ("gaussian", "log"),
]


@pytest.mark.parametrize(("family", "link"), CASES)
def test_log_density_matches_hand_written_numpyro(family: str, link: str | None) -> None:
    y = RESPONSES[family]
    if family == "gaussian" and link == "log":
        y = np.abs(y) + 0.5
    table = pd.DataFrame({"y": y, "x": X, "g": GROUP, "n": TRIALS})
    lhs = "y | trials(n)" if family == "binomial" else "y"
    priors = {"Intercept": "Normal(0, 5)", "b_x": "Normal(0, 2)", "sd_g": "HalfNormal(1)"}
    priors.update(AUX_PRIORS.get(family, {}))
    model = hx.Model(
        f"{lhs} ~ 1 + x + (1 | g)", table, family=family, link=link, priors=priors, centered=False
    )
    used_link = model.link.name
    data = model.arrays()
    rng = np.random.default_rng(3)
    for _ in range(3):
        params = {
            "Intercept": rng.normal(0, 0.5),
            "b_x": rng.normal(0, 0.5),
            "sd_g": rng.uniform(0.2, 1.5),
            "z_g": rng.normal(size=G),
        }
        for name in AUX_PRIORS.get(family, {}):
            params[name] = rng.uniform(1.0, 5.0)
        ours, _ = log_density(model.model_fn, (), data, params)
        theirs, _ = log_density(
            hand_written,
            (family, used_link, X, GROUP, G, y, TRIALS if family == "binomial" else None),
            {},
            params,
        )
        np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-6)
        assert np.isfinite(float(ours))
