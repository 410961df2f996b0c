"""Bad input in the formula and prior layer (issue 16), and formula transforms.

Each bad input is an error of a hierax type whose message names the culprit
(the parameter, the column, the position in the formula), raised when the
model is built, before anything is sampled.
"""

from __future__ import annotations

import re

import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest

import hierax as hx
from hierax.frontends.formula.checks import MAX_FIXED_LEVELS, _dependent_columns
from hierax.frontends.formula.design import new_data_design


def _table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.uniform(0.5, 3.0, size=n),
            "z": rng.normal(size=n),
            "g": np.tile(list("abcd"), n // 4),
            "k": np.arange(n) % 5,
            "n": np.full(n, 10),
        }
    )


# --------------------------------------------------- case 1: prior support
@pytest.mark.parametrize(
    ("formula", "priors", "pattern"),
    [
        (
            "y ~ x",
            {"sigma": "Normal(0, 1)"},
            r"Normal\(0, 1\) for 'sigma' has support real.*positive",
        ),
        ("y ~ x", {"sigma": "Uniform(-1, 5)"}, r"'sigma' has support \[-1, 5\].*positive"),
        ("y ~ x", {"sigma": "TruncatedNormal(0, 1, low=-1)"}, r"'sigma' has support > -1"),
        ("y ~ x", {"sigma": "Cauchy(0, 2)"}, r"'sigma'.*HalfNormal\(2\)"),
        ("y ~ x", {"sigma": dist.Normal(0.0, 1.0)}, r"'sigma' has support real"),
        ("y ~ x + (1 | g)", {"sd_g": "Normal(0, 2)"}, r"'sd_g' has support real.*positive"),
        ("y ~ x + (1 | g)", {"sd": "StudentT(3, 0, 1)"}, r"'sd_g' has support real"),
        ("y ~ x + (x | g)", {"cor_g": "Normal(0, 1)"}, r"'cor_g'.*correlation.*LKJ"),
        ("y ~ x + (x | g)", {"cor": 0.5}, r"'cor_g'.*cannot be fixed"),
        ("y ~ x + (x | g)", {"cor_g": dist.LKJCholesky(3, 2.0)}, r"'cor_g'.*2 coefficients"),
        ("y ~ x", {"b_x": "LKJ(2)"}, r"'b_x'.*must be real"),
        ("y ~ x", {"sigma": -1.0}, r"'sigma' is fixed at -1.*positive"),
        ("y ~ x", {"sigma": 0.0}, r"'sigma' is fixed at 0.*positive"),
        ("k ~ x", {"phi": "Normal(1, 1)"}, r"'phi' has support real"),
    ],
)
@pytest.mark.parametrize("marginalize", ["auto", False])
def test_prior_support_must_match_the_parameter(formula, priors, pattern, marginalize):
    family = "negative_binomial" if formula.startswith("k") else "gaussian"
    with pytest.raises(hx.ModelError, match=pattern):
        hx.Model(formula, _table(), priors=priors, family=family, marginalize=marginalize)


@pytest.mark.parametrize(
    "prior",
    [
        "HalfNormal(1)",
        "Exponential(1)",
        "Gamma(2, 0.1)",
        "LogNormal(0, 1)",
        "HalfCauchy(1)",
        "InverseGamma(2, 1)",
        "Uniform(0, 5)",
        "TruncatedNormal(0, 1, low=0)",
        dist.TruncatedDistribution(dist.StudentT(3.0, 0.0, 1.0), low=0.0),  # half-Student-t
        1.5,
    ],
)
def test_priors_on_positive_numbers_are_accepted(prior):
    model = hx.Model("y ~ x + (1 | g)", _table(), priors={"sigma": prior, "sd_g": prior})
    assert set(model.priors.loc[["sigma", "sd_g"], "source"]) == {"user"}


# ------------------------------------------------- prior strings: one class
@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("Normal(0, 1/0)", "divides by zero"),
        ("HalfNormal(1e999**2)", "inf"),
        ("HalfNormal(10**10000)", "too large"),
        ("HalfNormal(log(-1))", "log"),
        ("HalfNormal(inf)", "finite"),
        ("HalfNormal(-2)", "scale must be positive"),
        ("Foo(1)", "unknown distribution 'Foo'"),
        ("HalfNorml(1)", "Did you mean 'HalfNormal'"),
        ("HalfNormal(1", "not of the form"),
        ("HalfNormal(x)", "must be numbers"),
        ("HalfNormal(" + "(" * 300 + "1" + ")" * 300 + ")", "not of the form"),
        ("HalfNormal(" + "-" * 2000 + "1)", "characters long"),
        (float("nan"), "not finite"),
        (float("inf"), "not finite"),
        ([1, 2], "must be a string"),
    ],
)
def test_prior_string_errors_name_the_parameter(value, pattern):
    with pytest.raises(hx.ModelError, match=pattern) as info:
        hx.Model("y ~ x", _table(), priors={"sigma": value})
    assert "sigma" in str(info.value)


def test_prior_for_a_parameter_that_does_not_exist_suggests_close_ones():
    with pytest.raises(hx.ModelError, match=r"\['sigmaa'\].*Did you mean 'sigma'"):
        hx.Model("y ~ x", _table(), priors={"sigmaa": "HalfNormal(1)"})
    with pytest.raises(hx.ModelError, match=r"\['sd_h'\].*Did you mean 'sd_g'"):
        hx.Model("y ~ x + (1 | g)", _table(), priors={"sd_h": "HalfNormal(1)"})


def test_priors_must_be_a_mapping():
    with pytest.raises(hx.ModelError, match="priors must be a dict"):
        hx.Model("y ~ x", _table(), priors="HalfNormal(1)")  # type: ignore[arg-type]


def test_fixed_numbers_for_a_categorical_term_are_named():
    table = _table().assign(c=lambda t: t["g"])
    with pytest.raises(hx.ModelError, match=r"b_c.*cannot be fixed"):
        hx.Model("y ~ c", table, priors={"b_c[b]": 1.0})


# ------------------------------------------------------------ case 3: trials
@pytest.mark.parametrize(
    ("trials", "pattern"),
    [
        (10.5, r"trials in column 'n'.*non-negative integer.*10\.5"),
        (-3, r"trials in column 'n'.*non-negative integer.*-3"),
    ],
)
def test_bad_trials_name_the_trials_column(trials, pattern):
    table = _table()
    table["n"] = table["n"].astype(float)
    table.loc[[2, 5], "n"] = trials
    with pytest.raises(hx.DataError, match=pattern) as info:
        hx.Model("k | trials(n) ~ x", table, family="binomial")
    assert "[2, 5]" in str(info.value)
    assert "'k'" not in str(info.value)


def test_trials_for_another_family_is_an_error():
    with pytest.raises(hx.ModelError, match=r"trials\(n\).*binomial.*poisson"):
        hx.Model("k | trials(n) ~ x", _table(), family="poisson")


# ----------------------------------------- case 4: many-level fixed effects
@pytest.mark.parametrize("levels", [5_000, 100_000])
def test_many_level_categorical_fixed_effect_suggests_a_group_term(levels):
    rng = np.random.default_rng(1)
    n = max(2 * levels, 10_000)
    table = pd.DataFrame(
        {"y": rng.normal(size=n), "c": np.char.add("L", (np.arange(n) % levels).astype(str))}
    )
    # refused before formulae builds the one-hot columns (was ~300 s for 5,000 levels and
    # a raw MemoryError asking for 74.5 GiB for 1e5)
    with pytest.raises(hx.ModelError, match=rf"'c'.*{levels} levels.*\(1 \| c\)"):
        hx.Model("y ~ c", table)


def test_many_level_interaction_names_both_columns():
    table = _table(n=400).assign(
        a=lambda t: (t.index % 20).astype(str), b=lambda t: (t.index // 20).astype(str)
    )
    with pytest.raises(hx.ModelError, match=r"'a:b'.*\['a', 'b'\].*\(1 \| a:b\)"):
        hx.Model("y ~ a:b", table)


def test_categorical_at_the_level_limit_builds():
    levels = MAX_FIXED_LEVELS
    table = pd.DataFrame(
        {
            "y": np.random.default_rng(2).normal(size=3 * levels),
            "c": [f"L{i % levels}" for i in range(3 * levels)],
        }
    )
    model = hx.Model("y ~ c", table)
    assert model.design.X.shape == (3 * levels, levels)


def test_collinearity_check_names_dependent_columns():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    z = rng.normal(size=200)
    ones = np.ones(200)
    X = np.column_stack([ones, x, 2 * x - ones, z, np.zeros(200), x + z])
    assert _dependent_columns(X) == [2, 4, 5]
    assert _dependent_columns(np.column_stack([ones, x, z])) == []
    # nearly collinear but full rank (an offset of 1e6 with a spread of 1): not flagged
    assert _dependent_columns(np.column_stack([ones, 1e6 + x])) == []
    assert _dependent_columns(np.column_stack([ones, x])[:1]) == [1]  # more columns than rows


def test_collinearity_is_checked_on_many_rows_without_an_n_by_n_matrix():
    rng = np.random.default_rng(4)
    n = 400_000  # an n x n matrix would need 1.2 TB
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 5))])
    X = np.column_stack([X, X[:, 1] - X[:, 2]])
    assert _dependent_columns(X) == [6]


# ------------------------------------------------ formula syntax: one class
@pytest.mark.parametrize(
    ("formula", "character"),
    [
        ("y ~ (|g)", 6),
        ("y ~ x + (|g)", 10),
        ("y ~ x **", 9),
        ("y ~ x +", 7),
        ("y ~ x + + z", 9),
        ("y ~ (x", 5),
        ("y ~ x)", 6),
        ("y ~ x + (1 | g", 9),
        ("y ~", 4),
        ("", 1),
        ("y x", 4),
        ("y ~ x | g", 7),
        ("y ~ x, z", 6),
        ("y ~ x % z", 7),
        ("y ~ x $ z", 7),
        ("y ~ x ~ z", 7),
        ("y ~ 1 + (x + | g)", 13),
        ("y ~ x + (1 | g + z)", 14),
        ("y ~ x ** z", 5),
        ("y ~ x + (1 | g)(1 | g)", 9),
    ],
)
def test_formula_syntax_errors_quote_the_formula_and_position(formula, character):
    with pytest.raises(hx.ModelError) as info:
        hx.Model(formula, _table())
    message = str(info.value)
    assert repr(formula) in message
    assert f"at character {character}:" in message
    caret = message.splitlines()[-1]
    assert caret.index("^") - 4 == character - 1


def test_formula_must_be_a_string():
    with pytest.raises(hx.ModelError, match="must be a string"):
        hx.Model(None, _table())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("formula", "pattern"),
    [
        ("y ~ foo(x)", r"unknown function or name 'foo'"),
        ("y ~ np.load(x)", r"unknown function or name 'np.load'"),
        ("y ~ x + (1 + bar(x) | g)", r"'bar'"),
    ],
)
def test_unknown_functions_are_named(formula, pattern):
    with pytest.raises(hx.ModelError, match=pattern):
        hx.Model(formula, _table())


# ------------------------------------------------ datetime and complex columns
@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        (pd.date_range("2020-01-01", periods=40), r"'t' holds dates.*days since"),
        (pd.date_range("2020-01-01", periods=40, tz="UTC"), r"'t' holds dates"),
        (pd.to_timedelta(np.arange(40), unit="D"), r"'t' holds durations.*total_seconds"),
        (pd.period_range("2020-01", periods=40, freq="M"), r"'t' holds dates"),
        (np.arange(40) + 1j, r"'t' holds complex.*np.real"),
    ],
)
@pytest.mark.parametrize("formula", ["y ~ t", "y ~ x + (t | g)", "t ~ x", "y ~ scale(t)"])
def test_datetime_and_complex_columns_are_named(values, pattern, formula):
    table = _table().assign(t=values)
    with pytest.raises(hx.DataError, match=pattern):
        hx.Model(formula, table)


def test_datetime_grouping_factor_is_fine():
    table = _table().assign(day=np.repeat(pd.date_range("2020-01-01", periods=4), 10))
    model = hx.Model("y ~ x + (1 | day)", table)
    assert len(model.design.groups[0].levels) == 4


# --------------------------------------------------------- formula transforms
@pytest.mark.parametrize(
    ("expr", "column"),
    [
        ("I(x**2)", lambda x: x**2),
        ("{x**2}", lambda x: x**2),
        ("I(x / 2)", lambda x: x / 2),
        ("np.log(x)", np.log),
        ("log(x)", np.log),
        ("exp(x)", np.exp),
        ("sqrt(x)", np.sqrt),
        ("np.log1p(x)", np.log1p),
        ("center(x)", lambda x: x - x.mean()),
        ("scale(x)", lambda x: (x - x.mean()) / x.std()),
    ],
)
def test_transforms_give_the_design_of_an_explicit_column(expr, column):
    table = _table()
    table["w"] = column(table["x"].to_numpy())
    transformed = hx.Model(f"y ~ {expr} + (1 + {expr} | g)", table)
    explicit = hx.Model("y ~ w + (1 + w | g)", table)
    np.testing.assert_allclose(transformed.design.X, explicit.design.X, rtol=1e-12)
    np.testing.assert_allclose(
        transformed.design.groups[0].Z, explicit.design.groups[0].Z, rtol=1e-12
    )


def test_stateful_transforms_use_the_training_mean_and_sd_on_new_data():
    table = _table()
    x = table["x"].to_numpy()
    model = hx.Model("y ~ scale(x) + (1 + center(x) | g)", table)
    new = pd.DataFrame({"x": [0.0, 1.0, 10.0], "g": ["a", "b", "c"]})
    arrays = new_data_design(model.design, new, allow_new_levels=False)
    np.testing.assert_allclose(arrays["X"][:, 1], (new["x"] - x.mean()) / x.std(), rtol=1e-12)
    np.testing.assert_allclose(arrays["Z_g"][:, 1], new["x"] - x.mean(), rtol=1e-12)


def test_transform_of_a_missing_column_names_it():
    with pytest.raises(hx.DataError, match=r"\['xx'\].*Did you mean 'x'"):
        hx.Model("y ~ log(xx)", _table())
    with pytest.raises(hx.DataError, match=r"\['xx'\]"):
        hx.Model("y ~ x + (1 + I(xx**2) | g)", _table())


@pytest.mark.parametrize("formula", ["y ~ log(v)", "y ~ x + (np.sqrt(v) | g)", "y ~ I(1 / v)"])
def test_transform_that_is_not_finite_names_the_column_and_rows(formula):
    table = _table().assign(v=lambda t: t["x"])
    table.loc[[3, 8], "v"] = 0.0 if "1 /" in formula or "log" in formula else -1.0
    with pytest.raises(hx.DataError, match=r"NaN or infinite in 2 row.*\[3, 8\].*'v'"):
        hx.Model(formula, table)


def test_transform_that_is_not_finite_on_new_data_is_named():
    model = hx.Model("y ~ log(x)", _table())
    with pytest.raises(hx.DataError, match=r"'log\(x\)'.*\[1\].*'x'"):
        new_data_design(model.design, pd.DataFrame({"x": [1.0, -1.0]}), allow_new_levels=False)


@pytest.mark.filterwarnings("ignore::hierax.ConvergenceWarning")  # a short fit; not the point
def test_fit_and_predict_with_transforms_end_to_end():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 3.0, size=60)
    z = rng.normal(5.0, 2.0, size=60)
    g = np.repeat(list("abcdef"), 10)
    y = 1.0 + 0.5 * x**2 + 0.3 * z + rng.normal(0, 0.3, size=60)
    table = pd.DataFrame({"y": y + np.repeat(rng.normal(0, 0.5, 6), 10), "x": x, "z": z, "g": g})
    fit = hx.Model("y ~ I(x**2) + scale(z) + (1 | g)", table).fit(
        chains=1, draws=100, warmup=100, seed=1, progress=False
    )
    slope = fit.draws("b_I(x**2)")
    assert abs(slope.mean() - 0.5) < 5 * slope.std()
    # new rows are coded with the training mean and sd of z
    new = pd.DataFrame({"x": [1.0, 2.0], "z": [0.0, 10.0], "g": ["a", "a"]})
    mean = np.asarray(fit.predict(new, kind="mean")).reshape(-1, 2)
    expected = (
        fit.draws("Intercept").reshape(-1, 1)
        + fit.draws("b_I(x**2)").reshape(-1, 1) * new["x"].to_numpy() ** 2
        + fit.draws("b_scale(z)").reshape(-1, 1) * (new["z"].to_numpy() - z.mean()) / z.std()
        + fit.draws("r_g").reshape(mean.shape[0], -1)[:, :1]
    )
    np.testing.assert_allclose(mean, expected, rtol=1e-9, atol=1e-9)


def test_unsafe_names_in_transformed_terms_are_netcdf_safe():
    model = hx.Model("y ~ I(x / 2)", _table())
    assert [term.name for term in model.design.fixed_terms] == ["I(x_div_2)"]
    assert "b_I(x_div_2)" in model.priors.index


def test_error_messages_have_no_formulae_internals():
    for formula in ["y ~ x **", "y ~ x + (x + | g)", "y ~ x ** z"]:
        with pytest.raises(hx.ModelError) as info:
            hx.Model(formula, _table())
        assert not re.search(r"Traceback|formulae\.parser", str(info.value))
