"""Synthetic sleepstudy (like lme4's): 18 subjects x 10 days of sleep deprivation.

Reaction ~ Days + (Days | Subject): correlated varying intercepts and slopes.
Data: generated once with a fixed seed from lme4's REML estimates
(fixed 251.4, 10.47; sds 24.7, 5.9; correlation 0.07; sigma 25.6) and written
to bench/data/sleepstudy.csv (truth in sleepstudy.json).

Priors: Intercept ~ Normal(250, 100); b_Days ~ Normal(0, 20);
sd_Subject[k] ~ HalfNormal(50); correlation ~ LKJ(2) (Cholesky);
r_Subject ~ MultivariateNormal(0, diag(sd) L L' diag(sd)) (centered);
sigma ~ HalfNormal(50). PyMC/nutpie write the same prior with
LKJCholeskyCov(eta=2, sd_dist=HalfNormal(50)).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ._common import DATA, codes, pick

NAME = "sleepstudy"
TITLE = "synthetic sleepstudy: Reaction ~ Days + (Days | Subject), 18 subjects x 10 days"
FORMULA = "Reaction ~ Days + (Days | Subject)"
PRIORS = {
    "Intercept": "Normal(250, 100)",
    "b_Days": "Normal(0, 20)",
    "sd": "HalfNormal(50)",
    "cor": "LKJ(2)",
    "sigma": "HalfNormal(50)",
}
REPORTED = ["Intercept", "b_Days", "sd_Subject", "cor_Subject", "sigma", "r_Subject"]
TRUTH = {
    "Intercept": 251.405,
    "b_Days": 10.467,
    "sd_Subject": [24.741, 5.922],
    "cor_Subject": 0.066,
    "sigma": 25.592,
}
SEED = 20240607


def generate() -> tuple[pd.DataFrame, dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    n_subjects, days = 18, np.arange(10)
    sd = np.array(TRUTH["sd_Subject"])
    rho = TRUTH["cor_Subject"]
    cov = np.diag(sd) @ np.array([[1.0, rho], [rho, 1.0]]) @ np.diag(sd)
    effects = rng.multivariate_normal(np.zeros(2), cov, size=n_subjects)
    subjects = [
        str(s)
        for s in (
            308,
            309,
            310,
            330,
            331,
            332,
            333,
            334,
            335,
            337,
            349,
            350,
            351,
            352,
            369,
            370,
            371,
            372,
        )
    ]
    rows = []
    for j, subject in enumerate(subjects):
        mean = TRUTH["Intercept"] + effects[j, 0] + (TRUTH["b_Days"] + effects[j, 1]) * days
        reaction = mean + rng.normal(0.0, TRUTH["sigma"], size=days.size)
        rows += [
            {"Reaction": round(float(r), 4), "Days": int(d), "Subject": subject}
            for r, d in zip(reaction, days, strict=True)
        ]
    table = pd.DataFrame(rows)
    truth = dict(TRUTH, seed=SEED, r_Subject=effects.round(4).tolist(), subjects=subjects)
    return table, truth


def load() -> pd.DataFrame:
    path = DATA / "sleepstudy.csv"
    if not path.exists():
        table, truth = generate()
        DATA.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        (DATA / "sleepstudy.json").write_text(json.dumps(truth, indent=1) + "\n")
    return pd.read_csv(path, dtype={"Subject": str})


def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx

    return hx.Model(FORMULA, table, priors=PRIORS, **kwargs)


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {}


def _reported(raw: dict[str, np.ndarray], cor_key: str) -> dict[str, np.ndarray]:
    out = pick(raw, [n for n in REPORTED if n != "cor_Subject"])
    if cor_key in raw:
        out["cor_Subject"] = np.asarray(raw[cor_key], dtype=float)[..., 0, 1]
    return {k: out[k] for k in REPORTED if k in out}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return _reported(raw, "cor_Subject")


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    return None


def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    subject, subjects = codes(table["Subject"])
    return {
        "days": table["Days"].to_numpy(float),
        "subject": subject,
        "n_subject": len(subjects),
        "y": table["Reaction"].to_numpy(float),
    }


def numpyro_model(days, subject, n_subject, y=None):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    intercept = numpyro.sample("Intercept", dist.Normal(250.0, 100.0))
    slope = numpyro.sample("b_Days", dist.Normal(0.0, 20.0))
    sd = numpyro.sample("sd_Subject", dist.HalfNormal(50.0).expand([2]).to_event(1))
    chol = numpyro.sample("L_cor_Subject", dist.LKJCholesky(2, 2.0))
    numpyro.deterministic("cor_Subject", chol @ chol.T)
    with numpyro.plate("subject", n_subject):
        r = numpyro.sample(
            "r_Subject", dist.MultivariateNormal(jnp.zeros(2), scale_tril=sd[:, None] * chol)
        )
    sigma = numpyro.sample("sigma", dist.HalfNormal(50.0))
    mean = intercept + r[subject, 0] + (slope + r[subject, 1]) * days
    with numpyro.plate("obs", days.shape[0]):
        numpyro.sample("y", dist.Normal(mean, sigma), obs=y)


def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    s = d["subject"]
    with pm.Model() as model:
        intercept = pm.Normal("Intercept", 250.0, 100.0)
        slope = pm.Normal("b_Days", 0.0, 20.0)
        chol, corr, stds = pm.LKJCholeskyCov(
            "chol", n=2, eta=2.0, sd_dist=pm.HalfNormal.dist(50.0, shape=2), compute_corr=True
        )
        pm.Deterministic("sd_Subject", stds)
        pm.Deterministic("cor_Subject", corr)
        r = pm.MvNormal("r_Subject", mu=np.zeros(2), chol=chol, shape=(d["n_subject"], 2))
        sigma = pm.HalfNormal("sigma", 50.0)
        mean = intercept + r[s, 0] + (slope + r[s, 1]) * d["days"]
        pm.Normal("y", mean, sigma, observed=d["y"])
    return model


STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> J;
  array[N] int<lower=1, upper=J> subject;
  vector[N] days;
  vector[N] y;
}
parameters {
  real Intercept;
  real b_Days;
  vector<lower=0>[2] sd_Subject;
  cholesky_factor_corr[2] L_cor;
  matrix[J, 2] r_Subject;
  real<lower=0> sigma;
}
model {
  matrix[2, 2] L = diag_pre_multiply(sd_Subject, L_cor);
  Intercept ~ normal(250, 100);
  b_Days ~ normal(0, 20);
  sd_Subject ~ normal(0, 50);
  L_cor ~ lkj_corr_cholesky(2);
  for (j in 1:J) r_Subject[j] ~ multi_normal_cholesky(rep_row_vector(0, 2), L);
  sigma ~ normal(0, 50);
  y ~ normal(Intercept + r_Subject[subject, 1] + (b_Days + r_Subject[subject, 2]) .* days, sigma);
}
generated quantities {
  real cor = multiply_lower_tri_self_transpose(L_cor)[1, 2];
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "J": d["n_subject"],
        "subject": (d["subject"] + 1).tolist(),
        "days": d["days"].tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = _reported(raw, "cor_Subject")
    if "cor" in raw and "cor_Subject" not in out:  # Stan's generated quantity
        out["cor_Subject"] = np.asarray(raw["cor"], dtype=float)
    return {k: out[k] for k in REPORTED if k in out}
