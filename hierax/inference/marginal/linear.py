"""Collapsed sampling of linear Gaussian models (formula models, hand-built descriptions).

For a ``gaussian`` family with identity link, every coefficient with a Normal
prior (the intercept, fixed effects) and the level effects of every group term
(varying intercepts and slopes, crossed, correlated) enter the mean linearly
with Gaussian priors given the group sds, correlations and sigma. They are
integrated out exactly (:mod:`hierax.inference.marginal.gaussian`); NUTS samples only the
rest. Afterwards every marginalized site is drawn from its conditional
Gaussian for each posterior draw, so the InferenceData has the same variables,
dims and coords as the plain fit (including ``z_`` offsets of non-centered
terms).
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
import scipy.sparse as sparse
from numpyro import handlers

from hierax.core.device import to_device
from hierax.inference.marginal.collapsed import EngineResult, flat_draws, map_draws, run_collapsed
from hierax.inference.marginal.diagonal import diagonal_matrix
from hierax.inference.marginal.gaussian import (
    Blocks,
    GramStatistics,
    conditional_draw,
    gram_statistics,
)
from hierax.inference.marginal.gaussian import marginal_log_likelihood as _marginal_log_likelihood
from hierax.models.build import (
    column_prior_key,
    correlation_prior,
    group_scale,
    sample_site,
    stacked_coefficient_priors,
)
from hierax.models.description import GroupTerm, ModelDescription
from hierax.models.priors import Prior

__all__ = ["MarginalPlan", "plan_marginalization", "run_marginalized"]

#: Above this many marginalized coefficients the dense Cholesky of P costs too much per step.
MAX_MARGINALIZED = 2500
#: A largest group term with at least this many coefficients is factorized per level.
SPLIT_MIN = 32
#: Posterior draws whose conditional draws are computed together (vectorized).
_DRAW_BATCH = 100


@dataclass(frozen=True)
class _FixedSite:
    """One fixed-effect site: its name, X columns, and how it is treated."""

    name: str
    columns: slice
    width: int
    kind: str  # "marginal", "sampled" or "constant"
    loc: np.ndarray | None = None
    scale: np.ndarray | None = None
    constant: np.ndarray | None = None
    prior: Any = None  # Prior (width 1) or a stacked distribution (width > 1)


@dataclass(frozen=True)
class MarginalPlan:
    """What a formula model integrates out and how theta maps back to its sites."""

    fixed: tuple[_FixedSite, ...]
    groups: tuple[GroupTerm, ...]
    blocks: Blocks
    prior_mean: np.ndarray
    fixed_precision: np.ndarray
    stats: GramStatistics
    sigma_estimated: bool

    @property
    def marginalized(self) -> list[str]:
        """Names of the sites drawn from their conditional Gaussian after sampling."""
        names = [s.name for s in self.fixed if s.kind == "marginal"]
        for group in self.groups:
            names.append(f"{'r' if group.centered else 'z'}_{group.name}")
        return names


def _normal_parameters(prior: Prior) -> tuple[float, float] | None:
    """(loc, scale) of a scalar Normal prior, else None."""
    if prior.fixed is not None:
        return None
    try:
        built = prior.build()
    except Exception:
        return None
    if type(built) is dist.Normal and built.batch_shape == ():
        return float(built.loc), float(built.scale)
    return None


def _fixed_sites(description: ModelDescription) -> list[_FixedSite]:
    predictor = description.predictor
    assert predictor is not None
    priors = description.priors
    sites: list[_FixedSite] = []
    stacked = stacked_coefficient_priors(predictor, priors)
    entries: list[tuple[str, slice, list[Prior]]] = []
    if predictor.intercept:
        entries.append((predictor.intercept_name, slice(0, 1), [priors[predictor.intercept_name]]))
    for term in predictor.fixed_terms:
        name = f"b_{term.name}"
        if term.width == 1:
            entries.append((name, term.columns, [priors[name]]))
        else:
            column_priors = [
                priors[column_prior_key(predictor.prefix, label)] for label in term.labels
            ]
            entries.append((name, term.columns, column_priors))
    for name, columns, column_priors in entries:
        width = columns.stop - columns.start
        normals = [_normal_parameters(p) for p in column_priors]
        fixed_values = [p.fixed for p in column_priors]
        if all(n is not None for n in normals):
            loc = np.array([n[0] for n in normals if n is not None])
            scale = np.array([n[1] for n in normals if n is not None])
            sites.append(_FixedSite(name, columns, width, "marginal", loc=loc, scale=scale))
        elif all(v is not None for v in fixed_values) and width == 1:
            sites.append(
                _FixedSite(name, columns, width, "constant", constant=np.array(fixed_values))
            )
        else:
            prior = column_priors[0] if width == 1 else stacked[name]
            sites.append(_FixedSite(name, columns, width, "sampled", prior=prior))
    return sites


def _group_columns(group: GroupTerm) -> sparse.csr_matrix:
    """(n, levels * k) columns of one term's level effects, level-major."""
    n, k = group.Z.shape
    levels = len(group.levels)
    rows = np.repeat(np.arange(n), k)
    cols = (np.asarray(group.index)[:, None] * k + np.arange(k)[None, :]).reshape(-1)
    return sparse.csr_matrix((group.Z.reshape(-1), (rows, cols)), shape=(n, levels * k))


def plan_marginalization(description: ModelDescription) -> MarginalPlan | str:
    """The marginalization plan of a linear model's description, or the reason there is none."""
    design = description.predictor
    response = description.response
    if design is None:
        return "the model has no single linear predictor"
    if response.family.name != "gaussian" or response.link.name != "identity":
        return (
            f"the {response.family.name} family with {response.link.name} link is not "
            "conditionally Gaussian"
        )
    summed = [g.name for g in design.groups if g.zero_sum]
    if summed:
        return f"zero-sum terms {summed} are not marginalized"
    sites = _fixed_sites(description)
    marginal = [s for s in sites if s.kind == "marginal"]
    n_fixed = sum(s.width for s in marginal)
    groups = list(design.groups)
    # the largest term goes last; with many levels it is eliminated blockwise (Schur)
    groups.sort(key=lambda g: g.n_levels * g.n_coef)
    terms = [(g.n_levels, g.n_coef) for g in groups]
    p = n_fixed + sum(levels * k for levels, k in terms)
    if p == 0:
        return "no coefficient has a Gaussian prior"
    tail = terms[-1] if terms and terms[-1][0] * terms[-1][1] >= SPLIT_MIN else None
    head = p - (tail[0] * tail[1] if tail else 0)
    if head > MAX_MARGINALIZED:
        return f"{head} coefficients exceed the dense limit of {MAX_MARGINALIZED}"
    X = np.asarray(design.X, dtype=float)
    W = sparse.hstack(
        [sparse.csr_matrix(X[:, s.columns]) for s in marginal]
        + [_group_columns(g) for g in groups],
        format="csr",
    )
    sampled = [s for s in sites if s.kind == "sampled"]
    X_sampled = (
        np.column_stack([X[:, s.columns] for s in sampled]) if sampled else np.zeros((design.n, 0))
    )
    offset = np.zeros(design.n) if design.offset is None else np.asarray(design.offset, float)
    for s in sites:
        if s.kind == "constant" and s.constant is not None:
            offset = offset + X[:, s.columns] @ s.constant
    row_precision = None if response.se is None else 1.0 / np.asarray(response.se, float) ** 2
    stats = gram_statistics(W, X_sampled, offset, response.y, row_precision, tail=tail)
    prior_mean = np.concatenate(
        [s.loc for s in marginal if s.loc is not None] + [np.zeros(p - n_fixed)]
    )
    fixed_precision = np.concatenate(
        [1.0 / s.scale**2 for s in marginal if s.scale is not None] or [np.zeros(0)]
    )
    return MarginalPlan(
        fixed=tuple(sites),
        groups=tuple(groups),
        blocks=Blocks.layout(n_fixed, terms),
        prior_mean=prior_mean,
        fixed_precision=fixed_precision,
        stats=stats,
        sigma_estimated="sigma" in response.aux,
    )


# ------------------------------------------------------------------ the models


def _hyperparameters(
    plan: MarginalPlan, priors: Mapping[str, Prior]
) -> tuple[jax.Array, list[jax.Array], jax.Array]:
    """Sample (or read, under substitute) everything that is not integrated out."""
    sampled: list[jax.Array] = []
    for site in plan.fixed:
        if site.kind != "sampled":
            continue
        if site.width == 1:
            value = sample_site(site.name, site.prior)
        else:
            value = numpyro.sample(site.name, site.prior)
        sampled.append(jnp.reshape(value, (site.width,)))
    trils = []
    for group in plan.groups:
        sd, tril = group_scale(group, priors[f"sd_{group.name}"], correlation_prior(group, priors))
        if tril is None:
            tril = diagonal_matrix(jnp.broadcast_to(jnp.reshape(sd, (-1,)), (group.n_coef,)))
        trils.append(tril)
    if plan.sigma_estimated:
        sigma = sample_site("sigma", priors["sigma"])
        noise_precision = 1.0 / jnp.square(sigma)
    else:
        noise_precision = jnp.asarray(1.0)
    values = jnp.concatenate(sampled) if sampled else jnp.zeros(0)
    return values, trils, noise_precision


def _stats_with(plan: MarginalPlan, arrays: Mapping[str, Any]) -> GramStatistics:
    s = plan.stats
    return GramStatistics(
        arrays["gram"], s.n_rows, s.log_det_d0, s.p, arrays.get("cross"), arrays.get("tail")
    )


def collapsed_data(plan: MarginalPlan) -> dict[str, np.ndarray]:
    """The data arguments of the collapsed model (passed as data, not compiled in)."""
    data = {"gram": plan.stats.gram}
    if plan.stats.tail is not None:
        data.update(cross=plan.stats.cross, tail=plan.stats.tail)
    return data


def collapsed_model(plan: MarginalPlan, priors: Mapping[str, Prior]) -> Callable[..., None]:
    """The NumPyro model of the hyperparameters with the marginal likelihood as a factor."""

    def model(gram: Any, cross: Any = None, tail: Any = None) -> None:
        sampled, trils, noise_precision = _hyperparameters(plan, priors)
        log_likelihood = _marginal_log_likelihood(
            _stats_with(plan, {"gram": gram, "cross": cross, "tail": tail}),
            plan.blocks,
            jnp.asarray(plan.prior_mean),
            jnp.asarray(plan.fixed_precision),
            trils,
            sampled,
            noise_precision,
        )
        numpyro.factor("marginal_likelihood", log_likelihood)

    model.__name__ = "collapsed_formula_model"
    return model


def marginal_log_density(
    plan: MarginalPlan, priors: Mapping[str, Prior], values: Mapping[str, Any]
) -> jax.Array:
    """Log marginal likelihood at given hyperparameter values (constrained), for checks."""
    with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
        sampled, trils, noise_precision = _hyperparameters(plan, priors)
    return _marginal_log_likelihood(
        plan.stats,
        plan.blocks,
        jnp.asarray(plan.prior_mean),
        jnp.asarray(plan.fixed_precision),
        trils,
        sampled,
        noise_precision,
    )


def draw_marginalized(
    plan: MarginalPlan,
    priors: Mapping[str, Prior],
    posterior: Mapping[str, np.ndarray],
    key: jax.Array,
    shape: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Exact conditional draws of every marginalized site for every posterior draw.

    Returns the sites in the plain model's layout, ``(chain, draw, ...)``:
    fixed coefficients, ``r_<g>`` and, for non-centered terms, ``z_<g>``.
    ``shape`` is ``(chains, draws)``, needed only when ``posterior`` is empty
    (an exact fit: nothing was sampled).
    """
    flat, chains, draws = flat_draws(posterior, shape)
    stats = _stats_with(plan, {k: to_device(v) for k, v in collapsed_data(plan).items()})
    prior_mean = to_device(plan.prior_mean)
    fixed_precision = to_device(plan.fixed_precision)

    def one(args: tuple[Mapping[str, jax.Array], jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
        values, draw_key = args
        with handlers.seed(rng_seed=0), handlers.substitute(data=dict(values)):
            sampled, trils, noise_precision = _hyperparameters(plan, priors)
        theta = conditional_draw(
            draw_key,
            stats,
            plan.blocks,
            prior_mean,
            fixed_precision,
            trils,
            sampled,
            noise_precision,
        )
        return theta, trils

    theta, trils = map_draws(one, flat, key, chains * draws, _DRAW_BATCH)
    theta = np.asarray(theta)
    out: dict[str, np.ndarray] = {}
    start = 0
    for site in plan.fixed:
        if site.kind != "marginal":
            continue
        values = theta[:, start : start + site.width]
        out[site.name] = values[:, 0] if site.width == 1 else values
        start += site.width
    for index, group in enumerate(plan.groups):
        levels, k = group.n_levels, group.n_coef
        effects = theta[:, start : start + levels * k].reshape(-1, levels, k)
        start += levels * k
        name = group.name
        out[f"r_{name}"] = effects[..., 0] if k == 1 else effects
        if not group.centered:
            tril = np.asarray(trils[index])  # (draws, k, k)
            # z = L^-1 r per level: effects = z @ L^T
            z = np.linalg.solve(tril[:, None, :, :], effects[..., None])[..., 0]
            out[f"z_{name}"] = z[..., 0] if k == 1 else z
    return {k: v.reshape((chains, draws) + v.shape[1:]) for k, v in out.items()}


# ------------------------------------------------------------------------ run


def run_marginalized(
    description: ModelDescription, plan: MarginalPlan, **options: Any
) -> EngineResult:
    """Sample the collapsed model, then draw the marginalized sites exactly.

    ``draw_method``: "auto" tries independence Metropolis-Hastings from a
    Student-t at the mode of the collapsed posterior (small models, checked by
    Pareto k and acceptance) and falls back to NUTS; "nuts" or "independence"
    force one (the latter raises when its checks fail).

    When every other parameter is known (e.g. a fixed sigma), nothing is
    sampled: the result holds ``chains x draws`` independent draws from the exact
    conditional posterior (``info["method"] == "exact"``).

    ``options`` are :func:`hierax.inference.marginal.collapsed.run_collapsed`'s (chains,
    draws, warmup, seed, init, draw_method, NUTS settings).
    """
    priors = description.priors

    def draw(
        posterior: Mapping[str, np.ndarray], key: jax.Array, _: Any, shape: tuple[int, int]
    ) -> dict[str, Any]:
        return draw_marginalized(plan, priors, posterior, key, shape)

    return run_collapsed(
        description,
        collapsed_model(plan, priors),
        draw=draw,
        marginalized=plan.marginalized,
        collapsed_data=collapsed_data(plan),
        extra_info={"marginalized_coefficients": int(plan.stats.p)},
        **options,
    )
