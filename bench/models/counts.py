"""Synthetic cell counts: a negative-binomial model with a varying plate intercept.

count ~ NegativeBinomial2(exp(Intercept + b_treated * treated + b_dose * dose + r_plate[plate]), phi)
Data: generated once with a fixed seed (80 plates of 12 wells, 960 rows;
Intercept 2.0, b_treated -0.5, b_dose 0.3, sd_plate 0.4, phi 6) and written to
bench/data/counts.csv (truth in counts.json).

Priors: Intercept, b_treated, b_dose ~ Normal(0, 2.5); sd_plate ~ HalfNormal(1);
phi ~ Gamma(2, 0.1). The peers use the non-centered form
r_plate = sd_plate * z_plate, z ~ Normal(0, 1).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ._common import DATA, codes, pick

NAME = "counts"
TITLE = "cell counts: count ~ treated + dose + (1 | plate), negative binomial, 80 plates"
FORMULA = "count ~ treated + dose + (1 | plate)"
PRIORS = {
    "Intercept": "Normal(0, 2.5)",
    "b": "Normal(0, 2.5)",
    "sd": "HalfNormal(1)",
    "phi": "Gamma(2, 0.1)",
}
REPORTED = ["Intercept", "b_treated", "b_dose", "sd_plate", "phi", "r_plate"]
TRUTH = {"Intercept": 2.0, "b_treated": -0.5, "b_dose": 0.3, "sd_plate": 0.4, "phi": 6.0}
SEED = 31337
N_PLATES, WELLS = 80, 12


def generate() -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    effects = rng.normal(0.0, TRUTH["sd_plate"], N_PLATES)
    plate = np.repeat(np.arange(N_PLATES), WELLS)
    treated = np.tile(np.repeat([0, 1], WELLS // 2), N_PLATES)
    dose = np.round(rng.uniform(-1.0, 1.0, plate.size), 4)
    mean = np.exp(
        TRUTH["Intercept"] + TRUTH["b_treated"] * treated + TRUTH["b_dose"] * dose + effects[plate]
    )
    phi = TRUTH["phi"]
    count = rng.negative_binomial(phi, phi / (phi + mean))
    table = pd.DataFrame(
        {
            "count": count,
            "treated": treated,
            "dose": dose,
            "plate": [f"P{j:02d}" for j in plate],
        }
    )
    truth = dict(TRUTH, seed=SEED, r_plate=effects.round(5).tolist())
    return table, truth


def load() -> pd.DataFrame:
    path = DATA / "counts.csv"
    if not path.exists():
        table, truth = generate()
        DATA.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        (DATA / "counts.json").write_text(json.dumps(truth, indent=1) + "\n")
    return pd.read_csv(path, dtype={"plate": str})


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx

    return hx.Model(FORMULA, table, family="negative_binomial", priors=PRIORS, **kwargs)


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    return None


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    plate, plates = codes(table["plate"])
    return {
        "treated": table["treated"].to_numpy(float),
        "dose": table["dose"].to_numpy(float),
        "plate": plate,
        "n_plate": len(plates),
        "y": table["count"].to_numpy(np.int64),
    }


def numpyro_model(treated, dose, plate, n_plate, y=None):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    intercept = numpyro.sample("Intercept", dist.Normal(0.0, 2.5))
    b_treated = numpyro.sample("b_treated", dist.Normal(0.0, 2.5))
    b_dose = numpyro.sample("b_dose", dist.Normal(0.0, 2.5))
    sd = numpyro.sample("sd_plate", dist.HalfNormal(1.0))
    with numpyro.plate("plates", n_plate):
        z = numpyro.sample("z_plate", dist.Normal(0.0, 1.0))
    r = numpyro.deterministic("r_plate", sd * z)
    phi = numpyro.sample("phi", dist.Gamma(2.0, 0.1))
    mean = jnp.exp(intercept + b_treated * treated + b_dose * dose + r[plate])
    with numpyro.plate("obs", plate.shape[0]):
        numpyro.sample("y", dist.NegativeBinomial2(mean, phi), obs=y)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        intercept = pm.Normal("Intercept", 0.0, 2.5)
        b_treated = pm.Normal("b_treated", 0.0, 2.5)
        b_dose = pm.Normal("b_dose", 0.0, 2.5)
        sd = pm.HalfNormal("sd_plate", 1.0)
        z = pm.Normal("z_plate", 0.0, 1.0, shape=d["n_plate"])
        r = pm.Deterministic("r_plate", sd * z)
        phi = pm.Gamma("phi", alpha=2.0, beta=0.1)
        eta = intercept + b_treated * d["treated"] + b_dose * d["dose"] + r[d["plate"]]
        pm.NegativeBinomial("y", mu=pm.math.exp(eta), alpha=phi, observed=d["y"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> J;
  array[N] int<lower=1, upper=J> plate;
  vector[N] treated;
  vector[N] dose;
  array[N] int<lower=0> y;
}
parameters {
  real Intercept;
  real b_treated;
  real b_dose;
  real<lower=0> sd_plate;
  vector[J] z_plate;
  real<lower=0> phi;
}
transformed parameters {
  vector[J] r_plate = sd_plate * z_plate;
}
model {
  Intercept ~ normal(0, 2.5);
  b_treated ~ normal(0, 2.5);
  b_dose ~ normal(0, 2.5);
  sd_plate ~ normal(0, 1);
  z_plate ~ std_normal();
  phi ~ gamma(2, 0.1);
  y ~ neg_binomial_2_log(Intercept + b_treated * treated + b_dose * dose + r_plate[plate], phi);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "J": d["n_plate"],
        "plate": (d["plate"] + 1).tolist(),
        "treated": d["treated"].tolist(),
        "dose": d["dose"].tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
