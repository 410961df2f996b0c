"""Initial values: validation of names and shapes, and the report of a non-finite start."""

from __future__ import annotations

import re

import numpy as np
import pytest
from models import (
    beta_prior_model,
    hierarchical_data,
    hierarchical_model,
    normal_data,
    normal_model,
    uniform_upper_model,
)
from scipy import stats

import hierax
from hierax.inference.init import check_finite_log_density, per_chain_inits, site_log_densities
from hierax.models.model_info import inspect_model

QUICK = {"chains": 2, "draws": 50, "warmup": 50, "seed": 5, "progress": False, "warn": False}


@pytest.fixture(scope="module")
def hierarchical_info():
    info, _ = inspect_model(hierarchical_model, hierarchical_data())
    return info


def log_density_table(message: str) -> dict[str, tuple[float, bool]]:
    """Parse the per-site table of an InitializationError: {site: (value, marked)}."""
    rows = {}
    for line in message.splitlines():
        match = re.match(r"^  (\w+)\s+(\S+)(\s+<-- not finite)?$", line)
        if match:
            rows[match.group(1)] = (float(match.group(2)), match.group(3) is not None)
    return rows


# ------------------------------------------------------ per_chain_inits directly


def test_no_init_means_hierax_chooses(hierarchical_info):
    assert per_chain_inits(None, 4, hierarchical_info) is None


def test_single_dict_is_shared_and_scalars_broadcast(hierarchical_info):
    inits = per_chain_inits({"mu": 1.5, "z": 0.25}, 3, hierarchical_info)
    assert len(inits) == 3
    for chain in inits:
        assert set(chain) == {"mu", "z"}
        assert chain["mu"].shape == ()
        np.testing.assert_array_equal(chain["z"], np.full(5, 0.25))


def test_unknown_site_is_named_with_close_matches(hierarchical_info):
    with pytest.raises(hierax.InitializationError) as caught:
        per_chain_inits({"tua": 1.0}, 2, hierarchical_info)
    message = str(caught.value)
    assert "'tua'" in message
    assert "no such site" in message
    assert "Did you mean 'tau'" in message


def test_deterministic_site_cannot_be_initialised(hierarchical_info):
    with pytest.raises(hierax.InitializationError) as caught:
        per_chain_inits({"theta": np.zeros(5)}, 2, hierarchical_info)
    message = str(caught.value)
    assert "'theta'" in message
    assert "deterministic" in message


def test_wrong_shape_names_site_and_both_shapes(hierarchical_info):
    with pytest.raises(hierax.InitializationError) as caught:
        per_chain_inits({"z": np.zeros(3)}, 2, hierarchical_info)
    message = str(caught.value)
    assert "'z'" in message
    assert "(3,)" in message
    assert "(5,)" in message


def test_per_chain_list_of_wrong_length(hierarchical_info):
    with pytest.raises(hierax.InitializationError) as caught:
        per_chain_inits([{"mu": 0.0}] * 3, 4, hierarchical_info)
    message = str(caught.value)
    assert "3 per-chain dicts" in message
    assert "chains=4" in message


def test_non_finite_init_value_names_site(hierarchical_info):
    with pytest.raises(hierax.InitializationError, match=r"'mu' contains NaN or inf"):
        per_chain_inits([{"mu": 0.0}, {"mu": np.inf}], 2, hierarchical_info)


def test_per_chain_entry_that_is_not_a_dict(hierarchical_info):
    with pytest.raises(hierax.InitializationError, match=r"chain 1 must be a dict"):
        per_chain_inits([{"mu": 0.0}, 0.0], 2, hierarchical_info)


# ----------------------------------------------------------- log densities


def test_site_log_densities_match_scipy():
    data = normal_data()
    densities = site_log_densities(normal_model, data, {"mu": 1.0, "sigma": 2.0})
    expected = {
        "mu": stats.norm.logpdf(1.0, 0.0, 10.0),
        "sigma": stats.halfnorm.logpdf(2.0, scale=5.0),
        "y": stats.norm.logpdf(data["y"], 1.0, 2.0).sum(),
    }
    assert set(densities) == set(expected)
    for name, value in expected.items():
        assert densities[name] == pytest.approx(value, rel=1e-9), name


def test_check_finite_log_density_lists_every_site_and_marks_the_culprit():
    data = {"y": np.array([0.3, 0.9, 0.1])}
    with pytest.raises(hierax.InitializationError) as caught:
        check_finite_log_density(beta_prior_model, data, {"p": 1.5}, where="my start")
    message = str(caught.value)
    assert "at my start is not finite" in message
    assert "the site(s) at fault: ['p']" in message
    table = log_density_table(message)
    assert set(table) == {"p", "y"}
    assert table["p"] == (-np.inf, True)
    value, marked = table["y"]
    assert not marked
    assert value == pytest.approx(stats.norm.logpdf(data["y"], 1.5, 1.0).sum(), rel=1e-5)


def test_check_finite_log_density_is_silent_for_a_valid_point():
    data = {"y": np.array([0.3, 0.9, 0.1])}
    check_finite_log_density(beta_prior_model, data, {"p": 0.4})


# ------------------------------------------------------------ through fit()


def test_fit_init_unknown_site():
    with pytest.raises(hierax.InitializationError) as caught:
        hierax.fit(normal_model, normal_data(), init={"mux": 0.0}, **QUICK)
    message = str(caught.value)
    assert "'mux'" in message
    assert "Did you mean 'mu'" in message


def test_fit_init_observed_site_says_it_is_observed():
    with pytest.raises(hierax.InitializationError) as caught:
        hierax.fit(normal_model, normal_data(), init={"y": np.zeros(20)}, **QUICK)
    message = str(caught.value)
    assert "'y'" in message
    assert "observed site" in message


def test_fit_init_wrong_shape():
    with pytest.raises(hierax.InitializationError) as caught:
        hierax.fit(hierarchical_model, hierarchical_data(), init={"z": np.zeros((5, 2))}, **QUICK)
    message = str(caught.value)
    assert "'z'" in message
    assert "(5, 2)" in message
    assert "(5,)" in message


def test_fit_per_chain_init_of_wrong_length():
    with pytest.raises(hierax.InitializationError, match=r"3 per-chain dicts but chains=2"):
        hierax.fit(normal_model, normal_data(), init=[{"mu": 0.0}] * 3, **QUICK)


def test_fit_init_outside_prior_support_reports_site_log_densities():
    data = {"y": np.array([0.3, 0.9, 0.1])}
    with pytest.raises(hierax.InitializationError) as caught:
        hierax.fit(beta_prior_model, data, init={"p": 1.5}, **QUICK)
    message = str(caught.value)
    assert "chain 0's initial values" in message
    assert "the site(s) at fault: ['p']" in message
    table = log_density_table(message)
    assert set(table) == {"p", "y"}
    assert table["p"][1] and not table["y"][1]


def test_fit_init_that_makes_observed_data_impossible_names_observed_site():
    # y ~ Uniform(0, upper): upper = 0.5 < max(y) = 0.8 gives the data zero density.
    data = {"y": np.array([0.2, 0.5, 0.8]), "prior_median": 5.0}
    with pytest.raises(hierax.InitializationError) as caught:
        hierax.fit(uniform_upper_model, data, init={"upper": 0.5}, **QUICK)
    message = str(caught.value)
    assert "the site(s) at fault: ['y']" in message
    table = log_density_table(message)
    assert set(table) == {"upper", "y"}
    assert table["y"] == (-np.inf, True)
    assert np.isfinite(table["upper"][0]) and not table["upper"][1]


def test_fit_negative_scale_init_reports_site_log_densities():
    with pytest.raises(hierax.InitializationError) as caught:
        hierax.fit(normal_model, normal_data(), init={"sigma": -1.0}, **QUICK)
    message = str(caught.value)
    assert "'sigma'" in message
    table = log_density_table(message)
    assert set(table) == {"mu", "sigma", "y"}
    assert table["sigma"][1]


def test_fit_with_single_init_dict():
    data = normal_data()
    result = hierax.fit(normal_model, data, init={"mu": 1.0, "sigma": 2.0}, **QUICK)
    mu = result.draws("mu", combined=False)
    assert mu.shape == (2, 50)
    assert np.all(np.isfinite(mu))
    assert np.all(result.draws("sigma") > 0)
    # the posterior of mu is centred near the sample mean (posterior sd ~ 0.45)
    assert abs(mu.mean() - data["y"].mean()) < 0.5


def test_fit_with_per_chain_init_list():
    data = normal_data()
    init = [{"mu": -3.0, "sigma": 1.0}, {"mu": 6.0}]
    result = hierax.fit(normal_model, data, init=init, **QUICK)
    mu = result.draws("mu", combined=False)
    assert mu.shape == (2, 50)
    assert np.all(np.isfinite(mu))
    assert abs(mu.mean() - data["y"].mean()) < 0.5
