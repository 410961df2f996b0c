"""Independence Metropolis-Hastings set-up (hierax/inference/batch_density.py): host-side start values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from hierax.inference.batch_density import host_inverse

jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize(
    "support",
    [
        constraints.real,
        constraints.positive,
        constraints.greater_than(2.0),
        constraints.less_than(-1.0),
        constraints.interval(-1.0, 3.0),
        constraints.unit_interval,
        constraints.independent(constraints.positive, 1),
    ],
    ids=str,
)
def test_host_inverse_equals_numpyros_inverse(support):
    transform = biject_to(support)
    u = np.random.default_rng(0).normal(size=(3,))
    value = np.asarray(transform(jnp.asarray(u)))
    np.testing.assert_allclose(host_inverse(transform, value), u, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        host_inverse(transform, value), np.asarray(transform.inv(jnp.asarray(value))), rtol=1e-9
    )


def test_host_inverse_declines_what_it_cannot_do():
    assert host_inverse(biject_to(constraints.simplex), np.full(3, 1 / 3)) is None
    found = []
    jax.make_jaxpr(  # a bound that depends on a parameter: a tracer
        lambda lower: (
            found.append(host_inverse(biject_to(constraints.greater_than(lower)), np.array(3.0)))
            or lower
        )
    )(1.0)
    assert found == [None]
