"""Host-built keys and arrays equal what JAX builds, without compiling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierax.core.device import prng_key, to_device

SEEDS = [0, 1, 42, 2**31 - 1, 2**31, 2**32 - 1, 2**32 + 5, 2**40 + 3, 2**63 - 1, -1, -7, -(2**31)]


@pytest.mark.exact_seed
@pytest.mark.parametrize("x64", [True, False])
def test_prng_key_equals_jax(x64):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", x64)
    try:
        for seed in SEEDS:
            try:
                expected = np.asarray(jax.random.PRNGKey(seed))
            except OverflowError:
                continue
            got = prng_key(seed)
            assert got.dtype == expected.dtype, seed
            np.testing.assert_array_equal(np.asarray(got), expected, err_msg=str(seed))
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.mark.exact_seed
def test_keys_draw_the_same_numbers():
    a = jax.random.normal(prng_key(123), (5,))
    b = jax.random.normal(jax.random.PRNGKey(123), (5,))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "value", [np.arange(6.0).reshape(2, 3), np.arange(4), [1.5, 2.5], 3.0, np.array([True, False])]
)
def test_to_device_matches_asarray(value):
    got, expected = to_device(value), jnp.asarray(value)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_nothing_is_compiled(lowered_programs):
    to_device(np.linspace(0.0, 1.0, 7).reshape(7, 1) + 0.123)
    prng_key(987654)
    assert lowered_programs == []
