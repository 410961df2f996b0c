"""Seed 003 part 2: the log-period distribution of 14 binary stars.

rv ~ Normal(a cos(2 pi t / P) + b sin(2 pi t / P) + v0, rv_err) per star, P = exp(lnP);
lnP ~ Normal(mu, exp(lnsigma)) (centered); mu ~ Uniform(1, 10);
lnsigma ~ Uniform(-2, 3); a, b ~ Normal(0, 100); v0 ~ Normal(0, 150).
Every tool starts every chain at each star's periodogram peak (the tutorial's start).
hierax: the nonlinear formula of hierax/examples/binaries_nl.py, whose
``sd_lnP_star ~ LogUniform(e^-2, e^3)`` is ``lnsigma ~ Uniform(-2, 3)`` on the sd.
Reported: mu, lnsigma, lnP, a, b, v0 (hierax's lnP, log sd_lnP_star, lnP_star,
r_a_star, r_b_star, r_v0_star).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._common import codes, pick, seed_table

NAME = "binaries"
TITLE = "14 binary stars: rv | se(rv_err) ~ a cos(2 pi t / exp(lnP)) + b sin(...) + v0, per-star parameters"
REPORTED = ["mu", "lnsigma", "lnP", "a", "b", "v0"]


def load() -> pd.DataFrame:
    return seed_table("binaries")


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx
    from hierax.examples import binaries_nl as nl

    return hx.Model(
        nl.FORMULA, table, params=nl.PARAMS, priors=nl.PRIORS, centered=nl.CENTERED, **kwargs
    )


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    from hierax.examples import binaries_nl as nl

    return {"init": nl.initial_values(table)}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    names = {"mu": "lnP", "lnP": "lnP_star", "a": "r_a_star", "b": "r_b_star", "v0": "r_v0_star"}
    for ours, theirs in names.items():
        if theirs in raw:
            out[ours] = np.asarray(raw[theirs], dtype=float)
    if "sd_lnP_star" in raw:
        out["lnsigma"] = np.log(np.asarray(raw["sd_lnP_star"], dtype=float))
    return {k: out[k] for k in REPORTED if k in out}


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    from hierax.examples import binaries

    return {k: np.asarray(v, dtype=float) for k, v in binaries.initial_values(table).items()}


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    star, stars = codes(table["star"])
    return {
        "t": table["t"].to_numpy(float),
        "star": star,
        "n_star": len(stars),
        "rv_err": table["rv_err"].to_numpy(float),
        "rv": table["rv"].to_numpy(float),
    }


def numpyro_model(t, star, n_star, rv_err, rv=None):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Uniform(1.0, 10.0))
    lnsigma = numpyro.sample("lnsigma", dist.Uniform(-2.0, 3.0))
    with numpyro.plate("star", n_star):
        lnP = numpyro.sample("lnP", dist.Normal(mu, jnp.exp(lnsigma)))
        a = numpyro.sample("a", dist.Normal(0.0, 100.0))
        b = numpyro.sample("b", dist.Normal(0.0, 100.0))
        v0 = numpyro.sample("v0", dist.Normal(0.0, 150.0))
    w = 2 * np.pi * t / jnp.exp(lnP)[star]
    mean = a[star] * jnp.cos(w) + b[star] * jnp.sin(w) + v0[star]
    with numpyro.plate("obs", t.shape[0]):
        numpyro.sample("rv", dist.Normal(mean, rv_err), obs=rv)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    s = d["star"]
    with pm.Model() as model:
        mu = pm.Uniform("mu", 1.0, 10.0)
        lnsigma = pm.Uniform("lnsigma", -2.0, 3.0)
        lnP = pm.Normal("lnP", mu, pm.math.exp(lnsigma), shape=d["n_star"])
        a = pm.Normal("a", 0.0, 100.0, shape=d["n_star"])
        b = pm.Normal("b", 0.0, 100.0, shape=d["n_star"])
        v0 = pm.Normal("v0", 0.0, 150.0, shape=d["n_star"])
        w = 2 * np.pi * d["t"] / pm.math.exp(lnP)[s]
        mean = a[s] * pm.math.cos(w) + b[s] * pm.math.sin(w) + v0[s]
        pm.Normal("rv", mean, d["rv_err"], observed=d["rv"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> S;
  array[N] int<lower=1, upper=S> star;
  vector[N] t;
  vector[N] rv;
  vector<lower=0>[N] rv_err;
}
parameters {
  real<lower=1, upper=10> mu;
  real<lower=-2, upper=3> lnsigma;
  vector[S] lnP;
  vector[S] a;
  vector[S] b;
  vector[S] v0;
}
model {
  lnP ~ normal(mu, exp(lnsigma));
  a ~ normal(0, 100);
  b ~ normal(0, 100);
  v0 ~ normal(0, 150);
  {
    vector[N] w = 2 * pi() * t ./ exp(lnP[star]);
    rv ~ normal(a[star] .* cos(w) + b[star] .* sin(w) + v0[star], rv_err);
  }
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["rv"]),
        "S": d["n_star"],
        "star": (d["star"] + 1).tolist(),
        "t": d["t"].tolist(),
        "rv": d["rv"].tolist(),
        "rv_err": d["rv_err"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
