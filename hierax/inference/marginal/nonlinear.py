"""Collapsed sampling of nonlinear models with conditionally linear parameters.

A gaussian nonlinear model ``y ~ f(data, params)`` whose expression is affine in a
set of parameters S given the others (theta)::

    mean = A(theta) + sum_{p in S} B_p(theta) * p        (elementwise over rows)

where each p in S has an identity transform and a sub-formula whose
coefficients have Gaussian priors given the hyperparameters, is
linear-Gaussian in those coefficients ``gamma`` given theta::

    y = A'(theta) + W(theta) gamma + eps,   eps ~ Normal(0, diag(1 / w)),
    gamma ~ Normal(m, Lambda^-1)

with ``W(theta)`` the sub-formula columns scaled row by row by ``B_p(theta)``.
``gamma`` is integrated out exactly and NUTS samples only theta; afterwards
every marginalized site is drawn from its conditional Gaussian for each
posterior draw, and the plain density is replayed to fill in every
deterministic site, so the InferenceData matches a plain fit's variables, dims
and coords.

Everything is read from the model description. The pieces: which parameters
qualify and how ``gamma`` is laid out (:mod:`.nonlinear_plan`), the symbolic
``A`` and ``B_p`` (:mod:`.affine`), the batched head/tail factorization
(:mod:`.kernels`); here the collapsed density, the conditional draws and the
run (:func:`run_marginalized`).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers

from hierax.core.device import to_device
from hierax.inference.marginal.collapsed import EngineResult, flat_draws, map_draws, run_collapsed
from hierax.inference.marginal.diagonal import diagonal, diagonal_matrix
from hierax.inference.marginal.kernels import (
    LinearGaussian,
    conditional_draw,
    marginal_log_likelihood,
)
from hierax.inference.marginal.nonlinear_plan import (
    EffectTerm,
    NonlinearMarginalPlan,
    plan_marginalization,
)
from hierax.models.build import correlation_prior, group_scale, sample_site
from hierax.models.description import ModelDescription
from hierax.models.nonlinear_density import likelihood_parameters, parameter_value
from hierax.models.priors import Prior

__all__ = [
    "NonlinearMarginalPlan",
    "collapsed_model",
    "draw_marginalized",
    "marginal_log_density",
    "plan_marginalization",
    "run_marginalized",
]

#: Posterior draws whose conditional draws are computed together (vectorized).
_DRAW_BATCH = 100


# ------------------------------------------------------------------ the collapsed model


@dataclass
class _Conditional:
    """Everything the collapsed model computes at one theta."""

    problem: LinearGaussian
    head_mean: jax.Array  # (h,) prior mean of the head coefficients
    coefficients: dict[str, jax.Array]  # sampled or constant fixed sites of marginal parameters
    trils: dict[str, jax.Array]  # group name -> (k, k) Cholesky factor of its effect covariance


def _group_tril(term: EffectTerm, priors: Mapping[str, Prior]) -> jax.Array:
    group = term.group
    sd, tril = group_scale(group, priors[f"sd_{group.name}"], correlation_prior(group, priors))
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
    plan: NonlinearMarginalPlan, description: ModelDescription, data: Mapping[str, Any]
) -> _Conditional:
    """Sample (or read, under substitute) theta; the linear-Gaussian problem of gamma given it.

    Mirrors the plain density (:func:`hierax.models.nonlinear_density.nonlinear_density`)
    site by site for everything that is not marginalized.
    """
    priors = description.priors
    y = jnp.asarray(data[description.response.name])
    n = y.shape[0]
    marginal = {p.name: p for p in plan.parameters}
    env: dict[str, Any] = {c: data[c] for c in description.data_columns}
    coefficients: dict[str, jax.Array] = {}
    trils: dict[str, jax.Array] = {}
    for name, parameter in description.parameters.items():
        if parameter.predictor is None:
            continue
        chosen = marginal.get(name)
        if chosen is None:
            env[name] = parameter_value(name, parameter, priors, data)
            continue
        # the parameter at the prior mean of its Gaussian coefficients (effects: zero)
        X = data[f"X_{name}"]
        value = None  # (None: zero, known before tracing)
        for c in chosen.coefficients:
            if c.kind == "marginal":
                if c.loc is None or not np.any(c.loc):
                    continue
                beta = jnp.asarray(c.loc)
            elif c.width == 1:
                beta = jnp.reshape(sample_site(c.name, c.prior), (1,))
                coefficients[c.name] = beta
            else:
                beta = numpyro.sample(c.name, c.prior)
                coefficients[c.name] = beta
            value = X[:, c.columns] @ beta + (0.0 if value is None else value)
        for term in chosen.groups:
            trils[term.group.name] = _group_tril(term, priors)
        if value is not None:
            env[name] = value
    with numpyro.plate("obs", n):
        for name, latent in description.latents.items():
            assert latent.latent is not None
            env[name] = numpyro.sample(name, latent.latent.build(env))
    # noise precision per row
    if description.response.se is not None:
        weights = 1.0 / jnp.square(jnp.asarray(data["se"]))
    else:
        (sigma,) = likelihood_parameters(description, env, ["sigma"]).values()
        weights = jnp.broadcast_to(1.0 / jnp.square(sigma), (n,))

    # mean = A0 + sum_p B_p * p with A0 the expression at p = 0 (its vanishing terms
    # dropped) and B_p its symbolic derivative; offset = the mean at the prior mean of
    # the coefficients. (XLA computes their common subexpressions once.)
    def evaluate(tree: ast.expr) -> jax.Array:
        expression = dataclasses.replace(description.expression, tree=tree)
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
    for planned in plan.parameters:
        X = data[f"X_{planned.name}"]
        for c in planned.coefficients:
            if c.kind != "marginal" or c.scale is None or c.loc is None:
                continue
            head_columns.append(X[:, c.columns] * slopes[planned.name][:, None])
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


def collapsed_model(
    plan: NonlinearMarginalPlan, description: ModelDescription
) -> Callable[..., None]:
    """The NumPyro model of theta with the marginal likelihood of the response as a factor.

    Takes the plain density's data (``description.data``) as keyword arguments.
    """

    def collapsed(**data: Any) -> None:
        conditional = _conditional(plan, description, data)
        numpyro.factor(
            "marginal_likelihood",
            marginal_log_likelihood(conditional.problem, plan.tail_levels),
        )

    collapsed.__name__ = f"collapsed_nonlinear_model[{description.label}]"
    return collapsed


def marginal_log_density(
    plan: NonlinearMarginalPlan,
    description: ModelDescription,
    data: Mapping[str, Any],
    values: Mapping[str, Any],
) -> jax.Array:
    """Log marginal likelihood at given values of theta (constrained), for checks."""
    with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
        conditional = _conditional(plan, description, data)
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

    def place(term: EffectTerm, effects: jax.Array) -> None:  # effects (L, k)
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
    description: ModelDescription,
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
    flat, chains, draws = flat_draws(posterior, shape)
    arrays = {k: to_device(v) if isinstance(v, np.ndarray) else v for k, v in data.items()}

    def one(args: tuple[Mapping[str, jax.Array], jax.Array]) -> dict[str, jax.Array]:
        values, draw_key = args
        with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
            conditional = _conditional(plan, description, arrays)
        head, tail = conditional_draw(draw_key, conditional.problem, plan.tail_levels)
        latent = {**values, **_site_values(plan, conditional, head, tail)}
        # a replay at posterior draws: argument checks there would only compile small
        # programs (JAX folds the checks of concrete data while tracing)
        with numpyro.validation_enabled(False):
            trace = handlers.trace(
                handlers.substitute(handlers.seed(description.density, 0), data=latent)
            ).get_trace(**arrays)
        return {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "deterministic"
            or (site["type"] == "sample" and not site["is_observed"])
        }

    drawn = map_draws(one, flat, key, chains * draws, _DRAW_BATCH)
    return {k: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in drawn.items()}


# ------------------------------------------------------------------------------ run


def run_marginalized(
    description: ModelDescription, plan: NonlinearMarginalPlan, **options: Any
) -> EngineResult:
    """Sample the collapsed model, then draw the marginalized sites exactly.

    ``draw_method`` as in :func:`hierax.inference.independence.sample_collapsed`:
    "auto" tries independence Metropolis-Hastings from a Student-t at the mode
    of the collapsed posterior and falls back to NUTS. ``init`` may name
    marginalized sites: their values are dropped (they are not sampled), the
    others start the mode search or the chains.

    When every other parameter is known (e.g. a fixed sigma), nothing is
    sampled: the result holds ``chains x draws`` independent draws from the
    exact conditional posterior (``info["method"] == "exact"``).

    ``options`` are :func:`hierax.inference.marginal.collapsed.run_collapsed`'s
    (chains, draws, warmup, seed, init, draw_method, NUTS settings).
    """

    def draw(
        posterior: Mapping[str, np.ndarray],
        key: jax.Array,
        arrays: Mapping[str, Any],
        shape: tuple[int, int],
    ) -> dict[str, Any]:
        return draw_marginalized(plan, description, arrays, posterior, key, shape)

    return run_collapsed(
        description,
        collapsed_model(plan, description),
        draw=draw,
        marginalized=plan.marginalized,
        extra_info={
            "marginalized_coefficients": plan.n_coefficients,
            "not_marginalized": dict(plan.not_marginalized),
        },
        **options,
    )
