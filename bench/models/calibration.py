"""Seed 000 (calibr8 + PyMC): linear calibration with a batch effect on the
intercept, observing a first-order reaction P(t) = S0 (1 - exp(-k t)).

readout ~ Normal(intercept_batch[batch] + slope * S0 * (1 - exp(-k * time)), sigma)
k ~ HalfNormal(0.1); S0 ~ LogNormal(log 5, 0.05); intercept ~ Normal(0.3, 0.2);
intercept_batch ~ Normal(intercept, 0.1) (batch sd fixed, centered);
slope ~ Normal(0.5, 0.5); sigma ~ LogNormal(log 0.1, 0.1).
hierax: the nonlinear formula of hierax/examples/calibration_nl.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._common import codes, pick, seed_table

NAME = "calibration"
TITLE = "calibration: readout ~ intercept + slope * S0 * (1 - exp(-k * time)), intercept ~ 1 + (1 | batch)"
REPORTED = ["k", "S0", "intercept", "slope", "sigma", "intercept_batch"]


def load() -> pd.DataFrame:
    return seed_table("calibration")


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx
    from hierax.examples import calibration_nl as nl

    return hx.Model(
        nl.FORMULA,
        table,
        params=nl.PARAMS,
        priors=nl.PRIORS,
        centered={"intercept_batch": True},
        **kwargs,
    )


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    return None


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    batch, batches = codes(table["batch"])
    return {
        "time": table["time"].to_numpy(float),
        "batch": batch,
        "n_batch": len(batches),
        "y": table["readout"].to_numpy(float),
    }


def numpyro_model(time, batch, n_batch, y=None):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    k = numpyro.sample("k", dist.HalfNormal(0.1))
    s0 = numpyro.sample("S0", dist.LogNormal(np.log(5.0), 0.05))
    intercept = numpyro.sample("intercept", dist.Normal(0.3, 0.2))
    with numpyro.plate("batch", n_batch):
        ib = numpyro.sample("intercept_batch", dist.Normal(intercept, 0.1))
    slope = numpyro.sample("slope", dist.Normal(0.5, 0.5))
    sigma = numpyro.sample("sigma", dist.LogNormal(np.log(0.1), 0.1))
    mean = ib[batch] + slope * s0 * (1.0 - jnp.exp(-k * time))
    with numpyro.plate("obs", time.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        k = pm.HalfNormal("k", 0.1)
        s0 = pm.LogNormal("S0", np.log(5.0), 0.05)
        intercept = pm.Normal("intercept", 0.3, 0.2)
        ib = pm.Normal("intercept_batch", intercept, 0.1, shape=d["n_batch"])
        slope = pm.Normal("slope", 0.5, 0.5)
        sigma = pm.LogNormal("sigma", np.log(0.1), 0.1)
        mean = ib[d["batch"]] + slope * s0 * (1.0 - pm.math.exp(-k * d["time"]))
        pm.Normal("y", mean, sigma, observed=d["y"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> B;
  array[N] int<lower=1, upper=B> batch;
  vector[N] time;
  vector[N] y;
}
parameters {
  real<lower=0> k;
  real<lower=0> S0;
  real intercept;
  vector[B] intercept_batch;
  real slope;
  real<lower=0> sigma;
}
model {
  k ~ normal(0, 0.1);
  S0 ~ lognormal(log(5), 0.05);
  intercept ~ normal(0.3, 0.2);
  intercept_batch ~ normal(intercept, 0.1);
  slope ~ normal(0.5, 0.5);
  sigma ~ lognormal(log(0.1), 0.1);
  y ~ normal(intercept_batch[batch] + slope * S0 * (1 - exp(-k * time)), sigma);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "B": d["n_batch"],
        "batch": (d["batch"] + 1).tolist(),
        "time": d["time"].tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
