"""The five seed workflows: parameter recovery, sampler health, and agreement with
the same models written independently in plain NumPyro."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
import reference_models as ref

import hierax as hx
from hierax.examples import binaries, calibration, crossed, get, parallax, regression


@functools.cache
def example_fit(name: str, naive: bool = False) -> hx.Fit:
    module = get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hx.ConvergenceWarning)
        if naive:
            return module.fit(seed=3, progress=False, naive=True)
        return module.fit(seed=3, progress=False)


def _within_sd(fit: hx.Fit, name: str, truth, n_sd: float) -> None:
    draws = fit.draws(name)
    mean, sd = draws.mean(axis=0), draws.std(axis=0)
    z = np.abs(mean - np.asarray(truth)) / sd
    assert np.all(z < n_sd), f"{name}: |mean - truth| / sd = {np.round(z, 2)}"


IDENTIFIABLE = ["calibration", "crossed", "regression", "parallax", "binaries"]


@pytest.mark.parametrize("name", IDENTIFIABLE)
def test_sampler_health(name: str) -> None:
    fit = example_fit(name)
    module = get(name)
    table = fit.summary(var_names=module.HYPERPARAMETERS)
    assert fit.divergences == 0
    assert (table["r_hat"] <= 1.01).all(), table["r_hat"]
    assert (table["ess_bulk"] >= 400).all(), table["ess_bulk"]
    stats = fit.idata["sample_stats"]
    if fit.info.get("method") == "independence_mh":  # collapsed model, no trajectories
        assert fit.info["pareto_k"] <= 0.7 and fit.info["acceptance_rate"] > 0.25
    else:
        assert not np.asarray(stats["reached_max_treedepth"]).any()
    assert fit.findings == []


def test_calibration_recovers_truth() -> None:
    fit = example_fit("calibration")
    truth = calibration.truth()
    for name in ["k", "S0", "intercept_batch", "slope", "sigma"]:
        _within_sd(fit, name, truth[name], 3)
    assert list(fit.posterior["intercept_batch"].dims[2:]) == ["batch"]
    assert "intercept_batch[0]" in fit.summary().index


def test_crossed_recovers_truth() -> None:
    fit = example_fit("crossed")
    truth = crossed.truth()
    for name in ["sigma", "sigma_alpha", "sigma_beta", "intercept"]:
        _within_sd(fit, name, truth[name], 3)
    means = crossed.cell_means(fit)  # identified: every gene x cell-line mean
    z = np.abs(means.mean(0) - truth["cell_mean"]) / means.std(0)
    assert np.mean(z < 3) >= 0.95 and np.all(z < 4.5)


def test_crossed_naive_keeps_the_pathology_visible() -> None:
    fit = example_fit("crossed", naive=True)
    # mu_alpha - mu_beta is not identified: its posterior sd stays near the prior's
    difference = fit.draws("mu_alpha") - fit.draws("mu_beta")
    total = fit.draws("mu_alpha") + fit.draws("mu_beta")
    prior_sd_difference = np.sqrt(2) * 5.0
    assert difference.std() > 0.7 * prior_sd_difference
    assert total.std() < 0.3 * difference.std()
    assert np.corrcoef(fit.draws("mu_alpha"), fit.draws("mu_beta"))[0, 1] < -0.9


def test_regression_recovers_truth() -> None:
    fit = example_fit("regression")
    truth = regression.truth()
    for name in [*regression.HYPERPARAMETERS, "intercept_group", "slope_group"]:
        _within_sd(fit, name, truth[name], 3)


def test_parallax_recovers_truth() -> None:
    fit = example_fit("parallax")
    truth = parallax.truth()
    for name in ["mu_r", "ln_std_r", "std_r"]:
        _within_sd(fit, name, truth[name], 3)
    r = fit.draws("r")
    z = np.abs(r.mean(0) - truth["r"]) / r.std(0)
    assert np.mean(z < 3) >= 0.98
    assert fit.posterior["r"].dims[2:] == ("star",)


def test_binaries_sit_on_the_true_period_modes() -> None:
    fit = example_fit("binaries")
    truth = binaries.truth()
    lnP = fit.draws("lnP")
    # the right alias: the period agrees to better than one part in a thousand...
    np.testing.assert_allclose(np.exp(lnP.mean(0)), np.exp(truth["lnP"]), rtol=1e-3)
    # ...and the truth lies inside each star's (very narrow) posterior
    _within_sd(fit, "lnP", truth["lnP"], 4)
    for name in ["mu", "lnsigma"]:
        _within_sd(fit, name, truth[name], 2)


def test_periodogram_initialisation_finds_every_true_period() -> None:
    init = binaries.initial_values(binaries.load_data())
    np.testing.assert_allclose(np.exp(init["lnP"]), np.exp(binaries.truth()["lnP"]), rtol=1e-3)


# ---------------------------------------------------------------- references
def _agree(fit: hx.Fit, reference: dict[str, np.ndarray], names: list[str]) -> None:
    """Means within 4 combined MCSE, sds within 10 %."""
    import arviz as az

    ref_idata = az.from_dict(posterior={n: reference[n] for n in names})
    ref_table = az.summary(ref_idata, round_to="none")
    ours = fit.summary(var_names=names)
    ref_table.index = ours.index  # same order: same variables, same flattening
    combined_mcse = np.sqrt(ours["mcse_mean"] ** 2 + ref_table["mcse_mean"] ** 2)
    z = (ours["mean"] - ref_table["mean"]).abs() / combined_mcse
    assert (z < 4).all(), pd.DataFrame(
        {"hierax": ours["mean"], "numpyro": ref_table["mean"], "z": z}
    )
    ratio = ours["sd"] / ref_table["sd"]
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio


@pytest.mark.slow
def test_calibration_matches_plain_numpyro() -> None:
    table = calibration.load_data()
    data = {
        "time": table["time"].to_numpy(float),
        "batch": table["batch"].to_numpy(),
        "readout": table["readout"].to_numpy(float),
    }
    samples, divergences = ref.run_numpyro(ref.calibration, data, seed=5)
    assert divergences == 0
    _agree(
        example_fit("calibration"),
        samples,
        ["k", "S0", "intercept", "intercept_batch", "slope", "sigma"],
    )


@pytest.mark.slow
def test_crossed_matches_plain_numpyro() -> None:
    table = crossed.load_data()
    data = {
        "gene": table["gene"].to_numpy(),
        "cell_line": table["cell_line"].to_numpy(),
        "logfc": table["logfc"].to_numpy(float),
    }
    samples, _ = ref.run_numpyro(
        ref.crossed, data, seed=5, draws=4000, warmup=1000, target_accept_prob=0.99
    )
    _agree(example_fit("crossed"), samples, ["intercept", "sigma_alpha", "sigma_beta", "sigma"])


@pytest.mark.slow
def test_regression_matches_plain_numpyro() -> None:
    table = regression.load_data()
    data = {
        "x": table["predictor"].to_numpy(float),
        "group": table["group"].to_numpy(),
        "y": table["response"].to_numpy(float),
    }
    samples, divergences = ref.run_numpyro(ref.regression, data, seed=5, target_accept_prob=0.9)
    _agree(example_fit("regression"), samples, [*regression.HYPERPARAMETERS, "intercept_group"])


@pytest.mark.slow
def test_parallax_matches_plain_numpyro() -> None:
    table = parallax.load_data()
    data = {
        "parallax_error": table["parallax_error"].to_numpy(float),
        "parallax": table["parallax"].to_numpy(float),
    }
    init = parallax.initial_values(table)
    samples, _ = ref.run_numpyro(ref.parallax, data, seed=5, init=init, draws=2000)
    _agree(example_fit("parallax"), samples, ["mu_r", "ln_std_r"])


@pytest.mark.slow
def test_binaries_match_plain_numpyro_with_hand_rescaling() -> None:
    table = binaries.load_data()
    init = binaries.initial_values(table)
    star = table["star"].to_numpy()
    t, rv_err = table["t"].to_numpy(float), table["rv_err"].to_numpy(float)
    scale = ref.fisher_lnP_scale(t, star, rv_err, init["lnP"], init["a"], init["b"])
    data = {
        "t": t,
        "star": star,
        "rv_err": rv_err,
        "lnP_center": init["lnP"],
        "lnP_scale": scale,
        "rv": table["rv"].to_numpy(float),
    }
    start = {k: init[k] for k in ("mu", "lnsigma", "a", "b", "v0")}
    start["eps"] = np.zeros(len(scale))
    samples, _ = ref.run_numpyro(
        ref.binaries_rescaled, data, seed=5, init=start, dense_mass=True, warmup=1500
    )
    _agree(example_fit("binaries"), samples, ["mu", "lnsigma", "lnP"])
