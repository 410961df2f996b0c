"""Formula models end to end: the seed acceptance cases, recovery, prediction, bad input."""

from __future__ import annotations

import functools
import warnings

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import reference_models as ref

import hierax as hx
from hierax.examples import crossed, regression
from hierax.models.priors import parse_prior

EIGHT_SCHOOLS = pd.DataFrame(
    {
        "school": list("ABCDEFGH"),
        "y": [28.0, 8, -3, 7, -1, 1, 18, 12],
        "sigma": [15.0, 10, 16, 11, 9, 11, 10, 18],
    }
)


@functools.cache
def crossed_fit() -> hx.Fit:
    model = hx.Model("logfc ~ 1 + (1 | gene) + (1 | cell_line)", crossed.load_data())
    return model.fit(seed=4, progress=False)


@functools.cache
def regression_fit() -> hx.Fit:
    model = hx.Model("response ~ predictor + (predictor | group)", regression.load_data())
    return model.fit(seed=4, progress=False)


def test_crossed_formula_is_healthy_and_recovers_scales() -> None:
    fit = crossed_fit()
    table = fit.summary()
    assert fit.divergences == 0
    stats = fit.idata["sample_stats"]
    if fit.info.get("method") == "independence_mh":  # collapsed model, no trajectories
        assert fit.info["pareto_k"] <= 0.7 and fit.info["acceptance_rate"] > 0.25
    else:
        assert not np.asarray(stats["reached_max_treedepth"]).any()
    assert (table["r_hat"] <= 1.01).all()
    assert (table["ess_bulk"] >= 400).all()
    truth = crossed.truth()
    for name, true in [
        ("sigma", truth["sigma"]),
        ("sd_gene", truth["sigma_alpha"]),
        ("sd_cell_line", truth["sigma_beta"]),
    ]:
        draws = fit.draws(name)
        assert abs(draws.mean() - true) < 2 * draws.std(), name
    # names users understand, coords from the factor levels
    assert fit.posterior["r_gene"].dims[2:] == ("gene",)
    assert list(fit.posterior["gene"].values) == [0, 1, 2]


def test_regression_formula_recovers_groups_and_correlation_includes_zero() -> None:
    fit = regression_fit()
    truth = regression.truth()
    intercept = fit.draws("Intercept")[:, None] + fit.draws("r_group")[:, :, 0]
    slope = fit.draws("b_predictor")[:, None] + fit.draws("r_group")[:, :, 1]
    for draws, true in [(intercept, truth["intercept_group"]), (slope, truth["slope_group"])]:
        z = np.abs(draws.mean(0) - np.asarray(true)) / draws.std(0)
        assert np.all(z < 3), z
    correlation = fit.posterior["cor_group"].sel(group_coef="Intercept", group_coef2="predictor")
    lower, upper = az.hdi(np.asarray(correlation).reshape(-1), hdi_prob=0.94)
    assert lower < 0 < upper
    assert fit.divergences == 0


def test_eight_schools_with_known_se_matches_hand_written_numpyro() -> None:
    model = hx.Model("y | se(sigma) ~ 1 + (1 | school)", EIGHT_SCHOOLS)
    assert not model.group_options["school"].centered  # weak data: non-centered
    fit = model.fit(seed=5, progress=False, draws=2000)
    assert fit.divergences == 0
    priors = model.priors["prior"]

    def hand(y, sigma):
        mu = numpyro.sample("Intercept", parse_prior(priors["Intercept"], "I").build())
        tau = numpyro.sample("sd_school", parse_prior(priors["sd_school"], "s").build())
        with numpyro.plate("school", 8):
            z = numpyro.sample("z_school", dist.Normal(0, 1))
            numpyro.sample("y", dist.Normal(mu + tau * z, sigma), obs=y)

    samples, _ = ref.run_numpyro(
        hand,
        {"y": EIGHT_SCHOOLS["y"].to_numpy(), "sigma": EIGHT_SCHOOLS["sigma"].to_numpy()},
        seed=6,
        draws=2000,
        target_accept_prob=0.95,
    )
    reference = az.summary(
        az.from_dict(
            posterior={"Intercept": samples["Intercept"], "sd_school": samples["sd_school"]}
        )
    )
    ours = fit.summary(var_names=["Intercept", "sd_school"])
    for name in ["Intercept", "sd_school"]:
        mcse = np.hypot(ours.loc[name, "mcse_mean"], reference.loc[name, "mcse_mean"])
        assert abs(ours.loc[name, "mean"] - reference.loc[name, "mean"]) < 4 * mcse, name
        assert 0.9 < ours.loc[name, "sd"] / reference.loc[name, "sd"] < 1.1, name


def _glmm_table(family: str, seed: int) -> tuple[pd.DataFrame, dict[str, float]]:
    rng = np.random.default_rng(seed)
    groups, per_group = 30, 25
    truth = {"Intercept": 0.3, "b_x": 0.8, "sd_g": 0.6}
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    eta = truth["Intercept"] + truth["b_x"] * x + rng.normal(0, truth["sd_g"], groups)[g]
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    else:
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "g": g}), truth


@pytest.mark.parametrize("family", ["poisson", "bernoulli"])
def test_glmm_recovers_parameters(family: str) -> None:
    table, truth = _glmm_table(family, seed=8)
    fit = hx.Model("y ~ x + (1 | g)", table, family=family).fit(seed=9, progress=False)
    assert fit.divergences == 0
    for name, value in truth.items():
        draws = fit.draws(name)
        assert abs(draws.mean() - value) < 3 * draws.std(), (name, draws.mean(), value)


def test_prediction_mean_response_and_new_levels() -> None:
    fit = crossed_fit()
    table = crossed.load_data()
    mean = fit.predict(table.head(6))
    assert mean.dims == ("chain", "draw", "obs") and mean.shape[2] == 6
    np.testing.assert_allclose(mean.mean(("chain", "draw")), table["logfc"].head(6), atol=0.15)
    response = fit.predict(table.head(6), kind="response")
    assert float(response.std(("chain", "draw")).mean()) > float(mean.std(("chain", "draw")).mean())
    new = pd.DataFrame({"gene": [0, 9], "cell_line": [1, 1]})
    with pytest.raises(hx.DataError, match=r"'gene'.*\[9\]"):
        fit.predict(new)
    spread = fit.predict(new, allow_new_levels=True).std(("chain", "draw")).values
    assert spread[1] > 3 * spread[0]  # a new gene is uncertain, a known one is not


def test_unseen_fixed_categorical_level_is_an_error() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"y": rng.normal(size=30), "c": list("abc") * 10, "g": np.repeat(range(3), 10)}
    )
    fit = hx.Model("y ~ c + (1 | g)", table).fit(seed=1, draws=100, warmup=100, progress=False)
    with pytest.raises(hx.DataError, match="'c'"):
        fit.predict(pd.DataFrame({"c": ["zz"], "g": [0]}), allow_new_levels=True)


def test_log_likelihood_supports_loo() -> None:
    model = hx.Model("y | se(sigma) ~ 1 + (1 | school)", EIGHT_SCHOOLS)
    fit = model.fit(seed=2, draws=300, warmup=300, progress=False, log_likelihood=True)
    assert "y" in fit.idata["log_likelihood"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(az.loo(fit.idata).elpd_loo)


def test_priors_table_and_overrides() -> None:
    model = hx.Model(
        "response ~ predictor + (predictor | group)",
        regression.load_data(),
        priors={"sd": "HalfNormal(1)", "b_predictor": "Normal(0, 1)"},
    )
    table = model.priors
    assert set(table.index) == {"Intercept", "b_predictor", "sd_group", "cor_group", "sigma"}
    assert (
        table.loc["sd_group", "prior"] == "HalfNormal(1)"
        and table.loc["sd_group", "source"] == "user (sd)"
    )
    assert table.loc["b_predictor", "source"] == "user"
    assert table.loc["cor_group", "prior"] == "LKJ(2)"


# ------------------------------------------------------------------ bad input
def _table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {"y": rng.normal(size=20), "x": rng.normal(size=20), "g": np.repeat(list("ab"), 10)}
    )


def test_nan_in_used_column() -> None:
    table = _table()
    table.loc[[3, 7], "x"] = np.nan
    with pytest.raises(hx.DataError, match=r"'x' has 2 .*\[3, 7\].*dropna=True"):
        hx.Model("y ~ x + (1 | g)", table)
    with pytest.warns(UserWarning, match="dropped 2 row"):
        model = hx.Model("y ~ x + (1 | g)", table, dropna=True)
    assert model.design.n == 18


def test_missing_column_suggests_close_match() -> None:
    with pytest.raises(hx.DataError, match="'xx'.*Did you mean 'x'"):
        hx.Model("y ~ xx + (1 | g)", _table())


def test_grouping_factor_with_one_level() -> None:
    table = _table().assign(g="only")
    with pytest.raises(hx.DataError, match="'g' has only one level"):
        hx.Model("y ~ x + (1 | g)", table)


def test_unused_levels_are_dropped_with_warning() -> None:
    table = _table()
    table["g"] = pd.Categorical(table["g"], categories=["a", "b", "c"])
    with pytest.warns(UserWarning, match=r"unused level.*'c'"):
        model = hx.Model("y ~ x + (1 | g)", table)
    assert model.design.groups[0].levels == ["a", "b"]


def test_negative_counts_for_poisson() -> None:
    table = _table().assign(y=[1, 2, -1, 3] * 5)
    with pytest.raises(hx.DataError, match=r"'y'.*non-negative integers.*\[2, 6"):
        hx.Model("y ~ x", table, family="poisson")


def test_empty_table() -> None:
    with pytest.raises(hx.DataError, match="empty"):
        hx.Model("y ~ x", _table().iloc[:0])


@pytest.mark.parametrize(
    ("priors", "fragment"),
    [
        ({"sd_g": "HalfNormal(-1)"}, "sd_g"),
        ({"b_x": "Nromal(0, 1)"}, "Nromal.*Did you mean 'Normal'"),
        ({"b_z": "Normal(0, 1)"}, "b_z.*Did you mean 'b_x'"),
    ],
)
def test_invalid_priors_are_named(priors: dict, fragment: str) -> None:
    with pytest.raises(hx.ModelError, match=fragment):
        hx.Model("y ~ x + (1 | g)", _table(), priors=priors)


def test_unknown_family() -> None:
    with pytest.raises(hx.ModelError, match="poison.*Did you mean 'poisson'"):
        hx.Model("y ~ x", _table(), family="poison")


def test_collinear_fixed_effects_are_caught_before_sampling() -> None:
    table = _table().assign(x2=lambda t: 2 * t["x"])
    with pytest.raises(hx.ModelError, match="collinear.*x2"):
        hx.Model("y ~ x + x2", table)


def test_million_rows_and_100k_levels_build_and_evaluate() -> None:
    """Group effects are gathered by index: no dense one-hot matrix is ever formed."""
    rng = np.random.default_rng(0)
    n, levels = 1_000_000, 100_000
    g = np.concatenate([np.arange(levels), rng.integers(0, levels, n - levels)])
    table = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": g})
    model = hx.Model("y ~ x + (1 | g)", table, centered=False)
    assert model.design.groups[0].Z.shape == (n, 1)
    data = model.arrays()
    params = {
        "Intercept": 0.1,
        "b_x": 0.2,
        "sd_g": 0.5,
        "z_g": np.zeros(levels),
        "sigma": 1.0,
    }
    density = jax.jit(lambda p: numpyro.infer.util.log_density(model.model_fn, (), data, p)[0])
    assert np.isfinite(float(density(params)))


def test_zero_sum_coding_sums_to_zero_and_pins_the_intercept() -> None:
    model = hx.Model("logfc ~ 1 + (1 | gene) + (1 | cell_line)", crossed.load_data(), zero_sum=True)
    fit = model.fit(seed=2, draws=500, warmup=500, progress=False)
    assert np.abs(fit.draws("r_gene").sum(axis=1)).max() < 1e-10
    # the intercept is now the grand mean: identified by the data alone
    assert fit.draws("Intercept").std() < 0.1 * crossed_fit().draws("Intercept").std()
    with pytest.raises(hx.ModelError, match="zero-sum.*'group'"):
        hx.Model(
            "response ~ predictor + (predictor | group)", regression.load_data(), zero_sum=True
        )


def test_nested_uncorrelated_and_offset_terms_build_and_fit() -> None:
    rng = np.random.default_rng(3)
    a = np.repeat(np.arange(4), 30)
    b = np.tile(np.repeat(np.arange(3), 10), 4)
    x = rng.normal(size=a.size)
    exposure = rng.uniform(1, 3, size=a.size)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.3, 4)[a] + rng.normal(0, 0.3, 12)[a * 3 + b]
    table = pd.DataFrame(
        {
            "y": rng.poisson(exposure * np.exp(eta)),
            "x": x,
            "a": a,
            "b": b,
            "log_exposure": np.log(exposure),
        }
    )
    model = hx.Model(
        "y ~ x + (1 | a/b) + (0 + x || a) + offset(log_exposure)", table, family="poisson"
    )
    names = [g.name for g in model.design.groups]
    assert names == ["a", "a_b", "a_x"]
    assert len(model.design.groups[1].levels) == 12
    fit = model.fit(seed=3, draws=300, warmup=300, progress=False)
    assert set(fit.posterior.data_vars) >= {"sd_a", "sd_a_b", "r_a_b", "b_x"}
    assert abs(fit.draws("b_x").mean() - 0.3) < 3 * fit.draws("b_x").std()


def test_per_coefficient_priors_for_a_categorical_term() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"y": rng.normal(size=30), "c": list("abc") * 10, "x": rng.normal(size=30)}
    )
    model = hx.Model("y ~ x + c", table, priors={"b_c[c]": "Normal(0, 9)"})
    priors = model.priors
    assert (
        priors.loc["b_c[c]", "prior"] == "Normal(0, 9)" and priors.loc["b_c[c]", "source"] == "user"
    )
    assert priors.loc["b_c[b]", "source"] == "default"
    from numpyro import handlers

    trace = handlers.trace(handlers.seed(model.model_fn, 0)).get_trace(**model.arrays())
    scales = np.asarray(trace["b_c"]["fn"].base_dist.scale)
    assert scales[1] == 9.0 and scales[0] != 9.0
    model = hx.Model("y ~ x + c", table, priors={"b_c": "Normal(0, 2)"})
    assert set(model.priors.loc[["b_c[b]", "b_c[c]"], "prior"]) == {"Normal(0, 2)"}
    with pytest.raises(hx.ModelError, match="b_c.*one family"):
        hx.Model("y ~ x + c", table, priors={"b_c[c]": "StudentT(3, 0, 1)"})
