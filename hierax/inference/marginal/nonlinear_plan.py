"""Which parameters of a nonlinear model are integrated out, and how their coefficients lie.

A gaussian nonlinear model ``y ~ f(data, params)`` whose expression is affine
in a set of parameters S given the others (theta) (:mod:`.affine`), where each
p in S has an identity transform and a sub-formula whose coefficients have
Gaussian priors given the hyperparameters (Normal priors on fixed
coefficients; group effects, centered or not, correlated or not), is
linear-Gaussian in those coefficients given theta. :func:`plan_marginalization`
reads the model description and chooses S (the parameters with most
coefficients first, each keeping the expression jointly affine), or says why
nothing qualifies; the plan lays the coefficients out as the dense head and
per-level tail of :mod:`.kernels`.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierax.inference.marginal.affine import AFFINE, affine_degree, free_tree, slope_tree
from hierax.inference.marginal.linear import _normal_parameters
from hierax.models.build import column_prior_key, stacked_coefficient_priors
from hierax.models.description import GroupTerm, LinearPredictor, ModelDescription
from hierax.models.priors import Prior

__all__ = [
    "MAX_HEAD",
    "SPLIT_MIN",
    "Coefficient",
    "EffectTerm",
    "MarginalParameter",
    "NonlinearMarginalPlan",
    "plan_marginalization",
]

#: Above this many head (dense) coefficients a Cholesky per step costs too much.
MAX_HEAD = 500
#: The largest grouping factor is eliminated per level when it has this many coefficients.
SPLIT_MIN = 32


@dataclass(frozen=True)
class Coefficient:
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
class EffectTerm:
    """One group term of a marginalized parameter."""

    parameter: str
    group: GroupTerm
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
class MarginalParameter:
    """A parameter whose Gaussian coefficients are integrated out."""

    name: str
    intercept_name: str
    coefficients: tuple[Coefficient, ...]
    groups: tuple[EffectTerm, ...]


@dataclass(frozen=True)
class NonlinearMarginalPlan:
    """What a nonlinear model integrates out, and how the coefficients are laid out.

    ``gamma = [head, tail]``: the head holds the Normal fixed coefficients of
    every marginalized parameter (in ``parameters`` order), then the effects of
    ``head_groups`` (level-major); the tail, per level of the tail grouping,
    the effects of ``tail_groups`` side by side.
    """

    parameters: tuple[MarginalParameter, ...]
    head_groups: tuple[EffectTerm, ...]
    tail_groups: tuple[EffectTerm, ...]
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


def _coefficients(predictor: LinearPredictor, priors: Mapping[str, Prior]) -> list[Coefficient]:
    stacked = stacked_coefficient_priors(predictor, priors)
    entries: list[tuple[str, slice, list[Prior]]] = []
    if predictor.intercept:
        intercept = predictor.intercept_name
        entries.append((intercept, slice(0, 1), [priors[intercept]]))
    for term in predictor.fixed_terms:
        site = f"b_{term.name}"
        if term.width == 1:
            entries.append((site, term.columns, [priors[site]]))
        else:
            keys = [column_prior_key(predictor.prefix, label) for label in term.labels]
            entries.append((site, term.columns, [priors[k] for k in keys]))
    result = []
    for site, columns, column_priors in entries:
        normals = [_normal_parameters(p) for p in column_priors]
        width = columns.stop - columns.start
        if all(n is not None for n in normals):
            loc = np.array([n[0] for n in normals if n is not None])
            scale = np.array([n[1] for n in normals if n is not None])
            result.append(
                Coefficient(site, columns, "marginal", column_priors[0], loc=loc, scale=scale)
            )
        elif width == 1:
            kind = "constant" if column_priors[0].fixed is not None else "sampled"
            result.append(Coefficient(site, columns, kind, column_priors[0]))
        else:
            result.append(Coefficient(site, columns, "sampled", stacked[site]))
    return result


def _candidate(
    description: ModelDescription, name: str, in_latents: set[str]
) -> MarginalParameter | str:
    """A parameter that may be marginalized, or why it may not (before joint affinity)."""
    parameter = description.parameters[name]
    predictor = parameter.predictor
    if predictor is None:
        return "it is a per-observation latent"
    if name in description.distributional:
        return "it is a distributional parameter of the family"
    if not parameter.identity:
        return "its transform (link or bounds) is not the identity"
    if name in in_latents:
        return "it is used in a latent distribution"
    coefficients = _coefficients(predictor, description.priors)
    if not predictor.groups and not any(c.kind == "marginal" for c in coefficients):
        return "none of its coefficients has a Normal prior"
    if affine_degree(description.expression.tree, {name}) > AFFINE:
        return "it enters the expression nonlinearly"
    groups = tuple(
        EffectTerm(
            name,
            group,
            group.centered,
            predictor.per_level.get(group.name) if predictor.intercept else None,
        )
        for group in predictor.groups
    )
    return MarginalParameter(name, predictor.intercept_name, tuple(coefficients), groups)


def _split_tail(
    terms: list[EffectTerm], split_min: int
) -> tuple[list[EffectTerm], list[EffectTerm], int]:
    """Put the terms on the grouping factor with most coefficients in the tail."""
    factors: list[list[EffectTerm]] = []
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
    description: ModelDescription, *, split_min: int = SPLIT_MIN, max_head: int = MAX_HEAD
) -> NonlinearMarginalPlan | str:
    """The marginalization plan of a nonlinear model's description, or the reason there is none.

    Parameters
    ----------
    split_min : int
        Eliminate the largest grouping factor per level when it has at least
        this many coefficients (otherwise everything is factorized densely).
    max_head : int
        Most coefficients factorized densely.
    """
    if description.kind != "nonlinear":
        return "the model is not a nonlinear expression"
    family = description.response.family
    if description.measurement is not None:
        return "the observation model is a calibration (measurement) model"
    if family.name != "gaussian":
        return f"the {family.name} family is not conditionally Gaussian"
    if description.distributional and description.response.se is not None:
        return "a distributional sigma cannot be combined with se()"
    in_latents: set[str] = set()
    for latent in description.latents.values():
        assert latent.latent is not None
        in_latents |= latent.latent.names
    reasons: dict[str, str] = {}
    candidates: list[MarginalParameter] = []
    for name in description.parameters:
        found = _candidate(description, name, in_latents)
        if isinstance(found, str):
            reasons[name] = found
        else:
            candidates.append(found)

    def count(p: MarginalParameter) -> int:
        fixed = sum(c.width for c in p.coefficients if c.kind == "marginal")
        return fixed + sum(g.size for g in p.groups)

    # the parameters with most coefficients first; each must keep the expression
    # jointly affine in all chosen so far (a * b is affine in a and in b, not in both)
    chosen: list[MarginalParameter] = []
    for candidate in sorted(candidates, key=count, reverse=True):
        names = {p.name for p in chosen} | {candidate.name}
        if affine_degree(description.expression.tree, names) <= AFFINE:
            chosen.append(candidate)
        else:
            others = sorted(names - {candidate.name})
            reasons[candidate.name] = f"the expression is not jointly affine in it and {others}"
    if not chosen:
        return "; ".join(f"{name}: {why}" for name, why in reasons.items())
    order = list(description.parameters)
    chosen.sort(key=lambda p: order.index(p.name))
    head_groups, tail_groups, tail_levels = _split_tail(
        [g for p in chosen for g in p.groups], split_min
    )
    marginal = frozenset(p.name for p in chosen)
    slopes = {}
    for p in chosen:
        tree = slope_tree(description.expression.tree, p.name, marginal)
        slopes[p.name] = ast.Constant(0.0) if tree is None else ast.fix_missing_locations(tree)
    free = free_tree(description.expression.tree, marginal)
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
