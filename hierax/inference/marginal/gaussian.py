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

from hierax.inference.marginal.diagonal import diagonal

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
    # Block-diagonal tail (the largest group term, eliminated by a Schur complement):
    # gram then covers only [theta head, X_s, offset, y]; ``cross`` is the tail's
    # products with those columns (L * k, ...) and ``tail`` its (L, k, k) blocks.
    cross: Any = None
    tail: Any = None

    @property
    def tail_size(self) -> int:
        """Number of coefficients in the block-diagonal tail (0: all dense)."""
        return 0 if self.tail is None else int(np.prod(np.shape(self.tail)[:2]))

    @property
    def head(self) -> int:
        """Number of coefficients handled densely."""
        return self.p - self.tail_size


def gram_statistics(
    W: sparse.spmatrix | np.ndarray,
    X_sampled: np.ndarray,
    offset: np.ndarray | None,
    y: np.ndarray,
    row_precision: np.ndarray | None = None,
    tail: tuple[int, int] | None = None,
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
    tail : (levels, k), optional
        The last ``levels * k`` columns of W are one group term's effects
        (level-major), each row touching one level: keep their products as
        per-level (k, k) blocks, so memory and time grow linearly in ``levels``.
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
    p = int(W.shape[1])
    log_det_d0 = float(np.sum(np.log(d0)))
    if tail is None:
        gram = np.asarray((A.T @ weighted).toarray())
        return GramStatistics(gram, n, log_det_d0, p)
    levels, k = tail
    head = p - levels * k
    keep = np.r_[np.arange(head), np.arange(p, A.shape[1])]
    A_head, A_tail = A[:, keep], A[:, head:p]
    gram = np.asarray((A_head.T @ (sparse.diags(d0) @ A_head)).toarray())
    cross = np.asarray((A_tail.T @ (sparse.diags(d0) @ A_head)).toarray())
    entries = (A_tail.T @ (sparse.diags(d0) @ A_tail)).tocoo()  # block diagonal
    if np.any(entries.row // k != entries.col // k):
        raise ValueError("the tail columns are not one level per row")
    blocks = np.zeros((levels, k, k))
    np.add.at(blocks, (entries.row // k, entries.row % k, entries.col % k), entries.data)
    return GramStatistics(gram, n, log_det_d0, p, cross=cross, tail=blocks)


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
        log_det = log_det - 2.0 * levels * jnp.sum(jnp.log(diagonal(tril)))
    return P, log_det


def _residual_products(
    stats: GramStatistics, prior_mean: jax.Array, sampled: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``b = W' D0 r`` and ``r' D0 r`` from the Gram matrix."""
    u = jnp.concatenate([-prior_mean, -sampled, jnp.array([-1.0, 1.0])])
    gram = jnp.asarray(stats.gram)
    gu = gram @ u
    return gu[: stats.p], u @ gu


def _tail_parts(
    stats: GramStatistics,
    blocks: Blocks,
    prior_mean: jax.Array,
    fixed_precision: jax.Array,
    scale_trils: list[jax.Array],
    sampled: jax.Array,
    noise_precision: jax.Array,
) -> dict[str, jax.Array]:
    """Schur-complement factors of P with a block-diagonal tail (the last term).

    P = [[P_hh, P_ht], [P_th, C]] with C block-diagonal per level; S = P_hh -
    P_ht C^-1 P_th is the head's Schur complement. Cost O(levels k^3 + levels k
    head^2 + head^3): linear in the tail's number of levels.
    """
    head = stats.head
    u = jnp.concatenate([-prior_mean[:head], -sampled, jnp.array([-1.0, 1.0])])
    gram = jnp.asarray(stats.gram)
    gu = gram @ u
    b_head, rdr = gu[:head], u @ gu
    cross = jnp.asarray(stats.cross)  # (L k, head + s + 2)
    b_tail = cross @ u
    tail_gram = jnp.asarray(stats.tail)  # (L, k, k)
    levels, k = tail_gram.shape[0], tail_gram.shape[1]
    head_blocks = Blocks(blocks.fixed, blocks.rows[:-1], blocks.cols[:-1], blocks.levels[:-1])
    P_hh, log_det_prior = precision_matrix(
        noise_precision * gram[:head, :head], head_blocks, fixed_precision, scale_trils[:-1]
    )
    tril = scale_trils[-1]
    inverse_tril = jax.scipy.linalg.solve_triangular(tril, jnp.eye(k), lower=True)
    C = noise_precision * tail_gram + (inverse_tril.T @ inverse_tril)[None]
    log_det_prior = log_det_prior - 2.0 * levels * jnp.sum(jnp.log(diagonal(tril)))
    L_C = jnp.linalg.cholesky(C)  # (L, k, k)
    P_th = (noise_precision * cross[:, :head]).reshape(levels, k, head)
    v_head, v_tail = noise_precision * b_head, (noise_precision * b_tail).reshape(levels, k)
    solve = jax.vmap(lambda chol, rhs: jax.scipy.linalg.cho_solve((chol, True), rhs))
    C_inv_P_th = solve(L_C, P_th)  # (L, k, head)
    C_inv_v = solve(L_C, v_tail[..., None])[..., 0]  # (L, k)
    S = P_hh - jnp.einsum("lkh,lkg->hg", P_th, C_inv_P_th)
    w = v_head - jnp.einsum("lkh,lk->h", P_th, C_inv_v)
    L_S = jnp.linalg.cholesky(S)
    return {
        "rdr": rdr,
        "log_det_prior": log_det_prior,
        "log_det_p": 2.0 * jnp.sum(jnp.log(diagonal(L_C))) + 2.0 * jnp.sum(jnp.log(diagonal(L_S))),
        "quad_p": jnp.sum(v_tail * C_inv_v)
        + jnp.sum(jax.scipy.linalg.solve_triangular(L_S, w, lower=True) ** 2),
        "L_C": L_C,
        "L_S": L_S,
        "w": w,
        "P_th": P_th,
        "v_tail": v_tail,
    }


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
    if stats.tail is not None:
        parts = _tail_parts(
            stats, blocks, prior_mean, fixed_precision, scale_trils, sampled, noise_precision
        )
        rdr, log_det_prior, log_det_p = parts["rdr"], parts["log_det_prior"], parts["log_det_p"]
        quad = noise_precision * rdr - parts["quad_p"]
    else:
        b, rdr = _residual_products(stats, prior_mean, sampled)
        gram_w = jnp.asarray(stats.gram[: stats.p, : stats.p])
        P, log_det_prior = precision_matrix(
            noise_precision * gram_w, blocks, fixed_precision, scale_trils
        )
        L = jnp.linalg.cholesky(P)
        v = jax.scipy.linalg.solve_triangular(L, noise_precision * b, lower=True)
        quad = noise_precision * rdr - v @ v
        log_det_p = 2.0 * jnp.sum(jnp.log(diagonal(L)))
    log_det_noise = stats.n_rows * jnp.log(noise_precision) + stats.log_det_d0
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
    if stats.tail is not None:
        parts = _tail_parts(
            stats, blocks, prior_mean, fixed_precision, scale_trils, sampled, noise_precision
        )
        head_key, tail_key = jax.random.split(key)
        L_S, L_C = parts["L_S"], parts["L_C"]
        # head ~ N(S^-1 w, S^-1); tail | head ~ N(C^-1 (v_t - P_th head), C^-1), per level
        x_head = jax.scipy.linalg.cho_solve((L_S, True), parts["w"])
        x_head = x_head + jax.scipy.linalg.solve_triangular(
            L_S.T, jax.random.normal(head_key, x_head.shape), lower=False
        )
        rhs = parts["v_tail"] - jnp.einsum("lkh,h->lk", parts["P_th"], x_head)
        solve = jax.vmap(lambda chol, r: jax.scipy.linalg.cho_solve((chol, True), r))
        noise = jax.random.normal(tail_key, rhs.shape)
        back = jax.vmap(lambda chol, e: jax.scipy.linalg.solve_triangular(chol.T, e, lower=False))
        x_tail = solve(L_C, rhs) + back(L_C, noise)
        return prior_mean + jnp.concatenate([x_head, x_tail.reshape(-1)])
    b, _ = _residual_products(stats, prior_mean, sampled)
    gram_w = jnp.asarray(stats.gram[: stats.p, : stats.p])
    P, _ = precision_matrix(noise_precision * gram_w, blocks, fixed_precision, scale_trils)
    L = jnp.linalg.cholesky(P)
    mean = jax.scipy.linalg.cho_solve((L, True), noise_precision * b)
    noise = jax.random.normal(key, (stats.p,))
    return prior_mean + mean + jax.scipy.linalg.solve_triangular(L.T, noise, lower=False)
