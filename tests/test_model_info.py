"""hierax.model_info: site dims from plates, dims/coords checks, observed-data support."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from models import uniform_upper_model

import hierax
from hierax.models.model_info import check_observed_support, inspect_model


def plated_model(y):
    """Sites inside and outside plates, with batch and event dimensions."""
    scale = numpyro.sample("scale", dist.HalfNormal(1.0))
    numpyro.sample("pair", dist.Normal(0.0, 1.0).expand([2]))
    numpyro.sample("vector", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
    with numpyro.plate("batch", 3):
        effect = numpyro.sample("effect", dist.Normal(0.0, scale))
        numpyro.deterministic("double", 2.0 * effect)
        numpyro.sample("mvn", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.Normal(effect[jnp.arange(y.shape[0]) % 3], 1.0), obs=y)


PLATED_DATA = {"y": np.linspace(-1.0, 1.0, 6)}


def poisson_model(counts):
    rate = numpyro.sample("rate", dist.Exponential(1.0))
    with numpyro.plate("obs", counts.shape[0]):
        numpyro.sample("counts", dist.Poisson(rate), obs=counts)


def beta_model(share):
    concentration = numpyro.sample("concentration", dist.Exponential(1.0))
    with numpyro.plate("obs", share.shape[0]):
        numpyro.sample("share", dist.Beta(concentration, 2.0), obs=share)


def log_outcome_model(x):
    """The observed value is computed inside the model: log of a data column."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("log_x", dist.Normal(mu, 1.0), obs=jnp.log(x))


# ------------------------------------------------------------------------ dims


@pytest.fixture(scope="module")
def plated_info():
    info, _ = inspect_model(plated_model, PLATED_DATA)
    return info


def test_site_in_plate_is_named_after_plate(plated_info):
    assert plated_info.plates == {"batch": 3, "obs": 6}
    effect = plated_info.sites["effect"]
    assert effect.kind == "latent"
    assert effect.shape == (3,)
    assert effect.dims == ("batch",)


def test_deterministic_and_observed_sites_in_plates(plated_info):
    double = plated_info.sites["double"]
    assert double.kind == "deterministic"
    assert double.dims == ("batch",)
    y = plated_info.sites["y"]
    assert y.kind == "observed"
    assert y.dims == ("obs",)


def test_event_dim_in_plate_gets_default_name(plated_info):
    mvn = plated_info.sites["mvn"]
    assert mvn.shape == (3, 2)
    assert mvn.dims == ("batch", "mvn_dim_1")


def test_sites_outside_plates_get_default_dim_names(plated_info):
    assert plated_info.sites["scale"].dims == ()
    assert plated_info.sites["pair"].dims == ("pair_dim_0",)
    assert plated_info.sites["vector"].shape == (4,)
    assert plated_info.sites["vector"].dims == ("vector_dim_0",)


def test_site_kinds_in_model_order(plated_info):
    assert plated_info.names("latent") == ["scale", "pair", "vector", "effect", "mvn"]
    assert plated_info.names("observed") == ["y"]
    assert plated_info.names("deterministic") == ["double"]


def test_explicit_dims_override_plate_and_default_names():
    info, _ = inspect_model(
        plated_model, PLATED_DATA, dims={"pair": ["side"], "effect": ["region"]}
    )
    assert info.sites["pair"].dims == ("side",)
    assert info.sites["effect"].dims == ("region",)
    assert info.sites["double"].dims == ("batch",)  # untouched


def test_dims_with_wrong_number_of_names_names_site():
    with pytest.raises(hierax.ModelError) as caught:
        inspect_model(plated_model, PLATED_DATA, dims={"pair": ["side", "extra"]})
    message = str(caught.value)
    assert "'pair'" in message
    assert "(2,)" in message  # the site's real shape


def test_dims_for_unknown_site_is_named():
    with pytest.raises(hierax.ModelError, match=r"\['pairs'\]"):
        inspect_model(plated_model, PLATED_DATA, dims={"pairs": ["side"]})


def test_coords_with_wrong_length_names_dimension():
    with pytest.raises(hierax.ModelError) as caught:
        inspect_model(plated_model, PLATED_DATA, coords={"batch": ["north", "south"]})
    message = str(caught.value)
    assert "'batch'" in message
    assert "2 value(s)" in message
    assert "size 3" in message


def test_coords_of_right_length_are_kept():
    info, _ = inspect_model(plated_model, PLATED_DATA, coords={"batch": ("n", "s", "e")})
    assert info.coords == {"batch": ["n", "s", "e"]}


# ------------------------------------------------------- observed data support


def test_negative_count_for_poisson_names_observed_site():
    _, trace = inspect_model(poisson_model, {"counts": np.array([1, -2, 3, 0])})
    with pytest.raises(hierax.DataError) as caught:
        check_observed_support(trace)
    message = str(caught.value)
    assert "'counts'" in message
    assert "1 value(s) outside the support" in message
    assert "[-2]" in message


def test_valid_counts_pass_support_check():
    _, trace = inspect_model(poisson_model, {"counts": np.array([1, 2, 3, 0])})
    check_observed_support(trace)


def test_beta_observation_above_one_names_observed_site():
    _, trace = inspect_model(beta_model, {"share": np.array([0.2, 1.5, 0.7])})
    with pytest.raises(hierax.DataError) as caught:
        check_observed_support(trace)
    message = str(caught.value)
    assert "'share'" in message
    assert "[1.5]" in message


def test_beta_observation_below_zero_names_observed_site():
    _, trace = inspect_model(beta_model, {"share": np.array([0.2, -0.1, 0.7])})
    with pytest.raises(hierax.DataError, match=r"'share'"):
        check_observed_support(trace)


def test_support_error_names_likelihood_family():
    _, trace = inspect_model(poisson_model, {"counts": np.array([1, -2, 3, 0])})
    with pytest.raises(hierax.DataError, match="Poisson"):
        check_observed_support(trace)


def test_support_depending_on_parameter_is_not_checked_at_a_prior_draw():
    # The prior allows upper > 0.8 (so the data are possible), but the traced draw is ~0.3.
    data = {"y": np.array([0.2, 0.5, 0.8]), "prior_median": 0.3}
    _, trace = inspect_model(uniform_upper_model, data)
    check_observed_support(trace)


def test_nan_in_observed_values_names_site():
    _, trace = inspect_model(beta_model, {"share": np.array([0.2, np.nan, 0.7, np.nan])})
    with pytest.raises(hierax.DataError) as caught:
        check_observed_support(trace)
    message = str(caught.value)
    assert "observed site 'share'" in message
    assert "2 NaN/inf" in message


def test_nan_made_inside_model_is_reported_by_fit():
    """log(-1) is NaN: the data pass validation, the observed site does not."""
    with pytest.raises(hierax.DataError) as caught:
        hierax.fit(log_outcome_model, {"x": np.array([1.0, -1.0, 2.0])}, progress=False)
    assert "observed site 'log_x'" in str(caught.value)


def test_negative_count_is_reported_by_fit_before_sampling():
    with pytest.raises(hierax.DataError, match=r"observed site 'counts'"):
        hierax.fit(poisson_model, {"counts": np.array([1, -2, 3])}, progress=False)


# -------------------------------------------------------------- model failures


def failing_model(y):
    numpyro.sample("mu", dist.Normal(0.0, 1.0))
    raise ValueError("the model cannot handle this")


def indexing_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]))
    numpyro.sample("y", dist.Normal(mu[y], 1.0), obs=y)  # float indices: a user bug


def test_model_raising_is_reported_as_model_error_naming_function():
    with pytest.raises(hierax.ModelError) as caught:
        inspect_model(failing_model, {"y": np.zeros(3)})
    message = str(caught.value)
    assert "'failing_model'" in message
    assert "ValueError: the model cannot handle this" in message
    assert isinstance(caught.value.__cause__, ValueError)


def test_model_error_through_fit_names_function():
    with pytest.raises(hierax.ModelError) as caught:
        hierax.fit(indexing_model, {"y": np.array([0.0, 1.0])}, progress=False)
    message = str(caught.value)
    assert "'indexing_model'" in message
    assert "TypeError" in message
