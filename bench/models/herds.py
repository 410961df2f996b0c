"""Synthetic herd disease (like lme4's cbpp): 15 herds, 4 periods, binomial incidence.

incidence ~ Binomial(size, inv_logit(Intercept + b_period[period] + r_herd[herd]))
with a varying herd intercept. Data: generated once with a fixed seed (herd
sizes 5-35 animals, values near lme4's cbpp fit: Intercept -1.4, period
effects -1.0, -1.1, -1.6 against period 1, sd_herd 0.64) and written to
bench/data/herds.csv (truth in herds.json).

Priors: Intercept ~ Normal(0, 2.5); b_period[*] ~ Normal(0, 2.5);
sd_herd ~ HalfNormal(1). The peers use the non-centered form
r_herd = sd_herd * z_herd, z ~ Normal(0, 1).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ._common import DATA, codes, pick

NAME = "herds"
TITLE = "herd disease: incidence | trials(size) ~ period + (1 | herd), binomial, 15 herds"
FORMULA = "incidence | trials(size) ~ period + (1 | herd)"
PRIORS = {"Intercept": "Normal(0, 2.5)", "b": "Normal(0, 2.5)", "sd": "HalfNormal(1)"}
PERIODS = ["p1", "p2", "p3", "p4"]
REPORTED = ["Intercept", "b_period", "sd_herd", "r_herd"]
TRUTH = {"Intercept": -1.4, "b_period": [-1.0, -1.1, -1.6], "sd_herd": 0.64}
SEED = 20061
N_HERDS = 15


def generate() -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    effects = rng.normal(0.0, TRUTH["sd_herd"], N_HERDS)
    rows = []
    for herd in range(N_HERDS):
        for p, period in enumerate(PERIODS):
            if herd == 7 and p == 3:  # as in cbpp, one herd misses a period (56 rows)
                continue
            size = int(rng.integers(5, 36))
            eta = TRUTH["Intercept"] + ([0.0] + TRUTH["b_period"])[p] + effects[herd]
            incidence = int(rng.binomial(size, 1.0 / (1.0 + np.exp(-eta))))
            rows.append((f"H{herd + 1:02d}", period, size, incidence))
    table = pd.DataFrame(rows, columns=["herd", "period", "size", "incidence"])
    truth = dict(TRUTH, seed=SEED, r_herd=effects.round(5).tolist())
    return table, truth


def load() -> pd.DataFrame:
    path = DATA / "herds.csv"
    if not path.exists():
        table, truth = generate()
        DATA.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        (DATA / "herds.json").write_text(json.dumps(truth, indent=1) + "\n")
    return pd.read_csv(path, dtype={"herd": str, "period": str})


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx

    return hx.Model(FORMULA, table, family="binomial", priors=PRIORS, **kwargs)


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    return None


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    herd, herds = codes(table["herd"])
    period = table["period"].map({p: i for i, p in enumerate(PERIODS)}).to_numpy(np.int64)
    dummies = np.stack([(period == i).astype(float) for i in (1, 2, 3)], axis=1)
    return {
        "period": dummies,
        "herd": herd,
        "n_herd": len(herds),
        "size": table["size"].to_numpy(np.int64),
        "y": table["incidence"].to_numpy(np.int64),
    }


def numpyro_model(period, herd, n_herd, size, y=None):  # type: ignore[no-untyped-def]
    import numpyro
    import numpyro.distributions as dist

    intercept = numpyro.sample("Intercept", dist.Normal(0.0, 2.5))
    b = numpyro.sample("b_period", dist.Normal(0.0, 2.5).expand([3]).to_event(1))
    sd = numpyro.sample("sd_herd", dist.HalfNormal(1.0))
    with numpyro.plate("herds", n_herd):
        z = numpyro.sample("z_herd", dist.Normal(0.0, 1.0))
    r = numpyro.deterministic("r_herd", sd * z)
    eta = intercept + period @ b + r[herd]
    with numpyro.plate("obs", herd.shape[0]):
        numpyro.sample("y", dist.BinomialLogits(eta, total_count=size), obs=y)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        intercept = pm.Normal("Intercept", 0.0, 2.5)
        b = pm.Normal("b_period", 0.0, 2.5, shape=3)
        sd = pm.HalfNormal("sd_herd", 1.0)
        z = pm.Normal("z_herd", 0.0, 1.0, shape=d["n_herd"])
        r = pm.Deterministic("r_herd", sd * z)
        eta = intercept + pm.math.dot(d["period"], b) + r[d["herd"]]
        pm.Binomial("y", n=d["size"], logit_p=eta, observed=d["y"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> J;
  array[N] int<lower=1, upper=J> herd;
  matrix[N, 3] period;
  array[N] int<lower=0> size;
  array[N] int<lower=0> y;
}
parameters {
  real Intercept;
  vector[3] b_period;
  real<lower=0> sd_herd;
  vector[J] z_herd;
}
transformed parameters {
  vector[J] r_herd = sd_herd * z_herd;
}
model {
  Intercept ~ normal(0, 2.5);
  b_period ~ normal(0, 2.5);
  sd_herd ~ normal(0, 1);
  z_herd ~ std_normal();
  y ~ binomial_logit(size, Intercept + period * b_period + r_herd[herd]);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "J": d["n_herd"],
        "herd": (d["herd"] + 1).tolist(),
        "period": d["period"].tolist(),
        "size": d["size"].tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
