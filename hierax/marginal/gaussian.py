"""Exact marginalization of Gaussian coefficients in a Gaussian linear model.

The model, for one draw of the hyperparameters::

    y = W theta + X_s beta_s + offset + eps,   eps ~ Normal(0, D^-1),  D = kappa * D0
    theta ~ Normal(m, Lambda^-1)

``theta`` stacks the coefficients with Gaussian priors (fixed effects and the
level effects of every group term), ``beta_s`` the coefficients that stay
sampled, ``D0`` holds known per-row precisions (``1 / se**2``, or ones) and
``kappa`` the noise precision (``1 / sigma**2``, or 1 when ``se`` is the whole
noise). Integrating ``theta`` out gives

    y ~ Normal(W m + X_s beta_s + offset, D^-1 + W Lambda^-1 W')

evaluated in precision form (Woodbury identity, matrix determinant lemma)
with ``P = Lambda + kappa W' D0 W``::

    log p(y) = -1/2 [n log 2 pi - log|D| + log|P| - log|Lambda|
                     + kappa r'D0 r - kappa^2 b' P^-1 b],   b = W' D0 r

where ``r = y - W m - X_s beta_s - offset``. Every data product comes from one
Gram matrix ``G = A' D0 A`` of ``A = [W, X_s, offset, y]`` computed once, so a
log-density evaluation costs O(p^3) in the number p of marginalized
coefficients (group levels), independent of the number of rows. The
conditional posterior ``theta | y, hyperparameters ~ Normal(m + P^-1 kappa b,
P^-1)`` gives exact draws of the marginalized coefficients afterwards.
Everything uses Cholesky factors; no explicit inverse is formed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sparse

__all__ = [
    "Blocks",
    "GramStatistics",
    "conditional_draw",
    "gram_statistics",
    "marginal_log_likelihood",
    "precision_matrix",
]


@dataclass(frozen=True)
class GramStatistics:
    """Data products of a Gaussian linear model, computed once.

    Attributes
    ----------
    gram : (p + s + 2, p + s + 2) array
        ``A' D0 A`` for ``A = [W, X_s, offset, y]``.
    n_rows : int
    log_det_d0 : float
        ``sum(log D0)``.
    p : int
        Number of marginalized coefficients (columns of W).
    """

    gram: Any  # numpy, or a jax array inside a model (pass it as data, not as a constant)
    n_rows: int
    log_det_d0: float
    p: int


def gram_statistics(
    W: sparse.spmatrix | np.ndarray,
    X_sampled: np.ndarray,
    offset: np.ndarray | None,
    y: np.ndarray,
    row_precision: np.ndarray | None = None,
) -> GramStatistics:
    """``A' D0 A`` with ``A = [W, X_s, offset, y]``, using W's sparsity.

    Parameters
    ----------
    W : (n, p) sparse or dense array
        Columns of the marginalized coefficients.
    X_sampled : (n, s) array
        Columns of coefficients that stay sampled (s may be 0).
    offset : (n,) array, optional
    y : (n,) array
    row_precision : (n,) array, optional
        ``D0``: known precision of each row (``1 / se**2``); ones when omitted.
    """
    n = int(np.shape(y)[0])
    d0 = np.ones(n) if row_precision is None else np.asarray(row_precision, dtype=float)
    dense = np.column_stack(
        [
            np.asarray(X_sampled, dtype=float).reshape(n, -1),
            np.zeros(n) if offset is None else np.asarray(offset, dtype=float),
            np.asarray(y, dtype=float),
        ]
    )
    A = sparse.hstack([sparse.csr_matrix(W, dtype=float), sparse.csr_matrix(dense)]).tocsr()
    weighted = sparse.diags(d0) @ A
    gram = np.asarray((A.T @ weighted).toarray())
    return GramStatistics(gram, n, float(np.sum(np.log(d0))), int(W.shape[1]))


@dataclass(frozen=True)
class Blocks:
    """Where each group term's level effects sit in theta (static index arrays).

    ``rows[t]``/``cols[t]`` are (levels, k, k) indices into P of term t's
    per-level precision blocks; ``fixed`` the positions of coefficients with
    independent Normal priors.
    """

    fixed: np.ndarray
    rows: tuple[np.ndarray, ...]
    cols: tuple[np.ndarray, ...]
    levels: tuple[int, ...]

    @classmethod
    def layout(cls, n_fixed: int, terms: list[tuple[int, int]]) -> Blocks:
        """theta = [fixed coefficients, term 1 (levels x k, level-major), term 2, ...]."""
        start = n_fixed
        rows, cols = [], []
        for levels, k in terms:
            base = start + np.arange(levels)[:, None, None] * k
            rows.append(base + np.arange(k)[None, :, None] + 0 * np.arange(k)[None, None, :])
            cols.append(base + np.arange(k)[None, None, :] + 0 * np.arange(k)[None, :, None])
            start += levels * k
        return cls(np.arange(n_fixed), tuple(rows), tuple(cols), tuple(t[0] for t in terms))


def precision_matrix(
    data_precision: jax.Array,
    blocks: Blocks,
    fixed_precision: jax.Array,
    scale_trils: list[jax.Array],
) -> tuple[jax.Array, jax.Array]:
    """``P = Lambda + data_precision`` and ``log|Lambda|``.

    Parameters
    ----------
    data_precision : (p, p)
        ``kappa W' D0 W``.
    fixed_precision : (n_fixed,)
        Prior precisions of the fixed coefficients.
    scale_trils : list of (k, k)
        Cholesky factor of each group term's effect covariance.
    """
    P = data_precision.at[blocks.fixed, blocks.fixed].add(fixed_precision)
    log_det = jnp.sum(jnp.log(fixed_precision))
    for rows, cols, levels, tril in zip(
        blocks.rows, blocks.cols, blocks.levels, scale_trils, strict=True
    ):
        k = tril.shape[0]
        inverse_tril = jax.scipy.linalg.solve_triangular(tril, jnp.eye(k), lower=True)
        block = inverse_tril.T @ inverse_tril  # Sigma^-1
        P = P.at[rows, cols].add(jnp.broadcast_to(block, (levels, k, k)))
        log_det = log_det - 2.0 * levels * jnp.sum(jnp.log(jnp.diag(tril)))
    return P, log_det


def _residual_products(
    stats: GramStatistics, prior_mean: jax.Array, sampled: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``b = W' D0 r`` and ``r' D0 r`` from the Gram matrix."""
    u = jnp.concatenate([-prior_mean, -sampled, jnp.array([-1.0, 1.0])])
    gram = jnp.asarray(stats.gram)
    gu = gram @ u
    return gu[: stats.p], u @ gu


def marginal_log_likelihood(
    stats: GramStatistics,
    blocks: Blocks,
    prior_mean: jax.Array,
    fixed_precision: jax.Array,
    scale_trils: list[jax.Array],
    sampled: jax.Array,
    noise_precision: jax.Array,
) -> jax.Array:
    """``log p(y | hyperparameters)`` with theta integrated out (see the module docstring).

    Parameters
    ----------
    prior_mean : (p,)
        ``m``: prior means of theta (zero for group effects).
    sampled : (s,)
        Values of the coefficients that stay sampled.
    noise_precision : scalar
        ``kappa``.
    """
    b, rdr = _residual_products(stats, prior_mean, sampled)
    gram_w = jnp.asarray(stats.gram[: stats.p, : stats.p])
    P, log_det_prior = precision_matrix(
        noise_precision * gram_w, blocks, fixed_precision, scale_trils
    )
    L = jnp.linalg.cholesky(P)
    v = jax.scipy.linalg.solve_triangular(L, noise_precision * b, lower=True)
    quad = noise_precision * rdr - v @ v
    log_det_noise = stats.n_rows * jnp.log(noise_precision) + stats.log_det_d0
    log_det_p = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
    return -0.5 * (
        stats.n_rows * jnp.log(2.0 * jnp.pi) - log_det_noise + log_det_p - log_det_prior + quad
    )


def conditional_draw(
    key: jax.Array,
    stats: GramStatistics,
    blocks: Blocks,
    prior_mean: jax.Array,
    fixed_precision: jax.Array,
    scale_trils: list[jax.Array],
    sampled: jax.Array,
    noise_precision: jax.Array,
) -> jax.Array:
    """One exact draw of theta from ``Normal(m + P^-1 kappa b, P^-1)``."""
    b, _ = _residual_products(stats, prior_mean, sampled)
    gram_w = jnp.asarray(stats.gram[: stats.p, : stats.p])
    P, _ = precision_matrix(noise_precision * gram_w, blocks, fixed_precision, scale_trils)
    L = jnp.linalg.cholesky(P)
    mean = jax.scipy.linalg.cho_solve((L, True), noise_precision * b)
    noise = jax.random.normal(key, (stats.p,))
    return prior_mean + mean + jax.scipy.linalg.solve_triangular(L.T, noise, lower=False)
