"""Seed 001: genes x cell lines, two crossed varying intercepts (centered offsets).

logfc ~ Normal(Intercept + r_gene[gene] + r_cell_line[cell_line], sigma)
Intercept ~ Normal(0, 5); sd_gene, sd_cell_line, sigma ~ Exponential(1);
r_gene ~ Normal(0, sd_gene), r_cell_line ~ Normal(0, sd_cell_line) (centered,
as in hierax/examples/crossed.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._common import codes, pick, seed_table

NAME = "crossed"
TITLE = "genes x cell lines: logfc ~ 1 + (1 | gene) + (1 | cell_line)"
FORMULA = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"
PRIORS = {"Intercept": "Normal(0, 5)", "sd": "Exponential(1)", "sigma": "Exponential(1)"}
REPORTED = ["Intercept", "sd_gene", "sd_cell_line", "sigma", "r_gene", "r_cell_line"]


def load() -> pd.DataFrame:
    return seed_table("crossed")


# ------------------------------------------------------------------ hierax
def hierax_model(table: pd.DataFrame, **kwargs: Any) -> Any:
    import hierax as hx

    return hx.Model(FORMULA, table, priors=PRIORS, **kwargs)


def hierax_fit_kwargs(table: pd.DataFrame) -> dict[str, Any]:
    return {}


def hierax_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)


def init_values(table: pd.DataFrame) -> dict[str, Any] | None:
    return None


# ----------------------------------------------------------------- numpyro
def numpyro_data(table: pd.DataFrame) -> dict[str, Any]:
    gene, genes = codes(table["gene"])
    cell, cells = codes(table["cell_line"])
    return {
        "gene": gene,
        "cell": cell,
        "n_gene": len(genes),
        "n_cell": len(cells),
        "y": table["logfc"].to_numpy(float),
    }


def numpyro_model(gene, cell, n_gene, n_cell, y=None):  # type: ignore[no-untyped-def]
    import numpyro
    import numpyro.distributions as dist

    intercept = numpyro.sample("Intercept", dist.Normal(0.0, 5.0))
    sd_gene = numpyro.sample("sd_gene", dist.Exponential(1.0))
    sd_cell = numpyro.sample("sd_cell_line", dist.Exponential(1.0))
    with numpyro.plate("gene", n_gene):
        r_gene = numpyro.sample("r_gene", dist.Normal(0.0, sd_gene))
    with numpyro.plate("cell_line", n_cell):
        r_cell = numpyro.sample("r_cell_line", dist.Normal(0.0, sd_cell))
    sigma = numpyro.sample("sigma", dist.Exponential(1.0))
    with numpyro.plate("obs", gene.shape[0]):
        numpyro.sample("y", dist.Normal(intercept + r_gene[gene] + r_cell[cell], sigma), obs=y)


# -------------------------------------------------------------------- pymc
def pymc_model(table: pd.DataFrame) -> Any:
    import pymc as pm

    d = numpyro_data(table)
    with pm.Model() as model:
        intercept = pm.Normal("Intercept", 0.0, 5.0)
        sd_gene = pm.Exponential("sd_gene", 1.0)
        sd_cell = pm.Exponential("sd_cell_line", 1.0)
        r_gene = pm.Normal("r_gene", 0.0, sd_gene, shape=d["n_gene"])
        r_cell = pm.Normal("r_cell_line", 0.0, sd_cell, shape=d["n_cell"])
        sigma = pm.Exponential("sigma", 1.0)
        pm.Normal("y", intercept + r_gene[d["gene"]] + r_cell[d["cell"]], sigma, observed=d["y"])
    return model


# -------------------------------------------------------------------- stan
STAN_CODE = """
data {
  int<lower=1> N;
  int<lower=1> G;
  int<lower=1> C;
  array[N] int<lower=1, upper=G> gene;
  array[N] int<lower=1, upper=C> cell;
  vector[N] y;
}
parameters {
  real Intercept;
  real<lower=0> sd_gene;
  real<lower=0> sd_cell_line;
  real<lower=0> sigma;
  vector[G] r_gene;
  vector[C] r_cell_line;
}
model {
  Intercept ~ normal(0, 5);
  sd_gene ~ exponential(1);
  sd_cell_line ~ exponential(1);
  sigma ~ exponential(1);
  r_gene ~ normal(0, sd_gene);
  r_cell_line ~ normal(0, sd_cell_line);
  y ~ normal(Intercept + r_gene[gene] + r_cell_line[cell], sigma);
}
"""


def stan_data(table: pd.DataFrame) -> dict[str, Any]:
    d = numpyro_data(table)
    return {
        "N": len(d["y"]),
        "G": d["n_gene"],
        "C": d["n_cell"],
        "gene": (d["gene"] + 1).tolist(),
        "cell": (d["cell"] + 1).tolist(),
        "y": d["y"].tolist(),
    }


def peer_reported(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return pick(raw, REPORTED)
