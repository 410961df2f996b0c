"""Collapsed sampling of nonlinear models with conditionally linear parameters.

A gaussian nonlinear model ``y ~ f(data, params)`` whose expression is affine in
a set of parameters S given the others (theta)::

    mean = A(theta) + sum_{p in S} B_p(theta) * p        (elementwise over rows)

where each p in S has an identity transform and a sub-formula whose
coefficients have Gaussian priors given the hyperparameters (Normal priors on
fixed coefficients; group effects, centered or not, correlated or not), is
linear-Gaussian in those coefficients ``gamma`` given theta::

    y = A'(theta) + W(theta) gamma + eps,   eps ~ Normal(0, diag(1 / w)),
    gamma ~ Normal(m, Lambda^-1)

with ``W(theta)`` the sub-formula columns scaled row by row by ``B_p(theta)``.
``gamma`` is integrated out exactly and NUTS samples only theta; afterwards
every marginalized site is drawn from its conditional Gaussian for each
posterior draw, and the plain model is replayed to fill in every deterministic
site, so the InferenceData matches a plain fit's variables, dims and coords.

Affinity is decided on the expression tree (:func:`affine_degree`), never
numerically, and ``B_p`` are the expression's symbolic derivatives
(:func:`slope_tree`, trees free of S built once); ``A`` is the expression
at S = 0 with its vanishing terms removed (:func:`free_tree`: the binary
stars' ``a * cos(w) + b * sin(w) + v0`` has none left, so no row computes a
cosine only to multiply it by zero).

The coefficients split into a *tail* (the effects of every marginalized term
on the grouping factor with most coefficients; each row touches one level) and
a dense *head* (everything else). The precision ``P = Lambda + W' diag(w) W``
is factorized blockwise::

    P = [[P_hh, P_ht], [P_th, C]],  C = blockdiag(C_1..C_L) (K x K per level)
    S = P_hh - sum_l P_th,l' C_l^-1 P_th,l                  (head Schur complement)

with the per-level products gathered by ``jax.ops.segment_sum``. One log
density costs O(n (K + h)^2 + L K^3 + h^3) for n rows, L levels, K tail
coefficients per level and h head coefficients: linear in rows and levels, no
n x n matrix and no explicit inverse.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers

from .._device import to_device
from ..formula.build import (
    _sample,
    _stacked_coefficient_priors,
    group_scale,
    linear_predictor,
)
from ..formula.design import GroupBlock
from ..priors import Prior
from .collapsed import map_draws
from .diagonal import diagonal, diagonal_matrix
from .formula import _normal_parameters

if TYPE_CHECKING:
    from ..fit import Fit
    from ..nonlinear.model import NonlinearModel

__all__ = [
    "LinearGaussian",
    "free_tree",
    "NonlinearMarginalPlan",
    "affine_degree",
    "slope_tree",
    "collapsed_model",
    "conditional_draw",
    "conditional_sample",
    "draw_marginalized",
    "fit_marginalized",
    "marginal_log_density",
    "marginal_log_likelihood",
    "plan_marginalization",
]

#: Above this many head (dense) coefficients a Cholesky per step costs too much.
MAX_HEAD = 500
#: The largest grouping factor is eliminated per level when it has this many coefficients.
SPLIT_MIN = 32
#: Posterior draws whose conditional draws are computed together (vectorized).
_DRAW_BATCH = 100
#: Degrees of a subexpression in the marginalized parameters.
CONSTANT, AFFINE, NONLINEAR = 0, 1, 2


# ------------------------------------------------------------------ the array core


class LinearGaussian(NamedTuple):
    """A linear-Gaussian model of the rows given theta, in deviations from the prior mean.

    ``residual = head_features @ x_head + tail_features[i] . x_tail[tail_index[i]] + eps``
    with ``eps_i ~ Normal(0, 1 / weights_i)``, ``x_head ~ Normal(0, head_precision^-1)``
    and, independently per level l, ``x_tail[l] ~ Normal(0, tail_precision^-1)``.
    """

    residual: jax.Array  # (n,) y - mean at the prior mean of the coefficients
    weights: jax.Array  # (n,) noise precision of each row
    head_features: jax.Array  # (n, h)
    tail_features: jax.Array  # (n, K): the row's features for its own level's tail coefficients
    tail_index: jax.Array  # (n,) int, the level of each row in the tail grouping
    head_precision: jax.Array  # (h, h) prior precision of the head
    head_log_det: jax.Array  # log|head_precision|
    tail_precision: jax.Array  # (K, K) prior precision of one level's tail
    tail_log_det: jax.Array  # log|tail_precision|


class _Factors(NamedTuple):
    tail_chol: jax.Array  # (L, K, K) Cholesky factors of C_l
    tail_solved: jax.Array  # (L, K) C_l^-1 b_tail,l
    cross: jax.Array  # (L, K, h) P_th,l
    schur_chol: jax.Array  # (h, h) Cholesky factor of S
    schur_rhs: jax.Array  # (h,) b_head - sum_l P_th,l' C_l^-1 b_tail,l
    log_det_precision: jax.Array  # log|P|
    quadratic: jax.Array  # b' P^-1 b
    weighted_square: jax.Array  # r' diag(w) r


#: Per-level blocks up to this size are factorized by unrolled formulas, not LAPACK calls
#: (binaries, 14 blocks of 3 x 3: 1.3 against 6.2 us per value and gradient on CPU).
SMALL_BLOCK = 4


def _batched_cholesky(matrices: jax.Array) -> jax.Array:
    """Lower Cholesky factors of (L, K, K) positive definite blocks."""
    k = matrices.shape[-1]
    if k > SMALL_BLOCK:
        return jnp.linalg.cholesky(matrices)
    zero = jnp.zeros(matrices.shape[:-2])
    entries = [[zero] * k for _ in range(k)]
    for j in range(k):
        pivot = matrices[..., j, j] - sum((entries[j][m] ** 2 for m in range(j)), zero)
        entries[j][j] = jnp.sqrt(pivot)
        for i in range(j + 1, k):
            inner = sum((entries[i][m] * entries[j][m] for m in range(j)), zero)
            entries[i][j] = (matrices[..., i, j] - inner) / entries[j][j]
    return jnp.stack([jnp.stack(row, axis=-1) for row in entries], axis=-2)


def _batched_triangular_solve(chol: jax.Array, rhs: jax.Array, *, transpose: bool) -> jax.Array:
    """Solve ``L_l x_l = rhs_l`` (or ``L_l' x_l = rhs_l``) per level.

    chol (L, K, K) lower triangular; rhs (L, K) or (L, K, m).
    """
    k = chol.shape[-1]
    if k > SMALL_BLOCK:
        return jax.vmap(
            lambda c, r: jax.scipy.linalg.solve_triangular(c, r, lower=True, trans=int(transpose))
        )(chol, rhs)
    trailing = (1,) * (rhs.ndim - 2)  # broadcast a (L,) entry against (L, m) columns

    def entry(i: int, j: int) -> jax.Array:
        value = chol[:, j, i] if transpose else chol[:, i, j]
        return value.reshape(value.shape + trailing)

    solution: list[Any] = [None] * k
    order = range(k - 1, -1, -1) if transpose else range(k)
    for i in order:
        known = range(i + 1, k) if transpose else range(i)
        inner = sum((entry(i, m) * solution[m] for m in known), jnp.zeros_like(rhs[:, i]))
        solution[i] = (rhs[:, i] - inner) / entry(i, i)
    return jnp.stack(solution, axis=1)


def _batched_cho_solve(chol: jax.Array, rhs: jax.Array) -> jax.Array:
    """Solve ``C_l x_l = rhs_l`` per level; chol (L, K, K), rhs (L, K) or (L, K, m)."""
    forward = _batched_triangular_solve(chol, rhs, transpose=False)
    return _batched_triangular_solve(chol, forward, transpose=True)


def _factorize(problem: LinearGaussian, n_levels: int) -> _Factors:
    w = problem.weights
    weighted_residual = w * problem.residual  # (n,)
    head, tail = problem.head_features, problem.tail_features
    h, k = head.shape[1], tail.shape[1]
    b_head = head.T @ weighted_residual  # (h,)
    p_head = problem.head_precision + (head * w[:, None]).T @ head  # (h, h)
    log_det = jnp.zeros(())
    quadratic = jnp.zeros(())
    weighted_square = jnp.sum(weighted_residual * problem.residual)
    tail_chol = jnp.zeros((n_levels, k, k))
    tail_solved = jnp.zeros((n_levels, k))
    cross = jnp.zeros((n_levels, k, h))
    if k:
        index = problem.tail_index
        weighted_tail = tail * w[:, None]  # (n, K)
        # the Gram matrix and right-hand side per level from one sum of outer products of
        # [tail features, residual]: the rows' features are then read by one consumer,
        # and XLA does not recompute them (with their cosines) in several fused loops
        augmented = jnp.concatenate([tail, problem.residual[:, None]], axis=1)  # (n, K + 1)
        products = jax.ops.segment_sum(
            w[:, None, None] * augmented[:, :, None] * augmented[:, None, :],
            index,
            num_segments=n_levels,
        )  # (L, K + 1, K + 1)
        gram, b_tail = products[:, :k, :k], products[:, :k, k]
        weighted_square = jnp.sum(products[:, k, k])
        tail_chol = _batched_cholesky(problem.tail_precision[None] + gram)
        tail_solved = _batched_cho_solve(tail_chol, b_tail)
        quadratic = quadratic + jnp.sum(b_tail * tail_solved)
        log_det = log_det + 2.0 * jnp.sum(jnp.log(diagonal(tail_chol)))
        if h:
            cross = jax.ops.segment_sum(
                weighted_tail[:, :, None] * head[:, None, :], index, num_segments=n_levels
            )  # (L, K, h)
            p_head = p_head - jnp.einsum("lkh,lkg->hg", cross, _batched_cho_solve(tail_chol, cross))
            b_head = b_head - jnp.einsum("lkh,lk->h", cross, tail_solved)
    schur_chol = jnp.linalg.cholesky(0.5 * (p_head + p_head.T)) if h else jnp.zeros((0, 0))
    if h:
        v = jax.scipy.linalg.solve_triangular(schur_chol, b_head, lower=True)
        quadratic = quadratic + v @ v
        log_det = log_det + 2.0 * jnp.sum(jnp.log(diagonal(schur_chol)))
    return _Factors(
        tail_chol,
        tail_solved,
        cross,
        schur_chol,
        b_head,
        log_det,
        quadratic,
        weighted_square,
    )


def marginal_log_likelihood(problem: LinearGaussian, n_levels: int) -> jax.Array:
    """``log p(residual | theta)`` with the coefficients integrated out.

    In precision form (matrix determinant lemma and Woodbury)::

        -1/2 [n log 2 pi - sum log w + log|P| - log|Lambda| + r' D r - b' P^-1 b]

    with ``D = diag(w)``, ``b = W' D r`` and ``P = Lambda + W' D W``.

    Parameters
    ----------
    problem : LinearGaussian
    n_levels : int
        Number of levels L of the tail grouping (static).
    """
    factors = _factorize(problem, n_levels)
    n = problem.residual.shape[0]
    log_det_prior = problem.head_log_det
    if problem.tail_features.shape[1]:
        log_det_prior = log_det_prior + n_levels * problem.tail_log_det
    return -0.5 * (
        n * jnp.log(2.0 * jnp.pi)
        - jnp.sum(jnp.log(problem.weights))
        + factors.log_det_precision
        - log_det_prior
        + factors.weighted_square
        - factors.quadratic
    )


def conditional_sample(
    problem: LinearGaussian, n_levels: int, head_noise: jax.Array, tail_noise: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The coefficients ``x ~ Normal(P^-1 b, P^-1)`` as a function of standard normals.

    Parameters
    ----------
    head_noise : (h,) array
    tail_noise : (L, K) array

    Returns
    -------
    head : (h,) array
    tail : (L, K) array
        Deviations from the prior mean: the head first from its Schur marginal,
        then each level's tail given the head.
    """
    factors = _factorize(problem, n_levels)
    head = jnp.zeros(0)
    if problem.head_features.shape[1]:
        chol = factors.schur_chol
        head = jax.scipy.linalg.cho_solve((chol, True), factors.schur_rhs)
        head = head + jax.scipy.linalg.solve_triangular(chol.T, head_noise, lower=False)
    tail = jnp.zeros((n_levels, 0))
    if problem.tail_features.shape[1]:
        # x_tail,l | head ~ Normal(C_l^-1 (b_tail,l - P_th,l head), C_l^-1)
        shift = _batched_cho_solve(factors.tail_chol, jnp.einsum("lkh,h->lk", factors.cross, head))
        spread = _batched_triangular_solve(factors.tail_chol, tail_noise, transpose=True)
        tail = factors.tail_solved - shift + spread
    return head, tail


def conditional_draw(
    key: jax.Array, problem: LinearGaussian, n_levels: int
) -> tuple[jax.Array, jax.Array]:
    """One exact draw of the coefficients from their conditional Gaussian."""
    head_key, tail_key = jax.random.split(key)
    h, k = problem.head_features.shape[1], problem.tail_features.shape[1]
    return conditional_sample(
        problem,
        n_levels,
        jax.random.normal(head_key, (h,)),
        jax.random.normal(tail_key, (n_levels, k)),
    )


# ------------------------------------------------------------ affinity of the expression


def affine_degree(node: ast.AST, marginal: frozenset[str] | set[str]) -> int:
    """Degree of an expression tree in the names ``marginal``.

    Returns 0 (free of them), 1 (affine in them jointly) or 2 (anything else).
    Conservative: a call of any function other than ``where`` on a marginalized
    parameter, a comparison, a division by one or a power of one is nonlinear.
    """
    if isinstance(node, ast.Constant):
        return CONSTANT
    if isinstance(node, ast.Name):
        return AFFINE if node.id in marginal else CONSTANT
    if isinstance(node, ast.UnaryOp):
        return affine_degree(node.operand, marginal)
    if isinstance(node, ast.BinOp):
        left, right = affine_degree(node.left, marginal), affine_degree(node.right, marginal)
        if isinstance(node.op, ast.Add | ast.Sub):
            return max(left, right)
        if isinstance(node.op, ast.Mult):
            return min(left + right, NONLINEAR)
        if isinstance(node.op, ast.Div):
            return left if right == CONSTANT else NONLINEAR
        if isinstance(node.op, ast.Pow):
            if left == CONSTANT and right == CONSTANT:
                return CONSTANT
            exponent = node.right
            if right == CONSTANT and isinstance(exponent, ast.Constant) and exponent.value == 1:
                return left
            return NONLINEAR
        return NONLINEAR
    if isinstance(node, ast.Call):
        args = [affine_degree(a, marginal) for a in node.args]
        if all(a == CONSTANT for a in args):
            return CONSTANT
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        if name == "where" and len(args) == 3 and args[0] == CONSTANT:
            return max(args[1:])
        return NONLINEAR
    if isinstance(node, ast.Compare):
        parts = [node.left, *node.comparators]
        return CONSTANT if all(affine_degree(p, marginal) == CONSTANT for p in parts) else NONLINEAR
    return NONLINEAR


def _sum(left: ast.expr | None, op: ast.operator, right: ast.expr | None) -> ast.expr | None:
    """``left op right`` for ``op`` in (+, -), with None standing for zero."""
    if right is None:
        return left
    if left is None:
        return right if isinstance(op, ast.Add) else ast.UnaryOp(ast.USub(), right)
    return ast.BinOp(left, op, right)


def _where(node: ast.Call, branches: list[ast.expr | None]) -> ast.expr | None:
    """``where(condition, x, y)`` with new branches (None: zero; both None: None)."""
    if all(b is None for b in branches):
        return None
    return ast.Call(
        node.func,
        [node.args[0], *(ast.Constant(0.0) if b is None else b for b in branches)],
        [],
    )


def slope_tree(node: ast.expr, name: str, marginal: frozenset[str] | set[str]) -> ast.expr | None:
    """The derivative of an affine expression tree with respect to ``name``, as a tree.

    ``node`` must be affine in ``marginal`` (:func:`affine_degree` <= 1) and
    ``name`` one of them; the result is free of ``marginal`` (None means zero).
    Symbolic, so the coefficient of each marginalized parameter costs one plain
    evaluation and shares its subexpressions (``cos(2 * pi * t / exp(lnP))``)
    with the others under ``jit``.
    """
    if isinstance(node, ast.Name):
        return ast.Constant(1.0) if node.id == name else None
    if isinstance(node, ast.UnaryOp):
        inner = slope_tree(node.operand, name, marginal)
        if inner is None or isinstance(node.op, ast.UAdd):
            return inner
        return ast.UnaryOp(ast.USub(), inner)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            left, right = (slope_tree(n, name, marginal) for n in (node.left, node.right))
            return _sum(left, node.op, right)
        if isinstance(node.op, ast.Mult):
            if affine_degree(node.left, marginal) == CONSTANT:
                right = slope_tree(node.right, name, marginal)
                return None if right is None else ast.BinOp(node.left, ast.Mult(), right)
            left = slope_tree(node.left, name, marginal)
            return None if left is None else ast.BinOp(left, ast.Mult(), node.right)
        if isinstance(node.op, ast.Div):
            left = slope_tree(node.left, name, marginal)
            return None if left is None else ast.BinOp(left, ast.Div(), node.right)
        if isinstance(node.op, ast.Pow) and affine_degree(node, marginal) != CONSTANT:
            return slope_tree(node.left, name, marginal)  # p ** 1
        return None
    if isinstance(node, ast.Call) and affine_degree(node, marginal) != CONSTANT:
        # where(condition, x, y) with a condition free of the marginalized parameters
        return _where(node, [slope_tree(n, name, marginal) for n in node.args[1:]])
    return None


def free_tree(node: ast.expr, marginal: frozenset[str] | set[str]) -> ast.expr | None:
    """An affine expression tree at ``marginal = 0``, with the vanishing terms removed.

    ``a * cos(w) + b * sin(w) + v0`` at ``a = b = v0 = 0`` is 0 (None), not
    ``0 * cos(w) + 0 * sin(w) + 0``, which would cost a cosine and a sine per row
    (XLA cannot drop ``0 * x``: x may be infinite). ``node`` must be affine in
    ``marginal`` (:func:`affine_degree` <= 1).
    """
    if affine_degree(node, marginal) == CONSTANT:
        return node
    if isinstance(node, ast.Name):
        return None  # a marginalized parameter
    if isinstance(node, ast.UnaryOp):
        inner = free_tree(node.operand, marginal)
        return None if inner is None else ast.UnaryOp(node.op, inner)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            left, right = (free_tree(n, marginal) for n in (node.left, node.right))
            return _sum(left, node.op, right)
        if isinstance(node.op, ast.Mult):
            left, right = (free_tree(n, marginal) for n in (node.left, node.right))
            return None if left is None or right is None else ast.BinOp(left, node.op, right)
        if isinstance(node.op, ast.Div):
            left = free_tree(node.left, marginal)
            return None if left is None else ast.BinOp(left, node.op, node.right)
        if isinstance(node.op, ast.Pow):
            return free_tree(node.left, marginal)  # p ** 1
    if isinstance(node, ast.Call):
        # where(condition, x, y) with a condition free of the marginalized parameters
        return _where(node, [free_tree(n, marginal) for n in node.args[1:]])
    return node  # pragma: no cover (affine_degree admits nothing else)


# ------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class _Coefficient:
    """One fixed-effect site of a marginalized parameter and how it is treated."""

    name: str
    columns: slice
    kind: str  # "marginal", "sampled" or "constant"
    prior: Any  # Prior (width 1) or a stacked distribution (width > 1)
    loc: np.ndarray | None = None
    scale: np.ndarray | None = None

    @property
    def width(self) -> int:
        return self.columns.stop - self.columns.start


@dataclass(frozen=True)
class _GroupTerm:
    """One group term of a marginalized parameter."""

    parameter: str
    group: GroupBlock
    centered: bool
    #: the per-level site (``<p>_<g>``) sampled in place of r_ (centered varying intercept)
    per_level: str | None

    @property
    def size(self) -> int:
        return len(self.group.levels) * self.group.n_coef

    @property
    def site(self) -> str:
        """The latent site of the plain model that holds this term's effects."""
        if self.centered:
            return self.per_level or f"r_{self.group.name}"
        return f"z_{self.group.name}"


@dataclass(frozen=True)
class _Parameter:
    name: str
    intercept_name: str
    coefficients: tuple[_Coefficient, ...]
    groups: tuple[_GroupTerm, ...]


@dataclass(frozen=True)
class NonlinearMarginalPlan:
    """What a nonlinear model integrates out, and how the coefficients are laid out.

    ``gamma = [head, tail]``: the head holds the Normal fixed coefficients of
    every marginalized parameter (in ``parameters`` order), then the effects of
    ``head_groups`` (level-major); the tail, per level of the tail grouping,
    the effects of ``tail_groups`` side by side.
    """

    parameters: tuple[_Parameter, ...]
    head_groups: tuple[_GroupTerm, ...]
    tail_groups: tuple[_GroupTerm, ...]
    tail_levels: int
    not_marginalized: Mapping[str, str]
    #: per marginalized parameter, the expression tree of its coefficient B_p
    slopes: Mapping[str, ast.expr]
    #: the expression at zero marginalized parameters (A), without its vanishing terms
    free: ast.expr

    @property
    def head_size(self) -> int:
        """Number of coefficients factorized densely."""
        fixed = sum(
            c.width for p in self.parameters for c in p.coefficients if c.kind == "marginal"
        )
        return fixed + sum(g.size for g in self.head_groups)

    @property
    def tail_width(self) -> int:
        """Coefficients per level of the tail grouping (K)."""
        return sum(g.group.n_coef for g in self.tail_groups)

    @property
    def n_coefficients(self) -> int:
        return self.head_size + self.tail_levels * self.tail_width

    @property
    def marginalized(self) -> list[str]:
        """The plain model's latent sites drawn from their conditional Gaussian."""
        names = [c.name for p in self.parameters for c in p.coefficients if c.kind == "marginal"]
        return names + [g.site for g in (*self.head_groups, *self.tail_groups)]

    @property
    def parameter_names(self) -> list[str]:
        return [p.name for p in self.parameters]


def _coefficients(model: NonlinearModel, name: str) -> list[_Coefficient]:
    design = model.designs[name]
    priors = model._priors
    stacked = _stacked_coefficient_priors(design, priors, prefix=f"{name}_")
    entries: list[tuple[str, slice, list[Prior]]] = []
    if design.intercept:
        intercept = model._intercept_name(name)
        entries.append((intercept, slice(0, 1), [priors[intercept]]))
    for term in design.fixed_terms:
        site = f"b_{term.name}"
        if term.columns.stop - term.columns.start == 1:
            entries.append((site, term.columns, [priors[site]]))
        else:
            keys = [f"b_{name}_{label.replace(':', '_').replace(' ', '')}" for label in term.labels]
            entries.append((site, term.columns, [priors[k] for k in keys]))
    result = []
    for site, columns, column_priors in entries:
        normals = [_normal_parameters(p) for p in column_priors]
        width = columns.stop - columns.start
        if all(n is not None for n in normals):
            loc = np.array([n[0] for n in normals if n is not None])
            scale = np.array([n[1] for n in normals if n is not None])
            result.append(
                _Coefficient(site, columns, "marginal", column_priors[0], loc=loc, scale=scale)
            )
        elif width == 1:
            kind = "constant" if column_priors[0].fixed is not None else "sampled"
            result.append(_Coefficient(site, columns, kind, column_priors[0]))
        else:
            result.append(_Coefficient(site, columns, "sampled", stacked[site]))
    return result


def _candidate(model: NonlinearModel, name: str, in_latents: set[str]) -> _Parameter | str:
    """A parameter that may be marginalized, or why it may not (before joint affinity)."""
    spec = model.params[name]
    if spec.formula is None:
        return "it is a per-observation latent"
    if name in model.distributional:
        return "it is a distributional parameter of the family"
    if spec.link != "identity" or spec.lower is not None or spec.upper is not None:
        return "its transform (link or bounds) is not the identity"
    if name in in_latents:
        return "it is used in a latent distribution"
    design = model.designs[name]
    coefficients = _coefficients(model, name)
    if not design.groups and not any(c.kind == "marginal" for c in coefficients):
        return "none of its coefficients has a Normal prior"
    if affine_degree(model.expression.tree, {name}) > AFFINE:
        return "it enters the expression nonlinearly"
    groups = tuple(
        _GroupTerm(
            name,
            group,
            model.group_options[group.name].centered,
            group.name
            if design.intercept and group.n_coef == 1 and group.coef_names == ("Intercept",)
            else None,
        )
        for group in design.groups
    )
    return _Parameter(name, model._intercept_name(name), tuple(coefficients), groups)


def _split_tail(
    terms: list[_GroupTerm], split_min: int
) -> tuple[list[_GroupTerm], list[_GroupTerm], int]:
    """Put the terms on the grouping factor with most coefficients in the tail."""
    factors: list[list[_GroupTerm]] = []
    for term in terms:
        for members in factors:
            first = members[0].group
            if (
                first.dim == term.group.dim
                and list(first.levels) == list(term.group.levels)
                and np.array_equal(first.index, term.group.index)
            ):
                members.append(term)
                break
        else:
            factors.append([term])
    if not factors:
        return [], [], 0
    largest = max(factors, key=lambda members: sum(t.size for t in members))
    if sum(t.size for t in largest) < split_min:
        return terms, [], 0
    return (
        [t for t in terms if t not in largest],
        largest,
        len(largest[0].group.levels),
    )


def plan_marginalization(
    model: NonlinearModel, *, split_min: int = SPLIT_MIN, max_head: int = MAX_HEAD
) -> NonlinearMarginalPlan | str:
    """The marginalization plan of a nonlinear model, or the reason there is none.

    Parameters
    ----------
    split_min : int
        Eliminate the largest grouping factor per level when it has at least
        this many coefficients (otherwise everything is factorized densely).
    max_head : int
        Most coefficients factorized densely.
    """
    if model.measurement is not None:
        return "the observation model is a calibration (measurement) model"
    if model.family.name != "gaussian":
        return f"the {model.family.name} family is not conditionally Gaussian"
    if model.distributional and model.response_design.se is not None:
        return "a distributional sigma cannot be combined with se()"
    in_latents: set[str] = set()
    for distribution in model.latents.values():
        in_latents |= distribution.names
    reasons: dict[str, str] = {}
    candidates: list[_Parameter] = []
    for name in model.params:
        found = _candidate(model, name, in_latents)
        if isinstance(found, str):
            reasons[name] = found
        else:
            candidates.append(found)

    def count(p: _Parameter) -> int:
        fixed = sum(c.width for c in p.coefficients if c.kind == "marginal")
        return fixed + sum(g.size for g in p.groups)

    # the parameters with most coefficients first; each must keep the expression
    # jointly affine in all chosen so far (a * b is affine in a and in b, not in both)
    chosen: list[_Parameter] = []
    for candidate in sorted(candidates, key=count, reverse=True):
        names = {p.name for p in chosen} | {candidate.name}
        if affine_degree(model.expression.tree, names) <= AFFINE:
            chosen.append(candidate)
        else:
            others = sorted(names - {candidate.name})
            reasons[candidate.name] = f"the expression is not jointly affine in it and {others}"
    if not chosen:
        return "; ".join(f"{name}: {why}" for name, why in reasons.items())
    order = list(model.params)
    chosen.sort(key=lambda p: order.index(p.name))
    head_groups, tail_groups, tail_levels = _split_tail(
        [g for p in chosen for g in p.groups], split_min
    )
    marginal = frozenset(p.name for p in chosen)
    slopes = {}
    for p in chosen:
        tree = slope_tree(model.expression.tree, p.name, marginal)
        slopes[p.name] = ast.Constant(0.0) if tree is None else ast.fix_missing_locations(tree)
    free = free_tree(model.expression.tree, marginal)
    plan = NonlinearMarginalPlan(
        tuple(chosen),
        tuple(head_groups),
        tuple(tail_groups),
        tail_levels,
        reasons,
        slopes,
        ast.Constant(0.0) if free is None else ast.fix_missing_locations(free),
    )
    if plan.head_size > max_head:
        return (
            f"{plan.head_size} coefficients outside the largest grouping factor exceed the "
            f"dense limit of {max_head}"
        )
    return plan


# ------------------------------------------------------------------ the collapsed model


@dataclass
class _Conditional:
    """Everything the collapsed model computes at one theta."""

    problem: LinearGaussian
    head_mean: jax.Array  # (h,) prior mean of the head coefficients
    coefficients: dict[str, jax.Array]  # sampled or constant fixed sites of marginal parameters
    trils: dict[str, jax.Array]  # group name -> (k, k) Cholesky factor of its effect covariance


def _group_tril(term: _GroupTerm, priors: Mapping[str, Prior]) -> jax.Array:
    group = term.group
    cor_prior = priors.get(f"cor_{group.name}", priors.get("cor", Prior("LKJ(2)", "LKJ", (2.0,))))
    sd, tril = group_scale(group, priors[f"sd_{group.name}"], cor_prior)
    if tril is None:
        tril = diagonal_matrix(jnp.broadcast_to(jnp.reshape(sd, (-1,)), (group.n_coef,)))
    return tril


def _precision(tril: jax.Array, correlated: bool) -> tuple[jax.Array, jax.Array]:
    """``Sigma^-1`` and ``log|Sigma^-1|`` from the Cholesky factor of Sigma."""
    k = tril.shape[0]
    log_det = -2.0 * jnp.sum(jnp.log(diagonal(tril)))
    if not correlated:  # diagonal: no triangular solve (a library call per evaluation)
        return diagonal_matrix(1.0 / jnp.square(diagonal(tril))), log_det
    inverse_tril = jax.scipy.linalg.solve_triangular(tril, jnp.eye(k), lower=True)
    return inverse_tril.T @ inverse_tril, log_det


def _conditional(
    plan: NonlinearMarginalPlan, model: NonlinearModel, data: Mapping[str, Any]
) -> _Conditional:
    """Sample (or read, under substitute) theta; the linear-Gaussian problem of gamma given it.

    Mirrors the plain model (:meth:`NonlinearModel._build`) site by site for
    everything that is not marginalized.
    """
    priors = model._priors
    response = model.parsed.response
    y = jnp.asarray(data[response])
    n = y.shape[0]
    marginal = {p.name: p for p in plan.parameters}
    env: dict[str, Any] = {c: data[c] for c in model.data_columns}
    coefficients: dict[str, jax.Array] = {}
    trils: dict[str, jax.Array] = {}
    for name, spec in model.params.items():
        if spec.formula is None:
            continue
        design = model.designs[name]
        parameter = marginal.get(name)
        if parameter is None:
            eta = linear_predictor(
                design,
                priors,
                model.group_options,
                data,
                x_key=f"X_{name}",
                intercept_name=model._intercept_name(name),
                coefficient_priors=_stacked_coefficient_priors(design, priors, prefix=f"{name}_"),
                per_level_names={
                    g.name: g.name
                    for g in design.groups
                    if g.n_coef == 1 and g.coef_names == ("Intercept",)
                },
            )
            env[name] = spec.transform(eta)
            if model._intercept_name(name) != name and not design.fixed_terms and not design.groups:
                numpyro.deterministic(name, env[name][0])
            continue
        # the parameter at the prior mean of its Gaussian coefficients (effects: zero)
        X = data[f"X_{name}"]
        value = None  # (None: zero, known before tracing)
        for c in parameter.coefficients:
            if c.kind == "marginal":
                if c.loc is None or not np.any(c.loc):
                    continue
                beta = jnp.asarray(c.loc)
            elif c.width == 1:
                beta = jnp.reshape(_sample(c.name, c.prior), (1,))
                coefficients[c.name] = beta
            else:
                beta = numpyro.sample(c.name, c.prior)
                coefficients[c.name] = beta
            value = X[:, c.columns] @ beta + (0.0 if value is None else value)
        for term in parameter.groups:
            trils[term.group.name] = _group_tril(term, priors)
        if value is not None:
            env[name] = value
    with numpyro.plate("obs", n):
        for name, distribution in model.latents.items():
            env[name] = numpyro.sample(name, distribution.build(env))
    # noise precision per row
    if model.response_design.se is not None:
        weights = 1.0 / jnp.square(jnp.asarray(data["se"]))
    else:
        sigma = env["sigma"] if "sigma" in model.designs else _sample("sigma", priors["sigma"])
        weights = jnp.broadcast_to(1.0 / jnp.square(sigma), (n,))

    # mean = A0 + sum_p B_p * p with A0 the expression at p = 0 (its vanishing terms
    # dropped) and B_p its symbolic derivative; offset = the mean at the prior mean of
    # the coefficients. (XLA computes their common subexpressions once.)
    def evaluate(tree: ast.expr) -> jax.Array:
        expression = dataclasses.replace(model.expression, tree=tree)
        return jnp.broadcast_to(jnp.asarray(expression(env), dtype=float), (n,))

    offset = evaluate(plan.free)
    slopes = {name: evaluate(tree) for name, tree in plan.slopes.items()}
    for name in plan.slopes:
        if name in env:  # a prior mean that is not zero
            offset = offset + slopes[name] * jnp.broadcast_to(env[name], (n,))

    # features: the sub-formula columns scaled by the parameter's slope
    head_columns: list[jax.Array] = []
    head_mean: list[jax.Array] = []
    head_blocks: list[jax.Array] = []
    head_log_det = jnp.zeros(())
    for parameter in plan.parameters:
        X = data[f"X_{parameter.name}"]
        for c in parameter.coefficients:
            if c.kind != "marginal" or c.scale is None or c.loc is None:
                continue
            head_columns.append(X[:, c.columns] * slopes[parameter.name][:, None])
            head_mean.append(jnp.asarray(c.loc))
            head_blocks.append(diagonal_matrix(1.0 / jnp.asarray(c.scale) ** 2))
            head_log_det = head_log_det - 2.0 * jnp.sum(jnp.log(jnp.asarray(c.scale)))
    for term in plan.head_groups:
        group = term.group
        levels, k = len(group.levels), group.n_coef
        scaled = data[f"Z_{group.name}"] * slopes[term.parameter][:, None]  # (n, k)
        one_hot = jax.nn.one_hot(data[f"index_{group.name}"], levels)  # (n, L)
        head_columns.append((one_hot[:, :, None] * scaled[:, None, :]).reshape(n, levels * k))
        head_mean.append(jnp.zeros(levels * k))
        precision, log_det = _precision(trils[group.name], group.correlated and group.n_coef > 1)
        head_blocks.append(jnp.kron(jnp.eye(levels), precision))
        head_log_det = head_log_det + levels * log_det
    tail_columns: list[jax.Array] = []
    tail_blocks: list[jax.Array] = []
    tail_log_det = jnp.zeros(())
    for term in plan.tail_groups:
        group = term.group
        tail_columns.append(data[f"Z_{group.name}"] * slopes[term.parameter][:, None])  # (n, k)
        precision, log_det = _precision(trils[group.name], group.correlated and group.n_coef > 1)
        tail_blocks.append(precision)
        tail_log_det = tail_log_det + log_det
    tail_index = (
        data[f"index_{plan.tail_groups[0].group.name}"]
        if plan.tail_groups
        else jnp.zeros(n, dtype=jnp.int32)
    )
    problem = LinearGaussian(
        residual=y - offset,
        weights=weights,
        head_features=jnp.concatenate(head_columns, axis=1) if head_columns else jnp.zeros((n, 0)),
        tail_features=jnp.concatenate(tail_columns, axis=1) if tail_columns else jnp.zeros((n, 0)),
        tail_index=tail_index,
        head_precision=jax.scipy.linalg.block_diag(*head_blocks)
        if head_blocks
        else jnp.zeros((0, 0)),
        head_log_det=head_log_det,
        tail_precision=jax.scipy.linalg.block_diag(*tail_blocks)
        if tail_blocks
        else jnp.zeros((0, 0)),
        tail_log_det=tail_log_det,
    )
    return _Conditional(
        problem,
        jnp.concatenate(head_mean) if head_mean else jnp.zeros(0),
        coefficients,
        trils,
    )


def collapsed_model(plan: NonlinearMarginalPlan, model: NonlinearModel) -> Callable[..., None]:
    """The NumPyro model of theta with the marginal likelihood of the response as a factor.

    Takes the plain model's data (``model.arrays()``) as keyword arguments.
    """

    def collapsed(**data: Any) -> None:
        conditional = _conditional(plan, model, data)
        numpyro.factor(
            "marginal_likelihood",
            marginal_log_likelihood(conditional.problem, plan.tail_levels),
        )

    collapsed.__name__ = f"collapsed_nonlinear_model[{model.formula}]"
    return collapsed


def marginal_log_density(
    plan: NonlinearMarginalPlan,
    model: NonlinearModel,
    data: Mapping[str, Any],
    values: Mapping[str, Any],
) -> jax.Array:
    """Log marginal likelihood at given values of theta (constrained), for checks."""
    with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
        conditional = _conditional(plan, model, data)
    return marginal_log_likelihood(conditional.problem, plan.tail_levels)


def _site_values(
    plan: NonlinearMarginalPlan, conditional: _Conditional, head: jax.Array, tail: jax.Array
) -> dict[str, jax.Array]:
    """The plain model's latent site values of the coefficients gamma = (head + mean, tail)."""
    gamma_head = conditional.head_mean + head
    out: dict[str, jax.Array] = {}
    fixed: dict[str, jax.Array] = dict(conditional.coefficients)
    start = 0
    for parameter in plan.parameters:
        for c in parameter.coefficients:
            if c.kind != "marginal":
                continue
            value = gamma_head[start : start + c.width]
            start += c.width
            fixed[c.name] = value
            out[c.name] = value[0] if c.width == 1 else value
    intercepts = {p.name: p.intercept_name for p in plan.parameters}

    def place(term: _GroupTerm, effects: jax.Array) -> None:  # effects (L, k)
        group = term.group
        if term.centered and term.per_level:
            out[term.per_level] = jnp.reshape(fixed[intercepts[term.parameter]], ()) + effects[:, 0]
        elif term.centered:
            out[term.site] = effects[:, 0] if group.n_coef == 1 else effects
        else:
            # non-centered: effects = z @ L^T, so z = L^-1 effects per level
            z = jax.scipy.linalg.solve_triangular(
                conditional.trils[group.name], effects.T, lower=True
            ).T
            out[term.site] = z[:, 0] if group.n_coef == 1 else z

    for term in plan.head_groups:
        levels, k = len(term.group.levels), term.group.n_coef
        place(term, gamma_head[start : start + levels * k].reshape(levels, k))
        start += levels * k
    column = 0
    for term in plan.tail_groups:
        k = term.group.n_coef
        place(term, tail[:, column : column + k])
        column += k
    return out


def draw_marginalized(
    plan: NonlinearMarginalPlan,
    model: NonlinearModel,
    data: Mapping[str, Any],
    posterior: Mapping[str, np.ndarray],
    key: jax.Array,
    shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Every latent and deterministic site of the plain model, for every posterior draw.

    ``posterior`` holds the collapsed model's latent sites, ``(chain, draw, ...)``;
    ``shape`` is ``(chains, draws)``, needed only when it is empty (an exact fit).
    For each draw the marginalized coefficients are drawn exactly from their
    conditional Gaussian, mapped onto the plain model's latent sites, and the
    plain model is replayed with all latent values to compute its deterministic
    sites (``r_``, per-level values, fixed sds...).
    """
    chains, draws = shape if shape is not None else next(iter(posterior.values())).shape[:2]
    flat = {
        k: np.reshape(np.asarray(v), (chains * draws,) + v.shape[2:]) for k, v in posterior.items()
    }
    arrays = {k: to_device(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}

    def one(args: tuple[Mapping[str, jax.Array], jax.Array]) -> dict[str, jax.Array]:
        values, draw_key = args
        with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
            conditional = _conditional(plan, model, arrays)
        head, tail = conditional_draw(draw_key, conditional.problem, plan.tail_levels)
        latent = {**values, **_site_values(plan, conditional, head, tail)}
        # a replay at posterior draws: argument checks there would only compile small
        # programs (JAX folds the checks of concrete data while tracing)
        with numpyro.validation_enabled(False):
            trace = handlers.trace(
                handlers.substitute(handlers.seed(model.model_fn, 0), data=latent)
            ).get_trace(**arrays)
        return {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "deterministic"
            or (site["type"] == "sample" and not site["is_observed"])
        }

    drawn = map_draws(one, flat, key, chains * draws, _DRAW_BATCH)
    return {k: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in drawn.items()}


# ------------------------------------------------------------------------------ fit


def fit_marginalized(
    model: NonlinearModel,
    plan: NonlinearMarginalPlan,
    *,
    coords: Mapping[str, Sequence[Any]],
    dims: Mapping[str, Sequence[str]],
    data: Mapping[str, Any],
    **options: Any,
) -> Fit:
    """Sample the collapsed model, then draw the marginalized sites exactly.

    ``draw_method`` as in :func:`hierax.independence.sample_collapsed`:
    "auto" tries independence Metropolis-Hastings from a Student-t at the mode
    of the collapsed posterior and falls back to NUTS. ``init`` may name
    marginalized sites: their values are dropped (they are not sampled), the
    others start the mode search or the chains.

    When every other parameter is known (e.g. a fixed sigma), nothing is
    sampled: the fit holds ``chains x draws`` independent draws from the exact
    conditional posterior (``fit.info["method"] == "exact"``).

    ``options`` are :func:`hierax.marginal.collapsed.fit_collapsed`'s (chains, draws,
    warmup, seed, init, draw_method, the predictive groups, NUTS settings).
    """
    from .collapsed import fit_collapsed

    collapsed = collapsed_model(plan, model)

    def draw(
        posterior: Mapping[str, np.ndarray],
        key: jax.Array,
        arrays: Mapping[str, Any],
        shape: tuple[int, int],
    ) -> dict[str, Any]:
        return draw_marginalized(plan, model, arrays, posterior, key, shape)

    return fit_collapsed(
        model.model_fn,
        collapsed,
        coords=coords,
        dims=dims,
        data=data,
        draw=draw,
        marginalized=plan.marginalized,
        extra_info={
            "marginalized_coefficients": plan.n_coefficients,
            "not_marginalized": dict(plan.not_marginalized),
        },
        **options,
    )
