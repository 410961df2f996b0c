"""Prior supports in nonlinear models (issue 16, case 1, on the nonlinear paths).

A prior whose support does not match its parameter's, or a number that fixes
a parameter outside its support, is a :class:`~hierax.ModelError` naming the
parameter and both supports, raised when the model is built: through
``hx.Model(..., params=...)``, ``NonlinearModel``, a linear formula observed
through a calibration, and a spec file. Sub-formula coefficients (on the
scale before a link or bounds) are real and take any real prior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest

import hierax as hx
from hierax.calibration import CalibrationModel
from hierax.frontends.nonlinear import NonlinearModel
from hierax.interface.spec import build_model, parse_spec

FORMULA = "y ~ a * exp(-k * x)"
PARAMS: dict[str, Any] = {"a": "1 + (1 | g)", "k": "1"}
PRIORS: dict[str, Any] = {"a": "Normal(1, 1)", "k": "HalfNormal(1)"}
#: A response column for each family (the mean expression is left as it is).
RESPONSES = {
    "gaussian": "y",
    "student_t": "y",
    "negative_binomial": "count",
    "gamma": "positive",
    "beta": "fraction",
}
POSITIVE_PRIORS: list[Any] = [
    "HalfNormal(1)",
    "Exponential(1)",
    "LogNormal(0, 1)",
    "Gamma(2, 0.1)",
    "Uniform(0, 5)",
    "TruncatedNormal(0, 1, low=0)",
    "LogUniform(exp(-2), exp(3))",
    dist.HalfNormal(1.0),
    1.5,
]


def _table(n: int = 24, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.1, 3.0, n)
    return pd.DataFrame(
        {
            "x": x,
            "y": 2.0 * np.exp(-0.5 * x) + rng.normal(0, 0.1, n),
            "count": rng.poisson(3.0, n),
            "positive": rng.gamma(2.0, 1.0, n),
            "fraction": rng.uniform(0.1, 0.9, n),
            "g": np.tile(["a", "b", "c"], n // 3),
        }
    )


def _model(
    params: dict[str, Any] | None = None,
    priors: dict[str, Any] | None = None,
    family: str = "gaussian",
    formula: str = FORMULA,
    **kwargs: Any,
) -> Any:
    lhs, rhs = formula.split("~")
    return hx.Model(
        f"{RESPONSES[family]} ~{rhs}" if lhs.strip() == "y" else formula,
        _table(),
        params={**PARAMS, **(params or {})},
        priors={k: v for k, v in {**PRIORS, **(priors or {})}.items() if v is not None},
        family=family,
        **kwargs,
    )


# ------------------------------------------------- family parameters and group sds
@pytest.mark.parametrize(
    ("family", "params", "priors", "pattern"),
    [
        (
            "gaussian",
            {},
            {"sigma": "Normal(0, 1)"},
            r"prior Normal\(0, 1\) for 'sigma' has support real but 'sigma' must be positive",
        ),
        ("gaussian", {}, {"sigma": "Uniform(-1, 5)"}, r"'sigma' has support \[-1, 5\].*positive"),
        ("gaussian", {}, {"sigma": dist.Normal(0.0, 1.0)}, r"'sigma' has support real.*positive"),
        ("gaussian", {}, {"sigma": "Cauchy(0, 2)"}, r"'sigma' has support real.*HalfNormal\(2\)"),
        ("gaussian", {}, {"sigma": -1.0}, r"'sigma' is fixed at -1, but 'sigma' must be positive"),
        ("gaussian", {}, {"sigma": 0.0}, r"'sigma' is fixed at 0, but 'sigma' must be positive"),
        ("student_t", {}, {"nu": "Normal(5, 2)"}, r"'nu' has support real but 'nu' must be pos"),
        ("negative_binomial", {}, {"phi": "Normal(1, 1)"}, r"'phi' has support real.*positive"),
        ("gamma", {}, {"shape": "StudentT(3, 0, 1)"}, r"'shape' has support real.*positive"),
        ("beta", {}, {"phi": "Laplace(0, 1)"}, r"'phi' has support real.*positive"),
        ("gaussian", {}, {"sd_a_g": "Normal(0, 2)"}, r"'sd_a_g' has support real.*positive"),
        ("gaussian", {}, {"sd_a_g": -0.1}, r"'sd_a_g' is fixed at -0.1.*must be positive"),
        (
            "gaussian",
            {"a": "1 + (1 + x | g)"},
            {"cor_a_g": "Normal(0, 1)"},
            r"'cor_a_g' has support real.*correlation Cholesky factors.*LKJ",
        ),
        ("gaussian", {"a": "1 + (1 + x | g)"}, {"cor_a_g": 0.5}, r"'cor_a_g'.*cannot be fixed"),
        (
            "gaussian",
            {"a": "1 + (1 + x | g)"},
            {"cor_a_g": dist.LKJCholesky(3, 2.0)},
            r"'cor_a_g' is over \(3, 3\) matrices.*2 coefficients",
        ),
        (
            "gaussian",
            {"k": "1 + x"},
            {"k": None, "k_Intercept": "Normal(0, 1)", "b_k_x": "LKJ(2)"},
            r"'b_k_x' has support correlation Cholesky factors but 'b_k_x' must be real",
        ),
    ],
)
def test_prior_support_must_match_the_parameter(family, params, priors, pattern):
    with pytest.raises(hx.ModelError, match=pattern):
        _model(params, priors, family=family)


# -------------------------------------------------------- distributional parameters
@pytest.mark.parametrize(
    ("sigma", "priors", "pattern"),
    [
        (
            hx.param("1", link="identity"),
            {"sigma_Intercept": "Normal(0, 1)"},
            r"'sigma_Intercept' has support real but 'sigma_Intercept' must be positive.*"
            r"'sigma_Intercept' is the gaussian family's sigma through an identity link",
        ),
        (
            hx.param("1", link="identity"),
            {"sigma_Intercept": -0.5},
            r"'sigma_Intercept' is fixed at -0.5.*must be positive",
        ),
        (
            hx.param("1 + x", link="identity"),
            {"sigma_Intercept": "HalfNormal(1)", "b_sigma_x": "HalfNormal(1)"},
            r"'sigma' must be positive \(it is the gaussian family's sigma\), but its "
            r"sub-formula '1 \+ x' with an identity link let it be real; use .*link='log'",
        ),
        (
            hx.param("1", lower=-1.0),
            {"sigma_Intercept": "Normal(0, 1)"},
            r"'sigma' must be positive.*its bounds \(lower=-1.0, upper=None\) let it be > -1",
        ),
        (
            hx.param("1", link="inverse"),
            {"sigma_Intercept": "Normal(0, 1)"},
            r"'sigma' must be positive.*its inverse link let it be real",
        ),
    ],
)
def test_distributional_family_parameter_must_stay_in_its_support(sigma, priors, pattern):
    with pytest.raises(hx.ModelError, match=pattern):
        _model({"sigma": sigma}, priors)


@pytest.mark.parametrize(
    ("sigma", "priors"),
    [
        ("1 + x", {"sigma_Intercept": "Normal(0, 1)", "b_sigma_x": "Normal(0, 1)"}),  # log
        (hx.param("1", link="identity"), {"sigma_Intercept": "HalfNormal(1)"}),
        (hx.param("1 + x", lower=0.0), {"sigma_Intercept": "Normal(0, 1)", "b_sigma_x": 0.5}),
        (hx.param("1", lower=0.0, upper=2.0), {"sigma_Intercept": "Normal(0, 1.5)"}),
    ],
)
def test_distributional_family_parameter_inside_its_support_is_accepted(sigma, priors):
    model = _model({"sigma": sigma}, priors)
    assert "sigma" in model.distributional


# ------------------------------------------------------------------ latent populations
@pytest.mark.parametrize(
    ("latent", "params", "priors", "pattern"),
    [
        (
            "Normal(0, sd_u)",
            {"sd_u": "1"},
            {"sd_u": "Normal(0, 1)"},
            r"prior Normal\(0, 1\) for 'sd_u' has support real but 'sd_u' must be positive.*"
            r"'sd_u' is the scale of the latent 'u' ~ Normal\(0, sd_u\)",
        ),
        (
            "Normal(0, sd_u)",
            {"sd_u": "1"},
            {"sd_u": -0.5},
            r"'sd_u' is fixed at -0.5, but 'sd_u' must be positive.*latent 'u'",
        ),
        (
            "StudentT(nu_u, 0, 0.1)",
            {"nu_u": "1"},
            {"nu_u": "Normal(4, 1)"},
            r"'nu_u' has support real but 'nu_u' must be positive.*the df of the latent 'u'",
        ),
        (
            "Normal(0, sd_u)",
            {"sd_u": "1 + (1 | g)"},
            {"sd_u": "HalfNormal(1)"},
            r"'sd_u' must be positive \(it is the scale of the latent 'u'.*identity link",
        ),
        (
            "Normal(0, -1)",
            {},
            {},
            r"invalid latent distribution 'Normal\(0, -1\)' of 'u': Normal's scale must be "
            r"positive, got -1",
        ),
        (
            "Gamma(0, 1)",
            {},
            {},
            r"latent distribution 'Gamma\(0, 1\)' of 'u'.*concentration must be positive, got 0",
        ),
        (
            "Uniform(1, 0)",
            {},
            {},
            r"latent distribution 'Uniform\(1, 0\)' of 'u'.*low \(1\) must be below high \(0\)",
        ),
        (
            "Normal(0, 1 / 0)",
            {},
            {},
            r"argument 'scale' \(1 / 0\) of the latent distribution 'Normal\(0, 1 / 0\)' of 'u'",
        ),
        (
            "Normal(0, 1, spread=2)",
            {},
            {},
            r"latent distribution 'Normal\(0, 1, spread=2\)' of 'u' does not fit Normal's",
        ),
    ],
)
def test_latent_distribution_arguments_must_match_their_supports(latent, params, priors, pattern):
    with pytest.raises(hx.ModelError, match=pattern):
        _model({"u": hx.latent(latent), **params}, priors, formula="y ~ a * exp(-k * x) + u")


@pytest.mark.parametrize("prior", POSITIVE_PRIORS)
def test_positive_priors_are_accepted_on_every_positive_site(prior):
    model = _model(
        {"u": hx.latent("Normal(0, sd_u)"), "sd_u": "1"},
        {"sigma": prior, "sd_a_g": prior, "sd_u": prior},
        formula="y ~ a * exp(-k * x) + u",
    )
    assert set(model.priors.loc[["sigma", "sd_a_g", "sd_u"], "source"]) == {"user"}


@pytest.mark.parametrize(
    "latent",
    [
        "TruncatedNormal(mu_u, exp(ln_sd_u), low=0)",  # a function of a real parameter
        "Normal(mu_u, 0.1 + 0 * ln_sd_u)",
        "StudentT(3, mu_u, exp(ln_sd_u))",
    ],
)
def test_latent_scale_given_by_an_expression_of_real_parameters_is_accepted(latent):
    params = {"u": hx.latent(latent), "mu_u": "1", "ln_sd_u": "1"}
    priors = {"mu_u": "TruncatedNormal(1, 2, low=0)", "ln_sd_u": "Uniform(-8, 0)"}
    assert _model(params, priors, formula="y ~ a * exp(-k * x) + u").latents


# ------------------------------------------------- real coefficients and bounded params
@pytest.mark.parametrize(
    "prior", ["Normal(0, 10)", "StudentT(3, 0, 1)", "Uniform(-8, 0)", "Beta(2, 2)", -1.0]
)
def test_sub_formula_coefficients_take_any_real_prior(prior):
    model = _model(
        {"k": hx.param("1 + x", lower=0.0, upper=1.0)},
        {"a": prior, "k": None, "k_Intercept": prior, "b_k_x": prior},
    )
    assert set(model.priors.loc[["a", "k_Intercept", "b_k_x"], "source"]) == {"user"}


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (
            hx.param("1", lower=0.0, upper=1.0),
            r"a prior is given for 'k', but 'k' is not a sample site: it has bounds \(lower=0.0, "
            r"upper=1.0\).*\['k_Intercept'\] instead \(on the real line",
        ),
        (hx.param("1", link="log"), r"prior is given for 'k'.*it has a log link.*'k_Intercept'"),
        (
            "1 + x",
            r"prior is given for 'k'.*terms besides an intercept.*\['k_Intercept', 'b_k_x'\]",
        ),
    ],
)
def test_prior_for_a_transformed_parameter_says_where_priors_go(spec, pattern):
    with pytest.raises(hx.ModelError, match=pattern):
        _model({"k": spec}, {"k": "Beta(2, 2)"})


# --------------------------------------------------------------- calibration models
def _calibration(noise: str = "normal") -> CalibrationModel:
    names = ["intercept", "slope", "sigma"] if noise == "normal" else None
    return CalibrationModel(
        "linear", noise, theta_names=names, independent_key="P", dependent_key="readout"
    )


def _measured(noise: str, priors: dict[str, Any], params: dict[str, Any] | None = None) -> Any:
    from hierax.examples import calibration

    return hx.Model(
        "readout ~ S0 * (1 - exp(-k * time))",
        calibration.load_data(),
        params={"intercept": "1 + (1 | batch)", "S0": "1", "k": "1", **(params or {})},
        priors={
            "intercept": "Normal(0.3, 0.2)",
            "sd_intercept_batch": 0.1,
            "slope": "Normal(0.5, 0.5)",
            "S0": "LogNormal(log(5), 0.05)",
            "k": "HalfNormal(0.1)",
            **priors,
        },
        centered={"intercept_batch": True},
        measurement=_calibration(noise),
    )


CALIBRATION_OK = {
    "normal": {"sigma": "LogNormal(log(0.1), 0.1)"},
    "studentt": {"scale": "HalfNormal(0.1)", "df": "Gamma(2, 0.1)"},
}


@pytest.mark.parametrize(
    ("noise", "priors", "params", "pattern"),
    [
        ("normal", {"sigma": "Normal(0, 0.1)"}, {}, r"'sigma' has support real.*'sigma' must be"),
        ("normal", {"sigma": -0.1}, {}, r"'sigma' is fixed at -0.1, but 'sigma' must be positive"),
        ("studentt", {"df": "Normal(3, 1)"}, {}, r"'df' has support real but 'df' must be pos"),
        ("studentt", {"scale": "Uniform(-1, 1)"}, {}, r"'scale' has support \[-1, 1\].*positive"),
        (
            "studentt",
            {"scale": "Normal(0, 1)"},
            {"scale": "1"},
            r"'scale' has support real.*'scale' is the calibration's noise parameter scale",
        ),
        (
            "studentt",
            {"scale": "HalfNormal(1)"},
            {"scale": "1 + (1 | batch)"},
            r"'scale' must be positive \(it is the calibration's noise parameter scale\)",
        ),
    ],
)
def test_calibration_parameter_priors_must_match_their_supports(noise, priors, params, pattern):
    with pytest.raises(hx.ModelError, match=pattern):
        _measured(noise, {**CALIBRATION_OK[noise], **priors}, params)


@pytest.mark.parametrize("noise", ["normal", "studentt"])
def test_calibration_parameters_with_positive_priors_are_accepted(noise):
    model = _measured(noise, CALIBRATION_OK[noise])
    assert model.priors.loc[list(CALIBRATION_OK[noise]), "source"].eq("user").all()


def test_linear_formula_through_a_calibration_checks_its_noise_prior():
    table = _table().rename(columns={"y": "absorbance"})
    cal = CalibrationModel("linear", "normal", independent_key="conc", dependent_key="absorbance")
    priors = {"conc_Intercept": "Normal(0, 2)", "b_conc_x": "Normal(0, 2)", "intercept": 0.1}
    with pytest.raises(hx.ModelError, match=r"'sigma' has support real.*'sigma' must be pos"):
        hx.Model(
            "absorbance ~ 1 + x",
            table,
            measurement=cal,
            priors={**priors, "slope": 2.0, "sigma": "Normal(0, 1)"},
        )
    fine = hx.Model(
        "absorbance ~ 1 + x", table, measurement=cal, priors={**priors, "slope": 2.0, "sigma": 0.05}
    )
    assert fine.priors.loc["sigma", "prior"] == "fixed at 0.05"


# ------------------------------------------------------------------ every front end
def test_nonlinear_model_class_checks_supports_too():
    with pytest.raises(hx.ModelError, match=r"'sigma' has support real but 'sigma' must be"):
        NonlinearModel(FORMULA, _table(), params=PARAMS, priors={**PRIORS, "sigma": "Normal(0, 1)"})


@pytest.mark.parametrize(
    ("params", "priors", "pattern"),
    [
        ("", 'sigma = "Normal(0, 1)"', r"'sigma' has support real but 'sigma' must be positive"),
        ("", "sd_a_g = -1.0", r"'sd_a_g' is fixed at -1, but 'sd_a_g' must be positive"),
        (
            'u = { latent = "Normal(0, sd_u)" }\nsd_u = "1"',
            'sd_u = "Normal(0, 1)"',
            r"'sd_u' has support real.*latent 'u'",
        ),
    ],
)
def test_spec_files_check_supports(tmp_path: Path, params, priors, pattern):
    table = _table()
    table.to_csv(tmp_path / "data.csv", index=False)
    formula = "y ~ a * exp(-k * x)" + (" + u" if "latent" in params else "")
    text = f"""
[data]
file = "data.csv"

[model]
formula = "{formula}"

[model.params]
a = "1 + (1 | g)"
k = "1"
{params}

[model.priors]
a = "Normal(1, 1)"
k = "HalfNormal(1)"
{priors}
"""
    spec = parse_spec(text, tmp_path, path=tmp_path / "model.toml")
    with pytest.raises(hx.ModelError, match=pattern):
        build_model(spec, table)


@pytest.mark.parametrize("name", ["binaries_nl", "parallax_nl", "calibration_nl"])
def test_readme_nonlinear_examples_still_build(name):
    import importlib

    example = importlib.import_module(f"hierax.examples.{name}")
    model = example.model()
    assert set(model.priors["source"]) <= {"user", "default"}
