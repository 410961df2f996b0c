"""Choosing and running an engine for a model description, or NUTS for a model function.

The planners each read only the description and either return a plan or the
reason they cannot integrate anything out:

* :mod:`.marginal.linear`: every coefficient of a linear Gaussian model
  (formula models, hand-built descriptions);
* :mod:`.marginal.glmm`: a non-Gaussian model's varying intercept, per level by
  quadrature;
* :mod:`.marginal.nonlinear`: conditionally linear parameters of a nonlinear
  expression;
* :mod:`.marginal.latent`: a per-row latent value integrated out by quadrature.

The first plan that exists runs; with none (or ``marginalize=False``) the
plain density is sampled with preconditioned NUTS. A new integration method is
one more planner in :data:`PLANNERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np

from hierax.errors import ModelError
from hierax.inference.marginal import glmm, latent, linear, nonlinear
from hierax.inference.sampling import EngineResult, prepare, run_nuts
from hierax.models.description import ModelDescription

__all__ = ["PLANNERS", "Planner", "run_description", "run_plain"]


class Planner(NamedTuple):
    """One way of integrating parameters out: ``plan(description)`` then ``run``."""

    kinds: tuple[str, ...]
    plan: Callable[[ModelDescription], Any]
    run: Callable[..., EngineResult]


#: The planners, tried in order for the description kinds they accept.
PLANNERS: tuple[Planner, ...] = (
    Planner(("formula",), linear.plan_marginalization, linear.run_marginalized),
    Planner(("formula",), glmm.plan_level_integration, glmm.run_level_integration),
    Planner(("nonlinear",), nonlinear.plan_marginalization, nonlinear.run_marginalized),
    Planner(("nonlinear",), latent.plan_latent_integration, latent.run_integrated),
)


def run_plain(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any] | None,
    *,
    seed: int,
    draws: int = 1000,
    coords: Mapping[str, Sequence[Any]] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    **options: Any,
) -> EngineResult:
    """Preconditioned NUTS on a NumPyro model function (options of :func:`run_nuts`)."""
    cleaned, info, data_dims = prepare(model_fn, data, coords=coords, dims=dims)
    output = run_nuts(model_fn, cleaned, draws=draws, seed=seed, model_info=info, **options)
    return EngineResult(
        model_fn=model_fn,
        data=cleaned,
        info=info,
        data_dims=data_dims,
        posterior=output.posterior,
        sample_stats=output.sample_stats,
        run_info=dict(output.info),
        seed=seed,
        draws=draws,
    )


def run_description(
    description: ModelDescription,
    *,
    marginalize: bool | Literal["auto"] = "auto",
    seed: int | None = None,
    **options: Any,
) -> EngineResult:
    """Integrate out what a planner can, sample the rest; else NUTS on the plain density.

    ``marginalize``: "auto" uses the first plan that exists, True raises a
    :class:`~hierax.errors.ModelError` when none does, False always samples
    the plain density. ``run_info["marginalized"]`` lists the integrated-out
    sites and ``run_info["not_marginalized_because"]`` says why none were.
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
    reasons: list[str] = []
    if marginalize is not False:
        for planner in PLANNERS:
            if description.kind not in planner.kinds:
                continue
            plan = planner.plan(description)
            if isinstance(plan, str):
                reasons.append(plan)
                continue
            return planner.run(description, plan, seed=seed, **options)
        if marginalize is True:
            raise ModelError(f"this model cannot be marginalized: {'; and '.join(reasons)}.")
    options.pop("draw_method", None)
    result = run_plain(
        description.density,
        description.data,
        seed=seed,
        coords=description.coords,
        dims=description.dims,
        **options,
    )
    result.run_info["marginalized"] = []
    if marginalize is not False:
        result.run_info["not_marginalized_because"] = "; and ".join(reasons)
    return result
