"""hierax.fit end to end on a small hierarchical model: groups, names, summary, files, seeds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import arviz as az
import numpy as np
import pytest
from models import SCHOOLS, hierarchical_data, hierarchical_model, seed_fit
from scipy import stats

import hierax

TESTS_DIR = Path(__file__).resolve().parent
EXPECTED_GROUPS = {
    "posterior",
    "sample_stats",
    "observed_data",
    "constant_data",
    "log_likelihood",
    "posterior_predictive",
    "prior",
    "prior_predictive",
}
SUMMARY_COLUMNS = [
    "mean",
    "sd",
    "hdi_3%",
    "hdi_97%",
    "mcse_mean",
    "mcse_sd",
    "ess_bulk",
    "ess_tail",
    "r_hat",
]
SEED = 3


@pytest.fixture(scope="module")
def data():
    return hierarchical_data()


@pytest.fixture(scope="module")
def result(data):
    return hierax.fit(
        hierarchical_model,
        data,
        coords={"school": SCHOOLS},
        log_likelihood=True,
        posterior_predictive=True,
        prior=True,
        seed=SEED,
        chains=4,
        draws=300,
        warmup=300,
        progress=False,
        warn=False,
    )


@pytest.fixture(scope="module")
def saved(result, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "fit.nc"
    returned = result.save(path)
    return path, returned


@pytest.fixture(scope="module")
def loaded(saved):
    return hierax.load(saved[0])


@pytest.fixture(scope="module")
def seeded():
    """A smaller fit, without predictive groups, used by the seed tests."""
    return seed_fit(7)


# ---------------------------------------------------------------- InferenceData


def test_idata_has_all_requested_groups(result):
    assert set(result.idata.groups()) == EXPECTED_GROUPS


def test_sample_stats_variables_and_shapes(result):
    stats_group = result.idata["sample_stats"]
    for name in ("diverging", "tree_depth", "energy", "step_size", "lp"):
        assert name in stats_group, name
        assert stats_group[name].shape == (4, 300), name
    assert stats_group["diverging"].dtype == bool
    depth = np.asarray(stats_group["tree_depth"])
    assert depth.min() >= 1 and depth.max() <= 10
    assert np.all(np.asarray(stats_group["step_size"]) > 0)
    assert np.all(np.isfinite(stats_group["lp"])) and np.all(np.isfinite(stats_group["energy"]))


def test_posterior_dims_use_plate_name_and_given_levels(result):
    posterior = result.posterior
    assert set(posterior.data_vars) == {"mu", "tau", "sigma", "z", "theta"}
    assert posterior["z"].dims == ("chain", "draw", "school")
    assert posterior["theta"].dims == ("chain", "draw", "school")
    assert posterior["mu"].dims == ("chain", "draw")
    assert list(posterior["school"].values) == SCHOOLS
    assert posterior.sizes["chain"] == 4 and posterior.sizes["draw"] == 300


def test_deterministic_site_is_consistent_with_latent_draws(result):
    posterior = result.posterior
    expected = posterior["mu"] + posterior["tau"] * posterior["z"]
    # two compiled programs: equal up to rounding (cancellation near zero needs atol)
    np.testing.assert_allclose(posterior["theta"], expected, rtol=1e-9, atol=1e-9)


def test_observed_and_constant_data(result, data):
    observed = result.idata["observed_data"]
    assert observed["y"].dims == ("obs",)
    np.testing.assert_array_equal(observed["y"], data["y"])
    constant = result.idata["constant_data"]
    assert set(constant.data_vars) == {"school"}
    np.testing.assert_array_equal(constant["school"], data["school"])


def test_log_likelihood_matches_scipy(result, data):
    loglik = result.idata["log_likelihood"]["y"]
    assert loglik.dims == ("chain", "draw", "obs")
    posterior = result.posterior
    for chain, draw in [(0, 0), (3, 299), (1, 123)]:
        theta = posterior["theta"].values[chain, draw]
        sigma = posterior["sigma"].values[chain, draw]
        expected = stats.norm.logpdf(data["y"], theta[data["school"]], sigma)
        np.testing.assert_allclose(loglik.values[chain, draw], expected, rtol=1e-9)


def test_predictive_and_prior_groups_shapes(result):
    predictive = result.idata["posterior_predictive"]["y"]
    assert predictive.dims == ("chain", "draw", "obs")
    assert predictive.shape == (4, 300, 50)
    prior = result.idata["prior"]
    assert set(prior.data_vars) == {"mu", "tau", "sigma", "z", "theta"}
    assert prior["z"].dims == ("chain", "draw", "school")
    assert np.all(prior["tau"].values > 0)
    assert result.idata["prior_predictive"]["y"].shape == (1, 300, 50)


def test_posterior_predictive_is_centred_on_the_data(result, data):
    """Replicated group means lie near the observed ones (the model fits its own data)."""
    predictive = result.idata["posterior_predictive"]["y"].values.reshape(-1, 50)
    for group in range(len(SCHOOLS)):
        columns = data["school"] == group
        replicated = predictive[:, columns].mean(axis=1)
        observed = data["y"][columns].mean()
        assert abs(np.median(replicated) - observed) < 3 * replicated.std()


# --------------------------------------------------------------------- summary


def test_summary_columns_and_rows(result):
    table = result.summary()
    assert list(table.columns) == SUMMARY_COLUMNS
    expected_rows = {"mu", "tau", "sigma"}
    expected_rows |= {f"z[{s}]" for s in SCHOOLS} | {f"theta[{s}]" for s in SCHOOLS}
    assert set(table.index) == expected_rows
    assert table.loc["mu", "mean"] == pytest.approx(float(result.posterior["mu"].mean()))
    assert table.loc["z[elm]", "sd"] == pytest.approx(
        float(result.posterior["z"].sel(school="elm").std(ddof=1)), rel=1e-6
    )


def test_summary_excludes_with_tilde(result):
    table = result.summary(var_names=["~z"])
    assert not any(label.startswith("z[") for label in table.index)
    assert "mu" in table.index and "theta[alder]" in table.index


def test_summary_coords_selection(result):
    table = result.summary(var_names=["z", "theta"], coords={"school": ["cedar"]})
    assert list(table.index) == ["z[cedar]", "theta[cedar]"]


def test_summary_hdi_prob(result):
    table = result.summary(hdi_prob=0.9)
    assert "hdi_5%" in table.columns and "hdi_95%" in table.columns
    assert "hdi_3%" not in table.columns
    wide = result.summary()
    # Each interval is ArviZ's HDI of the pooled draws at its probability. From draws,
    # a 90 % HDI need not lie inside the 94 % one, but it is never wider: the shortest
    # interval holding more draws cannot be shorter.
    for label, row in table.iterrows():
        name, _, level = str(label).partition("[")
        draws = result.posterior[name]
        if level:
            dim = next(d for d in draws.dims if d not in ("chain", "draw"))
            draws = draws.sel({dim: level.rstrip("]")})
        low, high = az.hdi(draws.values.reshape(-1), hdi_prob=0.9)
        assert row["hdi_5%"] == pytest.approx(low, rel=1e-9, abs=1e-9), label
        assert row["hdi_95%"] == pytest.approx(high, rel=1e-9, abs=1e-9), label
    narrow_width = table["hdi_95%"] - table["hdi_5%"]
    wide_width = wide["hdi_97%"] - wide["hdi_3%"]
    assert np.all(narrow_width <= wide_width + 1e-9)


def test_loo_runs(result):
    loo = az.loo(result.idata)
    assert np.isfinite(loo.elpd_loo)
    assert 0 < loo.p_loo < 10  # about 5-8 effective parameters


# ------------------------------------------------------------------ save / load


def test_save_returns_path_and_leaves_no_temporary_file(saved):
    path, returned = saved
    assert Path(returned) == path
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_load_has_the_same_groups(result, loaded):
    assert set(loaded.idata.groups()) == set(result.idata.groups())


@pytest.mark.parametrize("group", sorted(EXPECTED_GROUPS))
def test_load_round_trip_group_is_identical(result, loaded, group):
    assert loaded.idata[group].identical(result.idata[group])


def test_load_keeps_sampler_info_out_of_the_posterior_attrs(result, loaded):
    """fit.info travels in the file but is not left behind in the loaded posterior's attrs."""
    assert "hierax_info" not in loaded.idata["posterior"].attrs
    assert loaded.info == result.info


def test_load_round_trip_info_and_findings(result, loaded):
    assert loaded.info == result.info
    assert loaded.findings == result.findings


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.nc"):
        hierax.load(tmp_path / "absent.nc")


def test_load_garbage_file_names_path(tmp_path):
    path = tmp_path / "garbage.nc"
    path.write_bytes(b"this is not a NetCDF file\x00\x01\x02" * 10)
    with pytest.raises(hierax.FileFormatError) as caught:
        hierax.load(path)
    assert str(path) in str(caught.value)


def test_load_netcdf_without_posterior(tmp_path):
    path = tmp_path / "observed_only.nc"
    az.from_dict(observed_data={"y": np.arange(3.0)}).to_netcdf(str(path), engine="h5netcdf")
    with pytest.raises(hierax.FileFormatError) as caught:
        hierax.load(path)
    assert str(path) in str(caught.value)
    assert "no posterior" in str(caught.value)


# ------------------------------------------------------------ predictive later


def test_with_posterior_predictive_returns_new_fit(seeded):
    assert "posterior_predictive" not in seeded.idata.groups()
    extended = seeded.with_posterior_predictive(seed=1)
    assert extended is not seeded
    assert "posterior_predictive" not in seeded.idata.groups()  # original untouched
    predictive = extended.idata["posterior_predictive"]["y"]
    assert predictive.dims == ("chain", "draw", "obs")
    assert predictive.shape == (2, 100, 50)
    assert np.all(np.isfinite(predictive.values))
    # the posterior itself is carried over unchanged
    assert extended.posterior.identical(seeded.posterior)
    # same seed, same predictive draws; another seed, other draws
    repeat = seeded.with_posterior_predictive(seed=1).idata["posterior_predictive"]["y"]
    np.testing.assert_array_equal(repeat.values, predictive.values)
    other = seeded.with_posterior_predictive(seed=2).idata["posterior_predictive"]["y"]
    assert not np.array_equal(other.values, predictive.values)


def test_loaded_fit_cannot_draw_posterior_predictive(loaded):
    with pytest.raises(hierax.HieraxError, match="loaded from a file"):
        loaded.with_posterior_predictive()


# ------------------------------------------------------------------------ seeds


def _draws(fit) -> dict[str, np.ndarray]:
    return {name: fit.posterior[name].values for name in fit.posterior.data_vars}


def test_same_seed_gives_identical_draws_in_process(seeded):
    again = seed_fit(7)
    first, second = _draws(seeded), _draws(again)
    assert set(first) == set(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_different_seed_gives_different_draws(seeded):
    other = seed_fit(8)
    for name, values in _draws(seeded).items():
        assert not np.array_equal(values, _draws(other)[name]), name


@pytest.mark.exact_seed
def test_same_seed_gives_identical_draws_in_fresh_process(seeded, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from models import seed_fit
        fit = seed_fit(7)
        for name in fit.posterior.data_vars:
            np.save({str(tmp_path)!r} + "/" + name + ".npy", fit.posterior[name].values)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    in_process = _draws(seeded)
    assert {p.stem for p in tmp_path.glob("*.npy")} == set(in_process)
    for name, values in in_process.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.npy"), values, err_msg=name)
