"""Inference-engine edge cases of issue 16: nothing left to sample, and very deep expressions.

A model whose parameters are all either known or integrated out is exact: its
fit holds independent draws from the closed-form posterior (checked here
against the conjugate Gaussian of Bayesian linear regression with known noise).
Expressions of any length either work (long sums are regrouped) or fail with a
:class:`~hierax.errors.ModelError` that names the formula and the limit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from numpyro.infer.util import log_density

import hierax as hx
from hierax.errors import ModelError
from hierax.inference.marginal.nonlinear_plan import plan_marginalization
from hierax.models.expression import MAX_DEPTH, parse_expression

SIGMA = 0.8
SD_G = 0.7
N_ROWS = 24
CHAINS, DRAWS = 4, 1000


def _table(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {"x": rng.normal(size=N_ROWS), "g": np.repeat(["a", "b", "c", "d"], N_ROWS // 4)}
    )
    effects = {"a": 0.4, "b": -0.6, "c": 0.1, "d": 0.3}
    table["y"] = (
        1.0 + 2.0 * table["x"] + table["g"].map(effects) + rng.normal(scale=SIGMA, size=N_ROWS)
    )
    return table


def _conjugate(
    columns: np.ndarray, y: np.ndarray, prior_mean: np.ndarray, prior_sd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of theta in y ~ Normal(columns @ theta, SIGMA^2),
    theta ~ Normal(prior_mean, diag(prior_sd^2)): the normal equations with the prior."""
    prior_precision = np.diag(1.0 / prior_sd**2)
    precision = prior_precision + columns.T @ columns / SIGMA**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ (prior_precision @ prior_mean + columns.T @ y / SIGMA**2)
    return mean, covariance


def _formula_fixed() -> tuple[hx.Fit, list[str], np.ndarray, np.ndarray]:
    table = _table()
    model = hx.Model(
        "y ~ x", table, priors={"Intercept": "Normal(1, 2)", "b_x": "Normal(0, 3)", "sigma": SIGMA}
    )
    fit = model.fit(chains=CHAINS, draws=DRAWS, seed=11)
    columns = np.column_stack([np.ones(N_ROWS), table["x"]])
    mean, cov = _conjugate(columns, table["y"].to_numpy(), np.array([1.0, 0.0]), np.array([2, 3.0]))
    return fit, ["Intercept", "b_x"], mean, cov


def _formula_group() -> tuple[hx.Fit, list[str], np.ndarray, np.ndarray]:
    table = _table()
    model = hx.Model(
        "y ~ x + (1 | g)",
        table,
        priors={
            "Intercept": "Normal(1, 2)",
            "b_x": "Normal(0, 3)",
            "sigma": SIGMA,
            "sd_g": SD_G,
        },
    )
    fit = model.fit(chains=CHAINS, draws=DRAWS, seed=12)
    levels = [str(level) for level in fit.posterior["r_g"].coords["g"].values]
    one_hot = (table["g"].to_numpy()[:, None] == np.array(levels)[None, :]).astype(float)
    columns = np.column_stack([np.ones(N_ROWS), table["x"], one_hot])
    mean, cov = _conjugate(
        columns,
        table["y"].to_numpy(),
        np.array([1.0, 0.0, 0, 0, 0, 0]),
        np.array([2.0, 3.0, SD_G, SD_G, SD_G, SD_G]),
    )
    return fit, ["Intercept", "b_x", *(f"r_g[{level}]" for level in levels)], mean, cov


def _nonlinear() -> tuple[hx.Fit, list[str], np.ndarray, np.ndarray]:
    table = _table()
    model = hx.NonlinearModel(
        "y ~ a + b * x",
        table,
        params={"a": "1", "b": "1"},
        priors={"a": "Normal(1, 2)", "b": "Normal(0, 3)", "sigma": SIGMA},
    )
    fit = model.fit(chains=CHAINS, draws=DRAWS, seed=13)
    columns = np.column_stack([np.ones(N_ROWS), table["x"]])
    mean, cov = _conjugate(columns, table["y"].to_numpy(), np.array([1.0, 0.0]), np.array([2, 3.0]))
    return fit, ["a", "b"], mean, cov


def _latent() -> tuple[hx.Fit, list[str], np.ndarray, np.ndarray]:
    """A per-row latent integrated by quadrature, with nothing else unknown."""
    table = _table().iloc[:6]
    model = hx.NonlinearModel(
        "y ~ a + u",
        table,
        params={"a": "1", "u": hx.latent("Normal(0, 0.6)")},
        priors={"a": 1.0, "sigma": SIGMA},
    )
    fit = model.fit(chains=CHAINS, draws=DRAWS, seed=14)
    rows = len(table)
    mean, cov = _conjugate(
        np.eye(rows), table["y"].to_numpy() - 1.0, np.zeros(rows), np.full(rows, 0.6)
    )
    return fit, [f"u[{i}]" for i in range(rows)], mean, cov


def _draws(fit: hx.Fit, labels: list[str]) -> np.ndarray:
    """(chain, draw, entry) draws of entries labelled ``name`` or ``name[level]``."""
    columns = []
    for label in labels:
        name, _, level = label.partition("[")
        values = fit.posterior[name]
        if level:
            dim = values.dims[2]
            coord = values.coords[dim].values
            key = level.rstrip("]")
            index = [str(c) for c in coord].index(key)
            values = values.isel({dim: index})
        columns.append(np.asarray(values))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize(
    "make",
    [_formula_fixed, _formula_group, _nonlinear, _latent],
    ids=["y~x", "y~x+(1|g)", "nonlinear", "latent"],
)
def test_model_with_nothing_to_sample_gives_exact_independent_draws(
    make: Callable[[], tuple[hx.Fit, list[str], np.ndarray, np.ndarray]],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", hx.ConvergenceWarning)
        fit, labels, mean, cov = make()
    assert fit.info["method"] == "exact"
    assert fit.divergences == 0
    assert fit.posterior.sizes["chain"] == CHAINS and fit.posterior.sizes["draw"] == DRAWS
    draws = _draws(fit, labels)
    total = CHAINS * DRAWS
    sd = np.sqrt(np.diag(cov))
    # means within 4 Monte Carlo standard errors of independent draws
    estimate = draws.reshape(total, -1).mean(axis=0)
    assert np.all(np.abs(estimate - mean) < 4 * sd / np.sqrt(total)), (labels, estimate, mean)
    # whitened by the exact covariance, the draws have identity covariance: each
    # entry's sampling sd is sqrt(2 / n) (diagonal) or sqrt(1 / n) (off-diagonal)
    whitened = np.linalg.solve(np.linalg.cholesky(cov), (draws.reshape(total, -1) - mean).T)
    sample_cov = np.cov(whitened)
    assert np.max(np.abs(sample_cov - np.eye(len(labels)))) < 4.5 * np.sqrt(2 / total)
    # independent draws: lag-1 autocorrelation within chains near 0 (sd 1 / sqrt(n))
    centred = draws - draws.mean(axis=1, keepdims=True)
    lag1 = np.sum(centred[:, 1:] * centred[:, :-1], axis=(0, 1)) / np.sum(centred**2, axis=(0, 1))
    assert np.all(np.abs(lag1) < 4 / np.sqrt(total)), lag1
    summary = fit.summary()
    assert np.all(summary.loc[labels, "ess_bulk"] > 0.5 * total)


def test_exact_fit_records_known_values_and_the_log_evidence() -> None:
    fit, _, _, _ = _formula_fixed()
    assert np.all(np.asarray(fit.posterior["sigma"]) == SIGMA)
    lp = np.asarray(fit.idata["sample_stats"]["lp"])
    assert lp.shape == (CHAINS, DRAWS) and np.all(np.isfinite(lp)) and np.ptp(lp) == 0
    # lp is the log marginal likelihood: y ~ Normal(X m, SIGMA^2 I + X S X')
    table = _table()
    columns = np.column_stack([np.ones(N_ROWS), table["x"]])
    marginal_cov = SIGMA**2 * np.eye(N_ROWS) + columns @ np.diag([4.0, 9.0]) @ columns.T
    from scipy.stats import multivariate_normal

    expected = multivariate_normal(columns @ np.array([1.0, 0.0]), marginal_cov).logpdf(table["y"])
    assert lp[0, 0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("option", "value"), [("draws", 0), ("chains", 2.5)])
def test_exact_fit_rejects_bad_draw_counts(option: str, value: object) -> None:
    """The engine's own check (``Model.fit`` may check its options before)."""
    from hierax.inference.marginal.linear import plan_marginalization, run_marginalized

    model = hx.Model("y ~ x", _table(), priors={"sigma": SIGMA})
    plan = plan_marginalization(model.description)
    assert not isinstance(plan, str)
    with pytest.raises(hx.SamplingError, match=rf"{option} must be a whole number >= 1"):
        run_marginalized(model.description, plan, seed=1, **{option: value})


# ------------------------------------------------------------------ deep expressions


def _long_sum_model(terms: int) -> hx.NonlinearModel:
    table = _table()
    formula = "y ~ " + " + ".join(f"a{i} * x" for i in range(terms))
    return hx.NonlinearModel(
        formula,
        table,
        params={f"a{i}": "1" for i in range(terms)},
        priors={f"a{i}": "Normal(0, 1)" for i in range(terms)},
    )


def test_a_900_term_sum_builds_and_evaluates() -> None:
    model = _long_sum_model(900)
    values = {f"a{i}": 0.001 * i for i in range(900)}
    log_joint, trace = log_density(model.model_fn, (), model.arrays(), {**values, "sigma": 1.0})
    assert np.isfinite(float(log_joint))
    x = model.table["x"].to_numpy()
    mean = np.asarray(model.expression({**values, "x": x}))
    np.testing.assert_allclose(mean, sum(values.values()) * x, rtol=1e-9)


def test_the_affinity_analysis_walks_a_900_term_sum() -> None:
    table = _table()
    model = hx.NonlinearModel(
        "y ~ " + " + ".join(f"a{i % 3} * x" for i in range(900)),
        table,
        params={f"a{i}": "1" for i in range(3)},
        priors={f"a{i}": "Normal(0, 1)" for i in range(3)},
    )
    plan = plan_marginalization(model.description)
    assert not isinstance(plan, str) and plan.parameter_names == ["a0", "a1", "a2"]


def test_a_900_term_sum_of_a_column_fits() -> None:
    table = _table()
    model = hx.NonlinearModel(
        "y ~ b + " + " + ".join(["x"] * 900),
        table,
        params={"b": "1"},
        priors={"b": "Normal(0, 5)", "sigma": SIGMA},
    )
    fit = model.fit(chains=2, draws=200, seed=5)
    assert fit.info["marginalized"] == ["b"]
    expected = np.mean(table["y"] - 900 * table["x"])
    assert abs(float(fit.posterior["b"].mean()) - expected) < 0.5


@pytest.mark.parametrize(
    "text",
    [
        "(" * 5000 + "a * x" + ")" * 5000,  # beyond Python's parser
        "a * " + "exp(" * 5000 + "x" + ")" * 5000,
        "a * " + "-" * 5000 + "x",  # the parser's own recursion
        "a * " + "-" * 1500 + "x",  # parsed, too deep to evaluate
    ],
    ids=["parentheses", "calls", "unary-5000", "unary-1500"],
)
def test_deeply_nested_expressions_are_a_model_error(text: str) -> None:
    with pytest.raises(ModelError, match=r"nonlinear formula '.*(nested|parentheses)"):
        hx.NonlinearModel("y ~ " + text, _table(), params={"a": "1"}, priors={"a": "Normal(0, 1)"})


def test_too_deep_message_names_the_limit() -> None:
    with pytest.raises(ModelError, match=rf"1502 levels, the limit is {MAX_DEPTH}"):
        parse_expression("a * " + "-" * 1500 + "x", where="nonlinear formula")


def test_deep_latent_distribution_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="latent distribution of u"):
        hx.NonlinearModel(
            "y ~ u",
            _table(),
            params={"u": hx.latent("Normal(" + "-" * 5000 + "1, 1)")},
        )


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (" - ".join(["x"] * 300), {"x": 2.0}),
        ("x / " + " * ".join(["y"] * 150) + " / y * x", {"x": 3.0, "y": 1.01}),
        ("a - " + " + ".join(f"b{i} * x" for i in range(200)) + " - c", None),
    ],
    ids=["minus", "divide", "mixed"],
)
def test_regrouped_chains_keep_their_value(text: str, env: dict[str, float] | None) -> None:
    import ast

    expression = parse_expression(text)
    if env is None:
        env = {name: 0.1 + 0.01 * i for i, name in enumerate(sorted(expression.names))}
    reference = eval(compile(ast.parse(text, mode="eval"), "<test>", "eval"), {}, dict(env))
    assert float(expression(env)) == pytest.approx(reference, rel=1e-9)
