"""Nonlinear multilevel models: expressions, errors, and equality with hand-written models."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from models import assert_same_posterior
from numpyro.infer.util import log_density

import hierax as hx
from hierax.examples import calibration, parallax
from hierax.models.expression import parse_expression, resolve_names

CALIBRATION_PRIORS = {
    "intercept": "Normal(0.3, 0.2)",
    "sd_intercept_batch": 0.1,
    "slope": "Normal(0.5, 0.5)",
    "S0": "LogNormal(log(5), 0.05)",
    "k": "HalfNormal(0.1)",
    "sigma": "LogNormal(log(0.1), 0.1)",
}
CALIBRATION_PARAMS = {"intercept": "1 + (1 | batch)", "slope": "1", "S0": "1", "k": "1"}
CALIBRATION_FORMULA = "readout ~ intercept + slope * S0 * (1 - exp(-k * time))"


def calibration_model() -> hx.NonlinearModel:
    return hx.Model(
        CALIBRATION_FORMULA,
        calibration.load_data(),
        params=CALIBRATION_PARAMS,
        priors=CALIBRATION_PRIORS,
        centered={"intercept_batch": True},
    )


def parallax_model() -> hx.NonlinearModel:
    return hx.Model(
        "parallax | se(parallax_error) ~ 1 / r",
        parallax.load_data(),
        params={
            "r": hx.latent("TruncatedNormal(mu_r, exp(ln_std_r), low=0)"),
            "mu_r": "1",
            "ln_std_r": "1",
        },
        priors={"mu_r": "TruncatedNormal(1, 2, low=0)", "ln_std_r": "Uniform(-8, 0)"},
    )


# ------------------------------------------------------------ expressions
def test_expression_evaluates_with_broadcasting() -> None:
    expression = parse_expression("a * cos(2 * pi * t / P) + b * sin(2 * pi * t / P) + v0")
    t = jnp.array([0.0, 0.25, 0.5])
    value = expression({"a": 2.0, "b": 1.0, "v0": -1.0, "P": 1.0, "t": t})
    np.testing.assert_allclose(value, [1.0, 0.0, -3.0], atol=1e-9)
    assert expression.names == {"a", "b", "v0", "P", "t"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a + foo(b)", "unknown function 'foo'"),
        ("__import__('os')", "unknown function '__import__'"),
        ("a.b", "not allowed"),
        ("a[0]", "not allowed"),
        ("a if b else c", "not allowed"),
        ("a +", "cannot parse"),
    ],
)
def test_unsafe_or_unknown_expressions_are_rejected(text: str, fragment: str) -> None:
    with pytest.raises(hx.ModelError, match=fragment):
        parse_expression(text)


def test_names_must_be_columns_or_parameters_but_not_both() -> None:
    expression = parse_expression("k * time")
    with pytest.raises(hx.ModelError, match=r"\['k'\].*both"):
        resolve_names(expression, ["time", "k"], ["k"])
    with pytest.raises(hx.ModelError, match=r"\['time'\].*neither.*Did you mean 'tme'"):
        resolve_names(expression, ["tme"], ["k"])


def test_unused_parameter_and_missing_priors_are_named() -> None:
    table = calibration.load_data()
    with pytest.raises(hx.ModelError, match=r"\['extra'\].*used neither"):
        hx.Model(
            CALIBRATION_FORMULA,
            table,
            params={**CALIBRATION_PARAMS, "extra": "1"},
            priors=CALIBRATION_PRIORS,
        )
    with pytest.raises(hx.ModelError, match=r"missing: \['slope', 'S0', 'k'\]"):
        hx.Model(
            CALIBRATION_FORMULA,
            table,
            params=CALIBRATION_PARAMS,
            priors={"intercept": "Normal(0, 1)"},
        )
    with pytest.raises(hx.ModelError, match="unknown distribution 'TruncNormal'"):
        hx.Model("readout ~ r", table, params={"r": hx.latent("TruncNormal(0, 1)")}, priors={})


def test_registered_user_function() -> None:
    def first_order(t, k):
        return 1 - jnp.exp(-k * t)

    model = hx.Model(
        "readout ~ intercept + slope * S0 * first_order(time, k)",
        calibration.load_data(),
        params=CALIBRATION_PARAMS,
        priors=CALIBRATION_PRIORS,
        functions={"first_order": first_order},
        centered={"intercept_batch": True},
    )
    reference = calibration_model()
    params = {
        "intercept": 0.3,
        "intercept_batch": np.array([0.4, 0.2, 0.3]),
        "slope": 0.4,
        "S0": 5.0,
        "k": 0.07,
        "sigma": 0.1,
    }
    ours, _ = log_density(model.model_fn, (), model.arrays(), params)
    theirs, _ = log_density(reference.model_fn, (), reference.arrays(), params)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-9)


# ------------------------------------------------- equality with hand-written
def test_calibration_log_density_equals_hand_written() -> None:
    model = calibration_model()
    setup = calibration.setup()
    rng = np.random.default_rng(0)
    for _ in range(3):
        common = {
            "intercept": rng.normal(0.3, 0.1),
            "slope": rng.uniform(0.2, 0.6),
            "S0": rng.uniform(4.0, 6.0),
            "k": rng.uniform(0.02, 0.1),
            "sigma": rng.uniform(0.05, 0.2),
        }
        offsets = rng.normal(0, 0.1, 3)
        ours, _ = log_density(
            model.model_fn,
            (),
            model.arrays(),
            {**common, "intercept_batch": common["intercept"] + offsets},
        )
        theirs, _ = log_density(
            setup["model_fn"],
            (),
            setup["data"],
            {**common, "intercept_batch": common["intercept"] + offsets},
        )
        np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-9)


def test_parallax_log_density_equals_hand_written() -> None:
    model = parallax_model()
    setup = parallax.setup()
    rng = np.random.default_rng(1)
    for _ in range(3):
        params = {
            "mu_r": rng.uniform(0.45, 0.55),
            "ln_std_r": rng.uniform(-6, -3),
            "r": rng.uniform(0.48, 0.52, size=256),
        }
        ours, _ = log_density(model.model_fn, (), model.arrays(), params)
        theirs, _ = log_density(setup["model_fn"], (), setup["data"], params)
        np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-9)


def _agree(ours: hx.Fit, theirs: hx.Fit, names: list[str], spread: str = "sd") -> None:
    assert_same_posterior(ours, theirs, names, spread=spread)


def test_calibration_posterior_equals_hand_written() -> None:
    ours = calibration_model().fit(seed=11, progress=False)
    theirs = calibration.fit(seed=12, progress=False)
    assert ours.divergences == 0
    _agree(
        ours,
        theirs,
        ["k", "S0", "intercept", "intercept_batch", "slope", "sigma"],
        spread="interval",
    )


@pytest.mark.slow
def test_parallax_posterior_equals_hand_written() -> None:
    init = parallax.initial_values(parallax.load_data())
    ours = parallax_model().fit(seed=11, progress=False, init=init)
    theirs = parallax.fit(seed=12, progress=False)
    assert ours.divergences == 0
    _agree(ours, theirs, ["mu_r", "ln_std_r"])
    assert ours.summary(var_names=["r"])["r_hat"].max() <= 1.01


def test_binaries_log_density_equals_hand_written_up_to_the_sd_jacobian() -> None:
    from hierax.examples import binaries, binaries_nl

    model = binaries_nl.model()
    setup = binaries.setup()
    rng = np.random.default_rng(2)
    start = binaries.initial_values(binaries.load_data())
    for _ in range(3):
        mu, lnsigma = rng.uniform(1.2, 2.5), rng.uniform(-1.5, 0.5)
        lnP = start["lnP"] + rng.normal(0, 1e-5, 14)
        a, b, v0 = (start[k] + rng.normal(0, 0.1, 14) for k in ("a", "b", "v0"))
        ours, _ = log_density(
            model.model_fn,
            (),
            model.arrays(),
            {
                "lnP": mu,
                "sd_lnP_star": np.exp(lnsigma),
                "lnP_star": lnP,
                "r_a_star": a,
                "r_b_star": b,
                "r_v0_star": v0,
            },
        )
        theirs, _ = log_density(
            setup["model_fn"],
            (),
            setup["data"],
            {"mu": mu, "lnsigma": lnsigma, "lnP": lnP, "a": a, "b": b, "v0": v0},
        )
        # LogUniform on sd vs Uniform on log sd: densities differ by the Jacobian 1/sd
        np.testing.assert_allclose(float(ours), float(theirs) - lnsigma, rtol=1e-9)


@pytest.mark.slow
def test_binaries_posterior_equals_hand_written() -> None:
    import arviz as az

    from hierax.examples import binaries, binaries_nl

    ours = binaries_nl.fit(seed=11, progress=False)
    theirs = binaries.fit(seed=12, progress=False)
    assert ours.divergences == 0
    ours_h = az.from_dict(
        posterior={"mu": ours.posterior["lnP"].values, "sd": ours.posterior["sd_lnP_star"].values}
    )
    theirs_h = az.from_dict(
        posterior={
            "mu": theirs.posterior["mu"].values,
            "sd": np.exp(theirs.posterior["lnsigma"].values),
        }
    )
    _agree(hx.Fit(ours_h, findings=[]), hx.Fit(theirs_h, findings=[]), ["mu", "sd"])
    np.testing.assert_allclose(
        ours.draws("lnP_star").mean(0), theirs.draws("lnP").mean(0), rtol=0, atol=3e-4
    )


def test_distributional_sigma_varies_by_batch() -> None:
    rng = np.random.default_rng(0)
    batch = np.repeat(["a", "b"], 100)
    y = 1.0 + rng.normal(0, np.where(batch == "a", 0.1, 1.0))
    model = hx.Model(
        "y ~ mu",
        pd.DataFrame({"y": y, "batch": batch}),
        params={"mu": "1", "sigma": "0 + batch"},  # log link by default for sigma
        priors={"mu": "Normal(0, 5)", "b_sigma_batch": "Normal(0, 2)"},
    )
    assert "sigma" not in model.priors.index  # modelled, not given a prior
    fit = model.fit(seed=1, progress=False, draws=500, warmup=500)
    sigma = np.exp(fit.draws("b_sigma_batch"))
    for column, true in enumerate([0.1, 1.0]):
        assert (
            abs(np.log(sigma[:, column]).mean() - np.log(true)) < 3 * np.log(sigma[:, column]).std()
        )
    assert fit.divergences == 0


def test_bounded_parameter_through_its_transform() -> None:
    bounded = hx.param("1", lower=0.0, upper=2.0)
    np.testing.assert_allclose(
        bounded.transform(jnp.array([-50.0, 0.0, 50.0])), [0.0, 1.0, 2.0], atol=1e-9
    )
    np.testing.assert_allclose(hx.param(lower=1.0).transform(jnp.array([0.0])), [2.0])
    np.testing.assert_allclose(hx.param(upper=1.0).transform(jnp.array([0.0])), [0.0])
    with pytest.raises(hx.ModelError, match="lower < upper"):
        hx.param(lower=2.0, upper=1.0)
    table = calibration.load_data()
    model = hx.Model(
        CALIBRATION_FORMULA,
        table,
        params={**CALIBRATION_PARAMS, "k": hx.param("1", lower=0.0, upper=1.0)},
        priors={
            **{k: v for k, v in CALIBRATION_PRIORS.items() if k != "k"},
            "k_Intercept": "Normal(-2.5, 1)",  # on the logit scale
        },
        centered={"intercept_batch": True},
    )
    fit = model.fit(seed=3, draws=300, warmup=300, progress=False)
    assert fit.divergences == 0
    k = fit.draws("k")
    np.testing.assert_allclose(k, 1 / (1 + np.exp(-fit.draws("k_Intercept"))), rtol=1e-9)
    assert 0.0 < k.min() and k.max() < 1.0


def _calibration_measurement_model(measurement, priors):
    return hx.Model(
        "readout ~ S0 * (1 - exp(-k * time))",  # the expression is the calibration's x
        calibration.load_data(),
        params={"intercept": "1 + (1 | batch)", "S0": "1", "k": "1"},
        priors=priors,
        centered={"intercept_batch": True},
        measurement=measurement,
    )


def test_calibration_model_as_observation_model_equals_hand_written() -> None:
    from hierax.examples import calibration_cal

    model = _calibration_measurement_model(calibration_cal.LINEAR_CALIBRATION, CALIBRATION_PRIORS)
    setup = calibration.setup()
    rng = np.random.default_rng(4)
    for _ in range(3):
        params = {
            "intercept": rng.normal(0.3, 0.1),
            "intercept_batch": rng.normal(0.3, 0.1, 3),
            "slope": rng.uniform(0.2, 0.6),
            "S0": rng.uniform(4.0, 6.0),
            "k": rng.uniform(0.02, 0.1),
            "sigma": rng.uniform(0.05, 0.2),
        }
        ours, _ = log_density(model.model_fn, (), model.arrays(), params)
        theirs, _ = log_density(setup["model_fn"], (), setup["data"], params)
        np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-9)


def test_calibration_parameters_fixed_from_a_fit_or_missing() -> None:
    from hierax.examples import calibration_cal

    fitted = calibration_cal.LINEAR_CALIBRATION.with_theta([0.3, 0.3, 0.08])
    priors = {k: v for k, v in CALIBRATION_PRIORS.items() if k not in ("slope", "sigma")}
    model = _calibration_measurement_model(fitted, priors)
    assert model.priors.loc["slope", "prior"] == "fixed at 0.3"
    fit = model.fit(seed=2, draws=200, warmup=200, progress=False)
    np.testing.assert_allclose(fit.draws("sigma"), 0.08)
    with pytest.raises(hx.ModelError, match="'slope'.*neither in params"):
        _calibration_measurement_model(calibration_cal.LINEAR_CALIBRATION, priors)


def test_linear_formula_observed_through_a_calibration() -> None:
    from hierax.calibration import CalibrationModel

    rng = np.random.default_rng(0)
    cal = CalibrationModel(
        "linear",
        "normal",
        theta_names=["intercept", "slope", "sigma"],
        independent_key="conc",
        dependent_key="absorbance",
    ).with_theta([0.1, 2.0, 0.05])
    group = np.repeat(np.arange(6), 8)
    dose = rng.uniform(0, 1, group.size)
    conc = 0.5 + 1.5 * dose + rng.normal(0, 0.3, 6)[group]
    table = pd.DataFrame(
        {"absorbance": 0.1 + 2.0 * conc + rng.normal(0, 0.05, group.size), "dose": dose, "g": group}
    )
    model = hx.Model(
        "absorbance ~ 1 + dose + (1 | g)",
        table,
        measurement=cal,  # the formula's linear predictor is the calibration's 'conc'
        priors={"conc_Intercept": "Normal(0, 2)", "b_conc_dose": "Normal(0, 2)"},
        centered={"conc_g": True},
    )
    fit = model.fit(seed=1, progress=False, draws=500, warmup=500)
    assert fit.divergences == 0
    slope = fit.draws("b_conc_dose")
    assert abs(slope.mean() - 1.5) < 3 * slope.std()
