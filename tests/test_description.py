"""The model description is the seam: a model built by hand (no formula) fits through the
collapsed engine, and gives what the formula front-end gives for the same model."""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierax as hx
from hierax.inference.marginal.linear import marginal_log_density, plan_marginalization
from hierax.models.build import formula_density
from hierax.models.description import (
    GroupTerm,
    LinearPredictor,
    ModelDescription,
    Response,
)
from hierax.models.families import get_family
from hierax.models.priors import parse_prior
from hierax.results.fit import fit_description

QUICK = {"chains": 2, "draws": 300, "warmup": 300, "progress": False}


def crossed_table(seed: int = 0, n_a: int = 12, n_b: int = 5, repeats: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(n_a), n_b * repeats)
    b = np.tile(np.repeat(np.arange(n_b), repeats), n_a)
    effect_a = rng.normal(0.0, 1.0, n_a)
    effect_b = rng.normal(0.0, 0.5, n_b)
    y = 2.0 + effect_a[a] + effect_b[b] + rng.normal(0.0, 0.3, a.size)
    return pd.DataFrame({"y": y, "a": [f"a{i}" for i in a], "b": [f"b{j}" for j in b]})


def _group(name: str, codes: np.ndarray, levels: list[str]) -> GroupTerm:
    return GroupTerm(
        name=name,
        dim=name,
        levels=tuple(levels),
        index=codes.astype(np.int32),
        Z=np.ones((codes.size, 1)),
        coef_names=("Intercept",),
        correlated=False,
        centered=False,
    )


def hand_built(table: pd.DataFrame, priors: dict[str, Any]) -> ModelDescription:
    """``y ~ 1 + (1 | a) + (1 | b)``, Gaussian, written as a description by hand."""
    n = len(table)
    a_codes, a_levels = pd.factorize(table["a"], sort=True)
    b_codes, b_levels = pd.factorize(table["b"], sort=True)
    groups = (_group("a", a_codes, list(a_levels)), _group("b", b_codes, list(b_levels)))
    predictor = LinearPredictor(X=np.ones((n, 1)), fixed_terms=(), intercept=True, groups=groups)
    family, link = get_family("gaussian", None)
    response = Response(
        name="y", y=table["y"].to_numpy(float), family=family, link=link, aux=("sigma",)
    )
    parsed = {name: parse_prior(text, where=name) for name, text in priors.items()}
    data = {"X": predictor.X, "y": response.y}
    for group in groups:
        data[f"index_{group.name}"] = group.index
        data[f"Z_{group.name}"] = group.Z
    coords = {"a": list(a_levels), "b": list(b_levels)}
    dims = {"r_a": ["a"], "z_a": ["a"], "r_b": ["b"], "z_b": ["b"]}
    return ModelDescription(
        kind="formula",
        response=response,
        priors=parsed,
        density=formula_density(predictor, response, parsed, label="hand-built"),
        data=data,
        coords=coords,
        dims=dims,
        predictor=predictor,
        label="hand-built crossed model",
    )


PRIORS = {
    "Intercept": "Normal(0, 5)",
    "sd_a": "HalfNormal(2)",
    "sd_b": "HalfNormal(2)",
    "sigma": "Exponential(1)",
}


def test_hand_built_crossed_model_fits_through_the_collapsed_path():
    table = crossed_table()
    description = hand_built(table, PRIORS)
    plan = plan_marginalization(description)
    assert not isinstance(plan, str), plan
    assert plan.marginalized == ["Intercept", "z_a", "z_b"] or set(plan.marginalized) == {
        "Intercept",
        "z_a",
        "z_b",
    }
    fit = fit_description(description, seed=3, **QUICK)
    assert fit.info["marginalized"] and "not_marginalized_because" not in fit.info
    assert set(fit.posterior.data_vars) >= {"Intercept", "sd_a", "sd_b", "sigma", "r_a", "r_b"}
    assert list(fit.posterior["r_a"].coords["a"].values) == sorted(f"a{i}" for i in range(12))
    summary = fit.summary(["Intercept", "sigma"], round_to="none")
    # the data were made with intercept 2 and sigma 0.3: the posterior must hold them
    assert abs(summary.loc["Intercept", "mean"] - 2.0) < 4 * summary.loc["Intercept", "sd"] + 0.05
    assert abs(summary.loc["sigma", "mean"] - 0.3) < 4 * summary.loc["sigma", "sd"]


def test_hand_built_description_is_the_formula_models_description():
    """Same model written two ways: the same collapsed density at the same point."""
    table = crossed_table(seed=1)
    model = hx.Model("y ~ 1 + (1 | a) + (1 | b)", table, priors=PRIORS, centered=False)
    by_hand = hand_built(table, PRIORS)
    plans = [plan_marginalization(model.description), plan_marginalization(by_hand)]
    assert not any(isinstance(p, str) for p in plans)
    for values in (
        {"sd_a": 0.7, "sd_b": 0.4, "sigma": 0.3},
        {"sd_a": 2.0, "sd_b": 0.1, "sigma": 1.1},
    ):
        formula_value, hand_value = (
            float(marginal_log_density(plan, d.priors, values))
            for plan, d in zip(plans, (model.description, by_hand), strict=True)
        )
        assert hand_value == pytest.approx(formula_value, rel=1e-9, abs=1e-9)


def test_exact_fit_of_a_hand_built_description_has_the_closed_form_mean():
    """Every sd and sigma known: the engine draws (mu, a, b) from their exact Gaussian.

    Checked against the posterior mean from dense linear algebra (a few levels:
    the dense matrix is fine in a test) within Monte Carlo error."""
    table = crossed_table(seed=2, n_a=6, n_b=4)
    known = {"Intercept": "Normal(1, 3)", "sd_a": 0.8, "sd_b": 0.5, "sigma": 0.4}
    description = hand_built(table, known)
    fit = fit_description(description, seed=5, chains=2, draws=2000, progress=False)
    assert fit.info["method"] == "exact"
    n = len(table)
    a = description.predictor.groups[0].index
    b = description.predictor.groups[1].index
    W = np.zeros((n, 1 + 6 + 4))
    W[:, 0] = 1.0
    W[np.arange(n), 1 + a] = 1.0
    W[np.arange(n), 7 + b] = 1.0
    prior_precision = np.diag([1 / 9] + [1 / 0.64] * 6 + [1 / 0.25] * 4)
    prior_mean = np.zeros(11)
    prior_mean[0] = 1.0
    precision = prior_precision + W.T @ W / 0.16
    covariance = np.linalg.inv(precision)
    mean = covariance @ (prior_precision @ prior_mean + W.T @ description.response.y / 0.16)
    draws = np.concatenate(
        [
            fit.draws("Intercept").reshape(-1, 1),
            fit.draws("r_a").reshape(-1, 6),
            fit.draws("r_b").reshape(-1, 4),
        ],
        axis=1,
    )
    standard_error = np.sqrt(np.diag(covariance) / draws.shape[0])
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * standard_error)
    variance = np.diag(covariance)
    # sd of a sample covariance of Gaussian draws: sqrt((s_ii s_jj + s_ij^2) / N)
    tolerance = 6 * np.sqrt((np.outer(variance, variance) + covariance**2) / draws.shape[0])
    assert np.all(np.abs(np.cov(draws.T) - covariance) < tolerance)


def test_no_engine_or_model_module_imports_a_front_end():
    """What lint-imports checks in CI, also as a test: inference/ and models/ never name
    a front-end, not even under TYPE_CHECKING."""
    root = pathlib.Path(hx.__file__).parent
    offenders = []
    for room in ("inference", "models"):
        for path in (root / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    if name.startswith(
                        ("hierax.frontends", "hierax.calibration", "hierax.interface")
                    ):
                        offenders.append(f"{path.relative_to(root)} imports {name}")
    assert offenders == []
