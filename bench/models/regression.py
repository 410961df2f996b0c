"""Seed 002 (NumPyro tutorial): varying intercepts and slopes, uncorrelated.

response ~ Normal(Intercept + r_group[g, 0] + (b_predictor + r_group[g, 1]) * x, sigma)
Intercept, b_predictor ~ Normal(0, 5); sd_group[0], sd_group[1] ~ HalfCauchy(2);
r_group[:, k] ~ Normal(0, sd_group[k]) (centered offsets, as the tutorial's
centered model); sigma ~ Exponential(1). Same priors as
hierax/examples/regression.py; written as offsets around the population
values, the formula ``response ~ predictor + (predictor || group)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._common import codes, pick, seed_table

NAME = "regression"
TITLE = "varying intercepts and slopes: response ~ predictor + (predictor || group)"
FORMULA = "response ~ predictor + (predictor || group)"
PRIORS = {
    "Intercept": "Normal(0, 5)",
    "b": "Normal(0, 5)",
    "sd": "HalfCauchy(2)",
    "sigma": "Exponential(1)",
}
REPORTED = ["Intercept", "b_predictor", "sd_group", "sigma", "r_group"]


def load() -> pd.DataFrame:
    return seed_table("regression")


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx

    return hx.Model(FORMULA, table, priors=PRIORS, **kwargs)


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    return None


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    group, groups = codes(table["group"])
    return {
        "x": table["predictor"].to_numpy(float),
        "group": group,
        "n_group": len(groups),
        "y": table["response"].to_numpy(float),
    }


def numpyro_model(x, group, n_group, y=None):  # type: ignore[no-untyped-def]
    import numpyro
    import numpyro.distributions as dist

    intercept = numpyro.sample("Intercept", dist.Normal(0.0, 5.0))
    slope = numpyro.sample("b_predictor", dist.Normal(0.0, 5.0))
    sd = numpyro.sample("sd_group", dist.HalfCauchy(2.0).expand([2]).to_event(1))
    with numpyro.plate("group", n_group):
        r = numpyro.sample("r_group", dist.Normal(0.0, sd).to_event(1))  # (group, 2)
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    mean = intercept + r[group, 0] + (slope + r[group, 1]) * x
    with numpyro.plate("obs", x.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        intercept = pm.Normal("Intercept", 0.0, 5.0)
        slope = pm.Normal("b_predictor", 0.0, 5.0)
        sd = pm.HalfCauchy("sd_group", 2.0, shape=2)
        r = pm.Normal("r_group", 0.0, sd, shape=(d["n_group"], 2))
        sigma = pm.Exponential("sigma", 1.0)
        g = d["group"]
        pm.Normal("y", intercept + r[g, 0] + (slope + r[g, 1]) * d["x"], sigma, observed=d["y"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> G;
  array[N] int<lower=1, upper=G> group;
  vector[N] x;
  vector[N] y;
}
parameters {
  real Intercept;
  real b_predictor;
  vector<lower=0>[2] sd_group;
  matrix[G, 2] r_group;
  real<lower=0> sigma;
}
model {
  Intercept ~ normal(0, 5);
  b_predictor ~ normal(0, 5);
  sd_group ~ cauchy(0, 2);
  r_group[:, 1] ~ normal(0, sd_group[1]);
  r_group[:, 2] ~ normal(0, sd_group[2]);
  sigma ~ exponential(1);
  y ~ normal(Intercept + r_group[group, 1] + (b_predictor + r_group[group, 2]) .* x, sigma);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "G": d["n_group"],
        "group": (d["group"] + 1).tolist(),
        "x": d["x"].tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
