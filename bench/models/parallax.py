"""Seed 003 part 1: a star cluster's distance from 256 noisy parallaxes.

parallax ~ Normal(1 / r, parallax_error); r ~ TruncatedNormal(mu_r, exp(ln_std_r), low=0)
per star (centered latent distances); mu_r ~ TruncatedNormal(1, 2, low=0);
ln_std_r ~ Uniform(-8, 0). Every tool starts at the tutorial's start
(all distances at the inverse-variance weighted mean parallax's inverse).
hierax: the nonlinear formula of hierax/examples/parallax_nl.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._common import pick, seed_table

NAME = "parallax"
TITLE = "star cluster: parallax | se(parallax_error) ~ 1 / r, r latent TruncatedNormal per star"
REPORTED = ["mu_r", "ln_std_r", "r"]


def load() -> pd.DataFrame:
    return seed_table("parallax")


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx
    from hierax.examples import parallax_nl as nl

    return hx.Model(nl.FORMULA, table, params=nl.PARAMS, priors=nl.PRIORS, **kwargs)


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    from hierax.examples import parallax

    return {k: np.asarray(v, dtype=float) for k, v in parallax.initial_values(table).items()}


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {"init": init_values(table)}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    return {
        "err": table["parallax_error"].to_numpy(float),
        "plx": table["parallax"].to_numpy(float),
    }


def numpyro_model(err, plx=None):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    mu_r = numpyro.sample("mu_r", dist.TruncatedNormal(1.0, 2.0, low=0.0))
    ln_std_r = numpyro.sample("ln_std_r", dist.Uniform(-8.0, 0.0))
    with numpyro.plate("star", err.shape[0]):
        r = numpyro.sample("r", dist.TruncatedNormal(mu_r, jnp.exp(ln_std_r), low=0.0))
        numpyro.sample("parallax", dist.Normal(1.0 / r, err), obs=plx)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        mu_r = pm.TruncatedNormal("mu_r", 1.0, 2.0, lower=0.0)
        ln_std_r = pm.Uniform("ln_std_r", -8.0, 0.0)
        r = pm.TruncatedNormal("r", mu_r, pm.math.exp(ln_std_r), lower=0.0, shape=len(d["err"]))
        pm.Normal("parallax", 1.0 / r, d["err"], observed=d["plx"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  vector[N] plx;
  vector<lower=0>[N] err;
}
parameters {
  real<lower=0> mu_r;
  real<lower=-8, upper=0> ln_std_r;
  vector<lower=0>[N] r;
}
model {
  real std_r = exp(ln_std_r);
  mu_r ~ normal(1, 2);                      // truncated at 0 by the bound: a constant
  // ln_std_r ~ uniform(-8, 0): flat within the bounds
  r ~ normal(mu_r, std_r);
  target += -N * normal_lccdf(0 | mu_r, std_r);   // truncation at 0 depends on mu_r, std_r
  plx ~ normal(1 ./ r, err);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {"N": len(d["plx"]), "plx": d["plx"].tolist(), "err": d["err"].tolist()}


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
