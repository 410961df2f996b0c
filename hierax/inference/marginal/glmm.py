"""Generalised linear multilevel models: a varying intercept integrated out per level.

A formula model with a non-Gaussian family (counts, binary, proportions,
positive values) and one group term of one coefficient, ``y ~ x + (1 | g)``,
has as many parameters as levels, and plain NUTS must explore the funnel
between the group sd and the effects. Given the fixed effects β, the group sd
τ and the family's own parameters, the likelihood factorizes over the levels:

    p(y | β, τ) = Π_j ∫ N(z_j | 0, 1) Π_{i in j} p(y_i | x_i β + Z_i τ z_j) dz_j,

one one-dimensional integral per level in the non-centered effect ``z_j``.
Each is taken by adaptive Gauss-Hermite quadrature
(:mod:`hierax.inference.marginal.quadrature`: a Newton search of every level's
conditional mode at once, nodes placed by its curvature, as lme4's ``nAGQ``
but vectorized over the levels), exact to about 1e-8 in the log for these
smooth integrands (checked against brute-force quadrature in the tests). The
sampler then sees only β, τ and the family's parameters (the independence
sampler for these few, NUTS when its checks fail), and every level's effect is
drawn from its exact conditional afterwards (a grid draw corrected by a
Metropolis-Hastings step), so the fit holds the same variables as the plain
one. Everything is read from the model description, never a front-end.

Not (yet) integrated here: several group terms (crossed or nested), terms
with more than one coefficient (correlated intercepts and slopes), and
families whose per-level integrand may be multimodal (student_t).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from hierax.inference.marginal.collapsed import (
    EngineResult,
    array_data,
    flat_draws,
    map_draws,
    run_collapsed,
)
from hierax.inference.marginal.quadrature import (
    NODES,
    conditional_draws,
    log_marginal,
    log_marginal_and_placement,
)
from hierax.models.build import (
    correlation_prior,
    group_scale,
    sample_site,
    stacked_coefficient_priors,
)
from hierax.models.description import GroupTerm, ModelDescription

__all__ = [
    "FAMILIES",
    "LINKS_BY_FAMILY",
    "LevelPlan",
    "collapsed_model",
    "draw_levels",
    "integrated_log_likelihood",
    "plan_level_integration",
    "run_level_integration",
]

#: Families and links whose per-level integrand is smooth and unimodal in z (what adaptive
#: Gauss-Hermite quadrature needs; log-concave for the canonical links), each checked
#: against brute-force quadrature in tests/test_glmm.py. Links that can leave the mean's
#: support (identity for counts, inverse for gamma) are not integrated.
LINKS_BY_FAMILY = {
    "bernoulli": ("logit", "probit"),
    "binomial": ("logit", "probit"),
    "poisson": ("log",),
    "negative_binomial": ("log",),
    "gamma": ("log",),
    "lognormal": ("identity",),
    "beta": ("logit", "probit"),
}
FAMILIES = tuple(LINKS_BY_FAMILY)
#: Posterior draws whose level effects are drawn together.
_DRAW_BATCH = 64


@dataclass(frozen=True)
class LevelPlan:
    """The group term whose level effects are integrated out."""

    group: GroupTerm

    @property
    def marginalized(self) -> list[str]:
        return [f"{'r' if self.group.centered else 'z'}_{self.group.name}"]

    @property
    def mode_site(self) -> str:
        """The collapsed model's record of each level's conditional mode (in z)."""
        return f"_{self.group.name}_conditional_mode"

    @property
    def scale_site(self) -> str:
        """The collapsed model's record of each level's conditional curvature sd (in z)."""
        return f"_{self.group.name}_conditional_scale"


def plan_level_integration(description: ModelDescription) -> LevelPlan | str:
    """The group term of a GLMM description to integrate out, or the reason there is none."""
    predictor = description.predictor
    family = description.response.family
    if description.kind != "formula" or predictor is None:
        return "per-level integration needs a formula model"
    if family.name not in FAMILIES:
        return f"per-level integration is implemented for {list(FAMILIES)}, not {family.name}"
    link = description.response.link.name
    if link not in LINKS_BY_FAMILY[family.name]:
        return f"the {link} link of the {family.name} family is not integrated per level"
    if len(predictor.groups) != 1:
        return f"per-level integration takes one group term; the model has {len(predictor.groups)}"
    (group,) = predictor.groups
    if group.n_coef != 1:
        return (
            f"the group term of {group.name!r} has {group.n_coef} coefficients; per-level "
            "integration takes one (a varying intercept or a single varying slope)"
        )
    if group.zero_sum:
        return f"the zero-sum term {group.name!r} is not integrated per level"
    return LevelPlan(group)


def _hyperparameters(
    description: ModelDescription, data: Mapping[str, Any]
) -> tuple[jax.Array, jax.Array, dict[str, Any]]:
    """Sample (or read, under substitute) the fixed coefficients, the group sd and the
    family's parameters with the plain density's sites; return (fixed eta, sd, aux)."""
    predictor = description.predictor
    assert predictor is not None
    priors = description.priors
    X = data[predictor.x_key]
    stacked = stacked_coefficient_priors(predictor, priors)
    pieces = []
    if predictor.intercept:
        intercept = sample_site(predictor.intercept_name, priors[predictor.intercept_name])
        pieces.append(jnp.reshape(intercept, (1,)))
    for term in predictor.fixed_terms:
        name = f"b_{term.name}"
        if term.width == 1:
            pieces.append(jnp.reshape(sample_site(name, priors[name]), (1,)))
        else:
            pieces.append(numpyro.sample(name, stacked[name]))
    eta = X @ jnp.concatenate(pieces) if pieces else jnp.zeros(X.shape[0])
    if data.get("offset") is not None:
        eta = eta + data["offset"]
    (group,) = predictor.groups
    sd, _ = group_scale(group, priors[f"sd_{group.name}"], correlation_prior(group, priors))
    aux = {a: sample_site(a, priors[a]) for a in description.response.aux}
    return eta, jnp.reshape(sd, ()), aux


def _kernel(description: ModelDescription, aux: Mapping[str, Any], data: Mapping[str, Any]) -> Any:
    """The part of each row's log likelihood that depends on eta, for the common links.

    ``kernel(eta) + c`` is the log likelihood, with ``c`` per row constant in eta
    (normalizers such as log-gamma functions of the counts). The quadrature
    evaluates the likelihood at every node and Newton step; the normalizers are
    then evaluated once, at the fixed effects' eta (:func:`_log_integrand`).
    Written by hand (NumPyro's log densities hold the normalizers): the
    standard exponential-family forms, checked against scipy through the
    integrated likelihood in tests/test_glmm.py. None where the full log density
    is used (other links, beta).
    """
    response = description.response
    y = data[response.name]
    family, link = response.family.name, response.link.name
    if family == "bernoulli" and link == "logit":
        return lambda eta: y * eta - jax.nn.softplus(eta)
    if family == "binomial" and link == "logit":
        trials = data["trials"]
        return lambda eta: y * eta - trials * jax.nn.softplus(eta)
    if family == "poisson" and link == "log":
        return lambda eta: y * eta - jnp.exp(eta)
    if family == "negative_binomial" and link == "log":
        log_phi = jnp.log(aux["phi"])
        return lambda eta: y * eta - (y + aux["phi"]) * jnp.logaddexp(log_phi, eta)
    if family == "gamma" and link == "log":
        shape = aux["shape"]
        return lambda eta: -shape * (eta + y * jnp.exp(-eta))
    if family == "lognormal" and link == "identity":
        log_y, sigma = jnp.log(y), aux["sigma"]
        return lambda eta: -0.5 * jnp.square((log_y - eta) / sigma)
    return None


def _log_integrand(
    plan: LevelPlan,
    description: ModelDescription,
    eta: jax.Array,
    sd: jax.Array,
    aux: Mapping[str, Any],
    data: Mapping[str, Any],
) -> Callable[[jax.Array], jax.Array]:
    """Each level's log integrand in its non-centered effect ``z``: ``(..., levels)``."""
    response = description.response
    group = plan.group
    y = data[response.name]
    index = data[f"index_{group.name}"]
    covariate = data[f"Z_{group.name}"][:, 0]
    levels = group.n_levels

    def full(row_eta: jax.Array) -> jax.Array:
        likelihood = response.family.likelihood(
            row_eta, response.link, dict(aux), se=data.get("se"), trials=data.get("trials")
        )
        return likelihood.log_prob(y)

    kernel = _kernel(description, aux, data)
    if kernel is None:
        per_row, constant = full, jnp.zeros(levels)
    else:  # the normalizers once per level, not at every node
        per_row = kernel
        constant = jax.ops.segment_sum(full(eta) - kernel(eta), index, num_segments=levels)

    def log_integrand(z: jax.Array) -> jax.Array:
        row_eta = eta + covariate * sd * z[..., index]  # (..., n)
        moved = jnp.moveaxis(per_row(row_eta), -1, 0)  # segment_sum sums the leading axis
        per_level = jnp.moveaxis(jax.ops.segment_sum(moved, index, num_segments=levels), 0, -1)
        return per_level + constant + dist.Normal(0.0, 1.0).log_prob(z)

    return log_integrand


def collapsed_model(plan: LevelPlan, description: ModelDescription) -> Callable[..., None]:
    """The NumPyro model of (β, τ, family parameters) with the levels' integrals as a factor."""
    levels = plan.group.n_levels

    @jax.jit
    def integrated(eta, sd, aux, data):  # type: ignore[no-untyped-def]
        log_integrand = _log_integrand(plan, description, eta, sd, aux, data)
        values, mode, scale = log_marginal_and_placement(log_integrand, jnp.zeros(levels))
        return jnp.sum(values), mode, scale

    def collapsed(**data: Any) -> None:
        eta, sd, aux = _hyperparameters(description, data)
        total, mode, scale = integrated(eta, sd, aux, array_data(data))
        numpyro.factor("integrated_likelihood", total)
        numpyro.deterministic(plan.mode_site, mode)
        numpyro.deterministic(plan.scale_site, scale)

    collapsed.__name__ = f"level_integrated_model[{description.label}]"
    return collapsed


def integrated_log_likelihood(
    plan: LevelPlan,
    description: ModelDescription,
    data: Mapping[str, Any],
    values: Mapping[str, Any],
    nodes: int = NODES,
) -> jax.Array:
    """Each level's integrated log likelihood at given parameter values (constrained)."""
    with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
        eta, sd, aux = _hyperparameters(description, data)
    log_integrand = _log_integrand(plan, description, eta, sd, aux, data)
    return log_marginal(log_integrand, jnp.zeros(plan.group.n_levels), nodes=nodes)


def draw_levels(
    plan: LevelPlan,
    description: ModelDescription,
    data: Mapping[str, Any],
    posterior: Mapping[str, np.ndarray],
    key: jax.Array,
    shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Every level's effect for every posterior draw: ``z_<g>`` (non-centered) and ``r_<g>``."""
    flat, chains, draws = flat_draws(posterior, shape)
    levels = plan.group.n_levels

    def one(args: tuple[Mapping[str, jax.Array], jax.Array]) -> tuple[jax.Array, jax.Array]:
        values, draw_key = args
        with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
            eta, sd, aux = _hyperparameters(description, data)
        log_integrand = _log_integrand(plan, description, eta, sd, aux, data)
        placement = (
            (values[plan.mode_site], values[plan.scale_site])
            if plan.mode_site in values and plan.scale_site in values
            else None
        )
        z = conditional_draws(log_integrand, jnp.zeros(levels), draw_key, placement=placement)
        return z, sd * z

    z, r = map_draws(one, flat, key, chains * draws, _DRAW_BATCH)
    name = plan.group.name
    out = {f"r_{name}": np.asarray(r)}
    if not plan.group.centered:
        out[f"z_{name}"] = np.asarray(z)
    return {k: v.reshape((chains, draws) + v.shape[1:]) for k, v in out.items()}


def run_level_integration(
    description: ModelDescription, plan: LevelPlan, **options: Any
) -> EngineResult:
    """Sample (β, τ, family parameters) from the integrated model, then draw every level.

    ``options`` are :func:`hierax.inference.marginal.collapsed.run_collapsed`'s
    (chains, draws, warmup, seed, init, draw_method, NUTS settings).
    """

    def draw(
        posterior: Mapping[str, np.ndarray],
        key: jax.Array,
        arrays: Mapping[str, Any],
        shape: tuple[int, int],
    ) -> dict[str, Any]:
        return draw_levels(plan, description, arrays, posterior, key, shape)

    return run_collapsed(
        description,
        collapsed_model(plan, description),
        draw=draw,
        marginalized=plan.marginalized,
        extra_info={
            "marginalization": "adaptive Gauss-Hermite quadrature per level",
            "quadrature_nodes": NODES,
        },
        **options,
    )
