"""hierax.chain_stats gives ArviZ's R-hat, ESS and MCSE, for all entries at once."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hierax.diagnostics.convergence import convergence_table
from hierax.inference import chain_stats

RTOL = 1e-10
COLUMNS = ["mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]

# AR(1) coefficients: independent, strongly autocorrelated (Geyer's sequence is
# cut at very different lags) and anticorrelated (negative lag-1 autocorrelation)
PHIS = (0.0, 0.3, 0.7, 0.9, 0.97, 0.99, 0.999, -0.3, -0.7, -0.95, -0.99)


def ar1(rng: np.random.Generator, chains: int, draws: int, phi: float) -> np.ndarray:
    """AR(1) chains of shape (chain, draw), stationary start, unit innovations."""
    noise = rng.normal(size=(chains, draws))
    values = np.empty((chains, draws))
    values[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, draws):
        values[:, t] = phi * values[:, t - 1] + noise[:, t]
    return values


def arviz_summary(idata: az.InferenceData) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return az.summary(idata, kind="diagnostics", round_to="none")


def arviz_sd(idata: az.InferenceData) -> pd.Series:
    return az.summary(idata, stat_funcs={"sd": np.std}, extend=False, round_to="none")["sd"]


def assert_matches_summary(idata: az.InferenceData) -> pd.DataFrame:
    """diagnostics_table(idata) equals az.summary's diagnostics, plus np.std as sd."""
    table = chain_stats.diagnostics_table(idata)
    expected = arviz_summary(idata)
    assert list(table.columns) == [*COLUMNS, "sd"]
    assert list(table.index) == list(expected.index)
    for column in COLUMNS:
        np.testing.assert_allclose(
            table[column].to_numpy(), expected[column].to_numpy(), rtol=RTOL, err_msg=column
        )
    np.testing.assert_allclose(table["sd"].to_numpy(), arviz_sd(idata).to_numpy(), rtol=RTOL)
    return table


def assert_matches_arviz_functions(values: np.ndarray, fold_around: str = "split") -> None:
    """Each statistic of each entry of values (chain, draw, entry) equals ArviZ's."""
    references = {
        "ess_bulk": lambda a: az.ess(a, method="bulk"),
        "ess_tail": lambda a: az.ess(a, method="tail"),
        "ess_mean": lambda a: az.ess(a, method="mean"),
        "rhat": az.rhat,
        "mcse_mean": lambda a: az.mcse(a, method="mean"),
        "mcse_sd": lambda a: az.mcse(a, method="sd"),
    }
    ours = {
        "ess_bulk": chain_stats.ess_bulk(values),
        "ess_tail": chain_stats.ess_tail(values),
        "ess_mean": chain_stats.ess_mean(values),
        "rhat": chain_stats.rhat(values, fold_around=fold_around),
        "mcse_mean": chain_stats.mcse_mean(values),
        "mcse_sd": chain_stats.mcse_sd(values),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, reference in references.items():
            expected = [float(reference(values[:, :, j])) for j in range(values.shape[2])]
            np.testing.assert_allclose(ours[name], expected, rtol=RTOL, err_msg=name)


# ------------------------------------------------------------------ against az.summary


@pytest.mark.parametrize("draws", [1000, 101, 8, 5, 4])
def test_autocorrelated_and_anticorrelated_chains_match_summary(draws):
    rng = np.random.default_rng(draws)
    posterior = {f"phi{i}": ar1(rng, 4, draws, phi) for i, phi in enumerate(PHIS)}
    table = assert_matches_summary(az.from_dict(posterior=posterior))
    if draws == 1000:
        ess = table["ess_bulk"]
        assert ess["phi6"] < 100 < 4000 < ess["phi9"]  # 0.999 vs -0.95: both regimes covered


def test_chains_in_different_places_have_large_r_hat():
    rng = np.random.default_rng(1)
    shifted = ar1(rng, 4, 300, 0.5) + np.array([0.0, 0.0, 3.0, 10.0])[:, None]
    wider = ar1(rng, 4, 300, 0.5) * np.array([1.0, 1.0, 1.0, 5.0])[:, None]
    table = assert_matches_summary(az.from_dict(posterior={"shifted": shifted, "wider": wider}))
    assert table.loc["shifted", "r_hat"] > 1.5
    assert table.loc["wider", "r_hat"] > 1.05  # only the folded (tail) R-hat sees it


def test_odd_number_of_draws_drops_the_middle_draw():
    rng = np.random.default_rng(2)
    posterior = {"x": ar1(rng, 3, 201, 0.8), "y": ar1(rng, 3, 201, -0.4) + np.arange(3)[:, None]}
    assert_matches_summary(az.from_dict(posterior=posterior))


def test_ties_and_discrete_values():
    rng = np.random.default_rng(3)
    posterior = {
        "rounded": np.round(ar1(rng, 4, 250, 0.8)),
        "coarse": np.round(ar1(rng, 4, 250, 0.3) / 3),
        "binary": rng.random((4, 250)) < 0.3,
        "rare": rng.random((4, 250)) < 0.02,
        "count": rng.poisson(2.0, size=(4, 250)),
    }
    assert_matches_summary(az.from_dict(posterior=posterior))


def test_constant_nan_and_too_few_draws():
    rng = np.random.default_rng(4)
    with_nan = rng.normal(size=(4, 100))
    with_nan[2, 17] = np.nan
    posterior = {
        "one": np.ones((4, 100)),
        "tenth": np.full((4, 100), 0.1),
        "with_nan": with_nan,
        "fine": rng.normal(size=(4, 100)),
    }
    table = assert_matches_summary(az.from_dict(posterior=posterior))
    assert table.loc["one", "ess_bulk"] == 400
    assert np.isnan(table.loc["one", "r_hat"])
    assert table.loc["with_nan"].drop("sd").isna().all()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # more chains than draws
        short_idata = az.from_dict(posterior={"x": rng.normal(size=(4, 3))})
    short = assert_matches_summary(short_idata)
    assert short[COLUMNS].isna().all().all()


def test_single_chain_has_no_r_hat():
    rng = np.random.default_rng(5)
    posterior = {"x": ar1(rng, 1, 501, 0.6), "y": ar1(rng, 1, 501, -0.6)}
    table = assert_matches_summary(az.from_dict(posterior=posterior))
    assert table["r_hat"].isna().all()
    assert table[["ess_bulk", "ess_tail", "mcse_mean"]].notna().all().all()


def test_multidimensional_variables_and_their_labels():
    rng = np.random.default_rng(6)
    matrix = np.stack([ar1(rng, 4, 100, phi) for phi in (0.1, 0.5, 0.9, -0.5, 0.95, 0.0)], -1)
    posterior = {
        "mu": ar1(rng, 4, 100, 0.2),
        "Sigma": matrix.reshape(4, 100, 3, 2),
        "r": np.moveaxis(rng.normal(size=(5, 4, 100)), 0, -1),
    }
    idata = az.from_dict(
        posterior=posterior, coords={"group": list("abcde")}, dims={"r": ["group"]}
    )
    table = assert_matches_summary(idata)
    assert list(table.index[:4]) == ["mu", "Sigma[0, 0]", "Sigma[0, 1]", "Sigma[1, 0]"]
    assert table.index[-1] == "r[e]"


def test_dimension_order_and_non_chain_first_variables():
    rng = np.random.default_rng(7)
    posterior = xr.Dataset(
        {
            "theta": (("k", "chain", "draw"), rng.normal(size=(2, 4, 60))),
            "w": (("chain", "draw", "name", "j"), rng.integers(0, 5, (4, 60, 2, 3))),
        },
        coords={"k": [10, 20], "name": ["alpha", "b c"]},
    )
    table = assert_matches_summary(az.InferenceData(posterior=posterior))
    assert "theta[20]" in table.index and "w[b c, 2]" in table.index


def test_many_random_posteriors_match_summary():
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        chains = int(rng.integers(2, 6))
        draws = int(rng.integers(10, 400))
        phis = rng.uniform(-0.98, 0.995, size=12)
        values = np.stack([ar1(rng, chains, draws, phi) for phi in phis], axis=-1)
        values += rng.normal(scale=0.3, size=(chains, 1, 12))  # mildly disagreeing chains
        assert_matches_summary(az.from_dict(posterior={"v": values}))


# --------------------------------------------------- against az.ess, az.rhat, az.mcse


@pytest.mark.parametrize(("chains", "draws"), [(4, 400), (3, 201), (1, 300), (2, 4), (4, 3)])
def test_functions_match_arviz(chains, draws):
    rng = np.random.default_rng(chains * 1000 + draws)
    columns = [ar1(rng, chains, draws, phi) for phi in PHIS]
    columns.append(ar1(rng, chains, draws, 0.5) + 4 * np.arange(chains)[:, None])
    columns.append(np.round(ar1(rng, chains, draws, 0.7)))
    columns.append((rng.random((chains, draws)) < 0.1).astype(float))
    columns.append(np.full((chains, draws), 0.1))
    with_nan = rng.normal(size=(chains, draws))
    with_nan[0, 0] = np.nan
    columns.append(with_nan)
    assert_matches_arviz_functions(np.stack(columns, axis=-1))


def test_effective_sample_size_matches_arviz_ess_of_given_chains():
    from arviz.stats.diagnostics import _ess

    rng = np.random.default_rng(8)
    for draws in (2, 3, 4, 7, 50, 333):
        values = np.stack([ar1(rng, 3, draws, phi) for phi in PHIS], axis=-1)
        expected = [_ess(values[:, :, j]) for j in range(values.shape[2])]
        np.testing.assert_allclose(chain_stats.effective_sample_size(values), expected, rtol=RTOL)


def test_summary_and_rhat_fold_around_different_medians_with_odd_draws():
    rng = np.random.default_rng(9)
    values = np.stack([ar1(rng, 4, 51, 0.3) + np.arange(4)[:, None] for _ in range(5)], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = arviz_summary(az.from_dict(posterior={"v": values}))["r_hat"].to_numpy()
    np.testing.assert_allclose(chain_stats.rhat(values), summary, rtol=RTOL)
    expected = [float(az.rhat(values[:, :, j])) for j in range(5)]
    np.testing.assert_allclose(chain_stats.rhat(values, fold_around="split"), expected, rtol=RTOL)


def test_blocks_of_entries_do_not_change_results(monkeypatch):
    rng = np.random.default_rng(10)
    values = np.stack([ar1(rng, 4, 200, phi) for phi in PHIS], axis=-1)
    whole = chain_stats.diagnostics(values)
    monkeypatch.setattr(chain_stats, "BLOCK_VALUES", 3 * 4 * 200)
    blocked = chain_stats.diagnostics(values)
    for name, expected in whole.items():
        np.testing.assert_array_equal(blocked[name], expected)


def test_input_is_not_modified_and_shape_is_checked():
    rng = np.random.default_rng(11)
    values = rng.normal(size=(2, 50, 1))
    values[0, 0, 0] = np.nan
    copy = values.copy()
    chain_stats.diagnostics(values)
    chain_stats.ess_bulk(values)
    np.testing.assert_array_equal(values, copy)
    with pytest.raises(ValueError, match="chain, draw, entry"):
        chain_stats.diagnostics(values[:, :, 0])


# -------------------------------------------------------------------- convergence_table


def test_convergence_table_drops_constant_and_nan_entries():
    rng = np.random.default_rng(12)
    corr = np.broadcast_to(np.eye(2), (4, 200, 2, 2)).copy()
    corr[:, :, 0, 1] = corr[:, :, 1, 0] = np.tanh(ar1(rng, 4, 200, 0.5) / 3)
    with_nan = rng.normal(size=(4, 200))
    with_nan[1, 1] = np.nan
    idata = az.from_dict(
        posterior={"Omega": corr, "with_nan": with_nan, "mu": ar1(rng, 4, 200, 0.9)}
    )
    table = convergence_table(idata)
    assert list(table.columns) == COLUMNS
    assert list(table.index) == ["Omega[0, 1]", "Omega[1, 0]", "mu"]
    expected = arviz_summary(idata).loc[table.index]
    np.testing.assert_allclose(table.to_numpy(), expected.to_numpy(), rtol=RTOL)


def test_small_and_large_variables_in_any_order(monkeypatch):
    rng = np.random.default_rng(13)
    monkeypatch.setattr(chain_stats, "BLOCK_VALUES", 4 * 80 * 5)  # batches of 5 entries
    posterior = {
        "a": ar1(rng, 4, 80, 0.2),
        "big": np.moveaxis(rng.normal(size=(7, 4, 80)), 0, -1),
        "b": rng.normal(size=(4, 80, 2)),
        "c": ar1(rng, 4, 80, 0.9) + np.arange(4)[:, None],
        "d": rng.normal(size=(4, 80, 3)),
        "huge": np.moveaxis(rng.normal(size=(12, 4, 80)), 0, -1),
    }
    assert_matches_summary(az.from_dict(posterior=posterior))
