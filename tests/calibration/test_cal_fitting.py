"""Maximum likelihood (recovery within the Fisher-information error), global search,
Bayesian fit, and the errors and warnings for bad calibration data."""

from __future__ import annotations

import warnings

import numpy as np
import numpyro.distributions as dist
import pytest

from hierax.calibration import CalibrationModel
from hierax.errors import CalibrationWarning, DataError, InitializationError, ModelError


def _recovered(cal: CalibrationModel, truth: list[float], n_se: float = 4.0) -> None:
    assert cal.mle is not None and cal.mle.success, cal.mle
    errors = cal.mle.standard_errors
    assert np.all(np.isfinite(errors)) and np.all(errors > 0), errors
    z = (cal.theta_fitted - np.asarray(truth)) / errors
    # 4 standard errors: |z| > 4 has probability 6e-5 per parameter
    assert np.all(np.abs(z) < n_se), dict(zip(cal.theta_names, np.round(z, 2), strict=True))


def test_mle_recovers_polynomial_with_mu_dependent_scale() -> None:
    truth = [0.5, 2.0, -0.3, 0.05, 0.04]  # c_0, c_1, c_2, sigma_0, sigma_1
    cal = CalibrationModel("polynomial", "normal", degree=2, scale_degree=1)
    x = np.random.default_rng(1).uniform(0, 5, 500)
    y = cal.simulate(x, truth, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        fitted = cal.fit_mle(x, y)
    _recovered(fitted, truth)
    assert cal.theta_fitted is None  # the model we fit is left alone
    assert fitted.cal_independent is not None and fitted.cal_independent.size == 500


def test_mle_recovers_logistic_with_studentt_noise() -> None:
    truth = [5.0, 1.0, 2.0, 0.4, 0.05, 5.0]  # I_x, I_y, Lmax, s, scale, df
    cal = CalibrationModel("logistic", "studentt")
    x = np.random.default_rng(3).uniform(0, 10, 500)
    y = cal.simulate(x, truth, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        fitted = cal.fit_mle(x, y)
    _recovered(fitted, truth)
    # the standard errors are those of the curvature at the optimum
    assert fitted.mle is not None
    np.testing.assert_allclose(
        np.sqrt(np.diag(fitted.mle.covariance)), fitted.mle.standard_errors, rtol=1e-9
    )


def test_mle_with_explicit_guess_and_bounds() -> None:
    truth = [0.2, 3.1, 1.2, 1.5, 0.5, 0.05]  # L_L, L_U, I_x, S, c, sigma
    cal = CalibrationModel("asymmetric_logistic", "normal")
    x = np.random.default_rng(5).uniform(-2, 5, 500)
    y = cal.simulate(x, truth, seed=6)
    fitted = cal.fit_mle(
        x,
        y,
        guess={"L_L": 0.0, "L_U": 3.5, "I_x": 1.0, "S": 1.0, "c": 0.0, "sigma": 0.1},
        bounds={"c": (-3, 3), "sigma": (1e-6, 1.0)},
    )
    _recovered(fitted, truth)
    assert fitted.theta_bounds is not None and fitted.theta_bounds[4] == (-3.0, 3.0)
    np.testing.assert_array_equal(fitted.theta_guess, [0.0, 3.5, 1.0, 1.0, 0.0, 0.1])


def test_global_search_finds_the_optimum_from_a_bad_guess() -> None:
    truth = [0.5, 4.0, 0.8, 0.1]  # L_L, L_U, k, sigma
    cal = CalibrationModel("exponential", "normal")
    x = np.random.default_rng(8).uniform(0, 6, 300)
    y = cal.simulate(x, truth, seed=9)
    bounds = [(-5, 5), (-5, 10), (1e-3, 10), (1e-3, 2)]
    fitted = cal.fit_mle(x, y, bounds=bounds, guess=[4.0, -4.0, 9.0, 1.9], global_search=True)
    _recovered(fitted, truth)
    assert fitted.mle is not None and "differential_evolution" in fitted.mle.method


def test_global_search_needs_finite_bounds() -> None:
    cal = CalibrationModel("linear", "normal")
    with pytest.raises(ModelError, match=r"\['intercept', 'slope'\]"):
        cal.fit_mle(
            [0.0, 1.0, 2.0, 3.0],
            [0.1, 1.2, 1.9, 3.2],
            global_search=True,
            bounds={"sigma": (0.01, 1)},
        )


def test_parameter_on_a_bound_warns_with_its_name() -> None:
    cal = CalibrationModel("linear", "normal")
    x = np.linspace(0, 10, 50)
    y = cal.simulate(x, [0.1, 0.5, 0.05], seed=1)
    with pytest.warns(CalibrationWarning, match=r"ended on a bound: slope=0\.3"):
        fitted = cal.fit_mle(x, y, bounds={"slope": (0.0, 0.3)}, guess=[0.1, 0.2, 0.1])
    assert fitted.mle is not None and fitted.mle.at_bounds == ("slope",)


def test_nan_in_calibration_data_is_masked_with_a_count() -> None:
    cal = CalibrationModel("linear", "normal", independent_key="conc", dependent_key="absorbance")
    x = np.linspace(0, 10, 40)
    y = cal.simulate(x, [0.1, 0.5, 0.05], seed=3)
    x[[3, 17]] = np.nan
    y[[17, 25]] = [np.inf, np.nan]
    with pytest.warns(CalibrationWarning, match="masked 3 of 40") as caught:
        fitted = cal.fit_mle(x, y)
    message = str(caught[0].message)
    assert "2 in 'conc'" in message and "2 in 'absorbance'" in message
    assert fitted.cal_independent is not None and fitted.cal_independent.size == 37


def test_mismatched_lengths_name_both_variables() -> None:
    cal = CalibrationModel("linear", "normal", independent_key="conc", dependent_key="absorbance")
    with pytest.raises(
        DataError, match="'conc' has 5 values but the dependent variable 'absorbance' has 4"
    ):
        cal.fit_mle(np.arange(5.0), np.arange(4.0))


def test_guess_outside_bounds_names_the_parameter() -> None:
    cal = CalibrationModel("linear", "normal")
    with pytest.raises(InitializationError, match="'slope' = 5 is outside \\(0, 1\\)"):
        cal.fit_mle(np.arange(5.0), np.arange(5.0), guess=[0.0, 5.0, 0.1], bounds={"slope": (0, 1)})


def test_too_few_points_and_wrong_theta_names() -> None:
    cal = CalibrationModel("logistic", "normal")
    with pytest.raises(DataError, match="only 3 finite calibration point"):
        cal.fit_mle([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    with pytest.raises(ModelError, match="names unknown parameter"):
        cal.fit_mle(np.arange(10.0), np.arange(10.0), guess={"I_X": 1.0})
    with pytest.raises(ModelError, match="5 distinct names"):
        CalibrationModel("logistic", "normal", theta_names=["a", "b", "c", "d"])


def test_unfitted_model_says_how_to_fit() -> None:
    with pytest.raises(ModelError, match="fit_mle"):
        CalibrationModel("linear", "normal").predict_independent(1.0)


def test_bayesian_fit_gives_a_posterior_over_theta() -> None:
    truth = [0.2, 0.8, 0.1]
    cal = CalibrationModel("linear", "normal", independent_key="conc", dependent_key="absorbance")
    x = np.random.default_rng(12).uniform(0, 5, 100)
    y = cal.simulate(x, truth, seed=13)
    mle = cal.fit_mle(x, y)
    fit = cal.fit_bayes(
        x,
        y,
        priors={
            "intercept": dist.Normal(0, 1),
            "slope": dist.Normal(0, 2),
            "sigma": dist.HalfNormal(1.0),
        },
        chains=2,
        draws=500,
        warmup=500,
        seed=1,
    )
    assert set(fit.posterior.data_vars) == {"intercept", "slope", "sigma"}
    assert fit.divergences == 0
    for name, value in zip(cal.theta_names, truth, strict=True):
        draws = fit.draws(name)
        assert abs(draws.mean() - value) < 4 * draws.std(), name
    # with flat-ish priors and 100 points the posterior mean sits near the MLE
    assert mle.mle is not None
    slope = fit.draws("slope")
    assert abs(slope.mean() - mle.theta_dict["slope"]) < 0.3 * slope.std()
    assert abs(slope.std() / mle.mle.standard_errors[1] - 1) < 0.15


def test_bayesian_fit_needs_priors_or_finite_bounds() -> None:
    cal = CalibrationModel("linear", "normal")
    with pytest.raises(ModelError, match=r"no prior for \['slope'\]"):
        cal.fit_bayes(
            [0.0, 1.0, 2.0],
            [0.1, 1.0, 2.1],
            priors={"intercept": dist.Normal(0, 1)},
            bounds={"sigma": (0, 1)},
        )


def test_optimiser_failure_warns() -> None:
    from hierax.calibration.fitting import maximize_likelihood

    cal = CalibrationModel("logistic", "normal")
    x = np.linspace(0, 10, 200)
    y = cal.simulate(x, [5.0, 1.0, 2.0, 0.4, 0.05], seed=1)
    objective = cal.objective(x, y)
    with pytest.warns(CalibrationWarning, match="did not converge"):
        result = maximize_likelihood(
            lambda theta: -objective(theta),
            np.array([3.0, 0.5, 3.0, 1.0, 0.5]),
            [(-np.inf, np.inf)] * 4 + [(0.0, np.inf)],
            cal.theta_names,
            maxiter=2,
        )
    assert not result.success


@pytest.mark.parametrize("noise", ["normal", "studentt", "laplace", "lognormal", "poisson"])
@pytest.mark.parametrize(
    ("mean", "mean_truth", "x"),
    [
        ("linear", [0.5, 3.0], np.linspace(0, 10, 60)),  # Poisson counts of 0 at x = 0
        ("xlog_asymmetric_logistic", [1.0, 50.0, 0.5, 20.0, 0.3], np.geomspace(0.01, 100, 60)),
    ],
)
def test_every_noise_model_fits_from_the_automatic_guess(noise, mean, mean_truth, x) -> None:
    cal = CalibrationModel(mean, noise)
    noise_truth = {
        "normal": [0.5],
        "studentt": [0.5, 4.0],
        "laplace": [0.5],
        "lognormal": [0.1],
        "poisson": [],
    }[noise]
    truth = mean_truth + noise_truth
    y = cal.simulate(x, truth, seed=21)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        fitted = cal.fit_mle(x, y)
    assert fitted.mle is not None and fitted.mle.success
    # a maximum of the likelihood is at least as likely as the truth
    at_truth = float(cal.loglikelihood(y=y, x=x, theta=truth))
    assert fitted.mle.log_likelihood >= at_truth - 1e-6
