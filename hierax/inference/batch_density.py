"""Log densities and constrained values of many unconstrained points at once, for
independence Metropolis-Hastings: the model traced once per point, one compiled
program for a whole batch of points, and a start found without running the model
outside ``jit`` (each primitive run there would compile a program of its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.distributions import transforms
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.util import sum_rightmost
from numpyro.infer.util import log_density, potential_energy, unconstrain_fn

from hierax.core import interrupt
from hierax.inference.precondition import STENCIL_MAX_DIM, stencil_derivatives
from hierax.models.model_info import trace_model

__all__ = [
    "EVALUATION_BATCH",
    "PointEvaluation",
    "batch_evaluator",
    "batches",
    "density_and_sites",
    "direct_setup",
    "flat_layout",
    "host_inverse",
    "numpyro_point",
    "stencil",
]

#: Proposals evaluated together by the one compiled program: a vectorized batch whose
#: intermediates stay in the CPU's cache (the star-cluster model's quadrature holds 32 x
#: 256 values per proposal), yet large enough to pay each operation's overhead rarely
#: (per proposal on the binary-star seed: 100 at once 21 us, 20 at once 29 us, 1000 at
#: once 31 us).
EVALUATION_BATCH = 100


def batches(values: np.ndarray) -> list[np.ndarray]:
    """Rows in batches of ``EVALUATION_BATCH``, the last one padded by repeating its first row."""
    values = np.asarray(values)
    pieces = []
    for start in range(0, len(values), EVALUATION_BATCH):
        piece = values[start : start + EVALUATION_BATCH]
        if len(piece) < EVALUATION_BATCH:
            padding = np.repeat(piece[:1], EVALUATION_BATCH - len(piece), axis=0)
            piece = np.concatenate([piece, padding])
        pieces.append(piece)
    return pieces


#: A point's log density and constrained values (latent and deterministic sites).
PointEvaluation = Callable[[jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def density_and_sites(
    model_fn: Callable[..., Any], kwargs: Mapping[str, Any]
) -> Callable[..., Any]:
    """Log density at unconstrained values and the constrained sites, from one model run.

    As NumPyro's ``potential_energy`` (each sample site's value through
    ``biject_to`` of its support, plus the log-Jacobian as a factor) followed
    by ``constrain_fn``, but tracing the model once: the constrained and
    deterministic values come from the same trace as the density, so no
    computation is repeated (a latent model's quadrature records each row's
    mode for the conditional draws).
    """

    def evaluate(params: Mapping[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
        def constrain(site: dict[str, Any]) -> Any:
            if site["type"] != "sample" or site["name"] not in params:
                return None
            unconstrained = params[site["name"]]
            transform = biject_to(site["fn"].support)
            value = transform(unconstrained)
            log_det = transform.log_abs_det_jacobian(unconstrained, value)
            log_det = sum_rightmost(
                log_det, jnp.ndim(log_det) - jnp.ndim(value) + len(site["fn"].event_shape)
            )
            numpyro.factor(f"_{site['name']}_log_det", log_det)
            return value

        substituted = handlers.substitute(model_fn, substitute_fn=constrain)
        log_joint, trace = log_density(substituted, (), dict(kwargs), {})
        values = {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "deterministic"
            or (site["type"] == "sample" and not site["is_observed"] and name in params)
        }
        return log_joint, values

    return evaluate


def host_inverse(transform: Any, value: np.ndarray) -> np.ndarray | None:
    """``transform.inv(value)`` in NumPy for NumPyro's usual bijections, else None.

    Identity, exp, sigmoid and affine maps with concrete parameters (and their
    compositions): the supports of real, positive, bounded and unit-interval
    parameters. Through JAX, inverting the start values would compile a
    program of its own.
    """
    if isinstance(transform, transforms.IndependentTransform):
        return host_inverse(transform.base_transform, value)
    if isinstance(transform, transforms.ComposeTransform):
        result: np.ndarray | None = value
        for part in reversed(transform.parts):
            result = None if result is None else host_inverse(part, result)
        return result
    value = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(transform, transforms.IdentityTransform):
            return value
        if isinstance(transform, transforms.ExpTransform):
            return np.log(value)
        if isinstance(transform, transforms.SigmoidTransform):
            return np.log(value) - np.log1p(-value)
        if isinstance(transform, transforms.AffineTransform):
            loc, scale = transform.loc, transform.scale
            if isinstance(loc, jax.core.Tracer) or isinstance(scale, jax.core.Tracer):
                return None
            return (value - np.asarray(loc, dtype=np.float64)) / np.asarray(scale, dtype=np.float64)
    return None


def flat_layout(
    shapes: Mapping[str, tuple[int, ...]],
) -> tuple[Callable[[Mapping[str, Any]], np.ndarray], Callable[[Any], dict[str, Any]]]:
    """Ravel (on the host) and unravel (host or traced) sites of these shapes.

    The layout of :func:`jax.flatten_util.ravel_pytree` (sites in sorted order,
    each flattened row-major), without its ``jnp`` calls outside ``jit``, each
    of which would compile a program of its own.
    """
    names = sorted(shapes)
    sizes = [int(np.prod(shapes[name])) for name in names]
    ends = [int(end) for end in np.cumsum(sizes)]
    starts = [end - size for end, size in zip(ends, sizes, strict=True)]

    def ravel(values: Mapping[str, Any]) -> np.ndarray:
        return np.concatenate(
            [
                np.broadcast_to(np.asarray(values[name], dtype=np.float64), shapes[name]).ravel()
                for name in names
            ]
        )

    def unravel(flat: Any) -> dict[str, Any]:
        return {
            name: flat[a:b].reshape(shapes[name])
            for name, a, b in zip(names, starts, ends, strict=True)
        }

    return ravel, unravel


def direct_setup(
    model_fn: Callable[..., Any], data: Mapping[str, Any], init: Mapping[str, Any] | None
) -> tuple[Callable[..., Any], PointEvaluation, np.ndarray, Callable[..., Any]] | None:
    """Potential, constrained values and a start without running the model outside ``jit``.

    NumPyro's set-up (``initialize_model``) runs the model and searches for a
    valid start primitive by primitive, which compiles each primitive on its
    own. A collapsed model has only continuous hyperparameters: the shapes come
    from an abstract trace, the start is 0 on the unconstrained scale (sds and
    sigma 1, correlations 0) or the given values, and NumPyro's public
    ``potential_energy`` and the transforms of :func:`density_and_sites` run
    inside the compiled functions. Returns the potential, a point's log density
    and constrained values, the start and the unravelling function, or None
    where this does not apply.
    """
    kwargs = dict(data)
    try:
        trace = trace_model(model_fn, kwargs, abstract=True)
        shapes = {}
        for name, site in trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            support = site["fn"].support
            if support.is_discrete:
                return None
            shapes[name] = biject_to(support).inverse_shape(tuple(np.shape(site["value"])))
    except Exception:  # an unusual model: NumPyro's own set-up handles it
        return None
    if not shapes:
        return None
    ravel, unravel = flat_layout(shapes)
    start = ravel(dict.fromkeys(shapes, 0.0))
    if init:
        given = {k: np.asarray(v) for k, v in init.items() if k in shapes}
        inverses = {k: host_inverse(biject_to(trace[k]["fn"].support), v) for k, v in given.items()}
        if all(value is not None for value in inverses.values()):
            unconstrained: Mapping[str, Any] = inverses
        else:  # a support with a parameter-dependent bound: through the model
            unconstrained = jax.jit(lambda values: unconstrain_fn(model_fn, (), kwargs, values))(
                given
            )
        start = ravel({name: unconstrained.get(name, 0.0) for name in shapes})

    def potential(params: Any) -> jax.Array:
        return potential_energy(model_fn, (), kwargs, params)

    evaluate = density_and_sites(model_fn, kwargs)

    def point(flat: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return evaluate(unravel(flat))  # type: ignore[no-any-return]

    return potential, point, start[None, :], unravel


def batch_evaluator(
    point: PointEvaluation, dim: int
) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]], float]:
    """Log densities and constrained values of any number of points, and its compile time.

    One program, compiled ahead of time for a batch of ``EVALUATION_BATCH``
    points, serves the mode search (finite differences, see
    :func:`hierax.inference.precondition.stencil_derivatives`) and the proposals alike.
    """
    started = time.perf_counter()
    batch = (
        jax.jit(jax.vmap(point))
        .lower(jax.ShapeDtypeStruct((EVALUATION_BATCH, dim), jnp.result_type(float)))
        .compile()
    )
    compile_seconds = time.perf_counter() - started

    def evaluate(u: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        pieces = []
        for piece in batches(u):
            interrupt.check()
            pieces.append(batch(piece))
        log_p = np.concatenate([np.asarray(p[0]) for p in pieces])[: len(u)]
        constrained = {
            name: np.concatenate([np.asarray(p[1][name]) for p in pieces])[: len(u)]
            for name in pieces[0][1]
        }
        return log_p, constrained

    return evaluate, compile_seconds


def numpyro_point(
    potential_fn: Callable[..., Any], postprocess: Callable[..., Any], unravel: Callable[..., Any]
) -> PointEvaluation:
    """A point's log density and constrained values from NumPyro's own set-up."""

    def point(flat: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return -potential_fn(unravel(flat)), postprocess(unravel(flat))

    return point


def stencil(
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]], dim: int
) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """Stencil derivatives from the batch program, for few enough parameters."""
    if dim > STENCIL_MAX_DIM:
        return None  # a gradient program: 2 d^2 + 1 densities per point cost too much
    return stencil_derivatives(lambda points: evaluate(points)[0], dim)
