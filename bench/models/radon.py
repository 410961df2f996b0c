"""Synthetic radon (like Gelman & Hill's Minnesota radon): 85 counties, ~919 houses.

log_radon ~ Normal(Intercept + b_first_floor * first_floor
                   + b_log_uranium * log_uranium[county] + r_county[county], sigma)
with a county-level covariate (log uranium) and varying county intercepts.
Data: generated once with a fixed seed (county sizes from a skewed
distribution, 1 to ~100 houses; values near Gelman & Hill's estimates:
Intercept 1.46, b_log_uranium 0.72, b_first_floor -0.67, sd_county 0.16,
sigma 0.76) and written to bench/data/radon.csv (truth in radon.json).

Priors: Intercept, b_first_floor, b_log_uranium ~ Normal(0, 10);
sd_county ~ HalfNormal(1); sigma ~ HalfNormal(1). The peers use the
non-centered form r_county = sd_county * z_county, z ~ Normal(0, 1) (many
counties have 1-3 houses, where non-centered is the usual choice).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ._common import DATA, codes, pick

NAME = "radon"
TITLE = "synthetic radon: log_radon ~ first_floor + log_uranium + (1 | county), 85 counties"
FORMULA = "log_radon ~ first_floor + log_uranium + (1 | county)"
PRIORS = {
    "Intercept": "Normal(0, 10)",
    "b": "Normal(0, 10)",
    "sd": "HalfNormal(1)",
    "sigma": "HalfNormal(1)",
}
REPORTED = ["Intercept", "b_first_floor", "b_log_uranium", "sd_county", "sigma", "r_county"]
TRUTH = {
    "Intercept": 1.46,
    "b_first_floor": -0.67,
    "b_log_uranium": 0.72,
    "sd_county": 0.16,
    "sigma": 0.76,
}
SEED = 19981
N_COUNTIES, N_HOUSES = 85, 919


def generate() -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    weights = rng.lognormal(0.0, 1.2, N_COUNTIES)
    sizes = 1 + rng.multinomial(N_HOUSES - N_COUNTIES, weights / weights.sum())
    log_uranium = rng.normal(-0.1, 0.35, N_COUNTIES)
    effects = rng.normal(0.0, TRUTH["sd_county"], N_COUNTIES)
    county = np.repeat(np.arange(N_COUNTIES), sizes)
    first_floor = (rng.uniform(size=county.size) < 0.17).astype(int)
    mean = (
        TRUTH["Intercept"]
        + TRUTH["b_first_floor"] * first_floor
        + TRUTH["b_log_uranium"] * log_uranium[county]
        + effects[county]
    )
    y = mean + rng.normal(0.0, TRUTH["sigma"], county.size)
    names = [f"C{j:02d}" for j in range(N_COUNTIES)]
    table = pd.DataFrame(
        {
            "log_radon": y.round(5),
            "first_floor": first_floor,
            "log_uranium": log_uranium[county].round(5),
            "county": [names[j] for j in county],
        }
    )
    truth = dict(TRUTH, seed=SEED, r_county=effects.round(5).tolist(), sizes=sizes.tolist())
    return table, truth


def load() -> pd.DataFrame:
    path = DATA / "radon.csv"
    if not path.exists():
        table, truth = generate()
        DATA.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        (DATA / "radon.json").write_text(json.dumps(truth, indent=1) + "\n")
    return pd.read_csv(path, dtype={"county": str})


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
    county, counties = codes(table["county"])
    return {
        "first_floor": table["first_floor"].to_numpy(float),
        "log_uranium": table["log_uranium"].to_numpy(float),
        "county": county,
        "n_county": len(counties),
        "y": table["log_radon"].to_numpy(float),
    }


def numpyro_model(first_floor, log_uranium, county, n_county, y=None):  # type: ignore[no-untyped-def]
    import numpyro
    import numpyro.distributions as dist

    intercept = numpyro.sample("Intercept", dist.Normal(0.0, 10.0))
    b_floor = numpyro.sample("b_first_floor", dist.Normal(0.0, 10.0))
    b_uranium = numpyro.sample("b_log_uranium", dist.Normal(0.0, 10.0))
    sd = numpyro.sample("sd_county", dist.HalfNormal(1.0))
    with numpyro.plate("county", n_county):
        z = numpyro.sample("z_county", dist.Normal(0.0, 1.0))
    r = numpyro.deterministic("r_county", sd * z)
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    mean = intercept + b_floor * first_floor + b_uranium * log_uranium + r[county]
    with numpyro.plate("obs", county.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        intercept = pm.Normal("Intercept", 0.0, 10.0)
        b_floor = pm.Normal("b_first_floor", 0.0, 10.0)
        b_uranium = pm.Normal("b_log_uranium", 0.0, 10.0)
        sd = pm.HalfNormal("sd_county", 1.0)
        z = pm.Normal("z_county", 0.0, 1.0, shape=d["n_county"])
        r = pm.Deterministic("r_county", sd * z)
        sigma = pm.HalfNormal("sigma", 1.0)
        mean = (
            intercept + b_floor * d["first_floor"] + b_uranium * d["log_uranium"] + r[d["county"]]
        )
        pm.Normal("y", mean, sigma, observed=d["y"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> J;
  array[N] int<lower=1, upper=J> county;
  vector[N] first_floor;
  vector[N] log_uranium;
  vector[N] y;
}
parameters {
  real Intercept;
  real b_first_floor;
  real b_log_uranium;
  real<lower=0> sd_county;
  vector[J] z_county;
  real<lower=0> sigma;
}
transformed parameters {
  vector[J] r_county = sd_county * z_county;
}
model {
  Intercept ~ normal(0, 10);
  b_first_floor ~ normal(0, 10);
  b_log_uranium ~ normal(0, 10);
  sd_county ~ normal(0, 1);
  z_county ~ std_normal();
  sigma ~ normal(0, 1);
  y ~ normal(Intercept + b_first_floor * first_floor + b_log_uranium * log_uranium
             + r_county[county], sigma);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "J": d["n_county"],
        "county": (d["county"] + 1).tolist(),
        "first_floor": d["first_floor"].tolist(),
        "log_uranium": d["log_uranium"].tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
