"""Diagonals of the small matrices of the marginal computations, without jitted helpers.

``jnp.diag`` and ``jnp.diagonal`` are jitted functions (with a per-platform
branch): each use is a nested program in the model's jaxpr, and tracing and
lowering it costs more than the arithmetic on a 2 x 2 covariance. A model
evaluated in every compiled program of a fit (the collapsed density, the
conditional draws) uses them a dozen times; a strided slice and a product
with a constant identity do the same.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["diagonal", "diagonal_matrix"]


def diagonal(matrix: jax.Array) -> jax.Array:
    """The diagonal of square matrices ``(..., k, k)``, shape ``(..., k)``."""
    k = matrix.shape[-1]
    flat = jnp.reshape(matrix, matrix.shape[:-2] + (k * k,))
    return flat[..., :: k + 1]


def diagonal_matrix(values: jax.Array) -> jax.Array:
    """Square matrices ``(..., k, k)`` with ``values`` ``(..., k)`` on the diagonal."""
    values = jnp.asarray(values)
    k = values.shape[-1]
    return values[..., :, None] * np.eye(k, dtype=values.dtype)
