"""Diagonals without jitted helpers equal jnp.diag / jnp.diagonal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierax.inference.marginal.diagonal import diagonal, diagonal_matrix

jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 2, 2), (2, 3, 5, 5)])
def test_diagonal_equals_jnp_diagonal(shape):
    matrix = jnp.asarray(np.random.default_rng(0).normal(size=shape))
    expected = jnp.diagonal(matrix, axis1=-2, axis2=-1)
    np.testing.assert_array_equal(np.asarray(diagonal(matrix)), np.asarray(expected))


@pytest.mark.parametrize("shape", [(1,), (3,), (4, 2)])
def test_diagonal_matrix_equals_jnp_diag(shape):
    values = jnp.asarray(np.random.default_rng(1).normal(size=shape))
    expected = jnp.vectorize(jnp.diag, signature="(k)->(k,k)")(values)
    got = diagonal_matrix(values)
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_no_nested_programs():
    jaxpr = jax.make_jaxpr(lambda m: diagonal_matrix(diagonal(m)))(jnp.ones((3, 3)))
    assert "jit" not in {e.primitive.name for e in jaxpr.jaxpr.eqns}
