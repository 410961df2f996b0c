"""What a NumPyro model function contains: its sites, plates and named dims.

The model is traced once, outside ``jit``, with a fixed key. The result is
used to name dimensions in the InferenceData, to validate initial values and
to check observed data against the likelihood's support.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jax
import numpy as np
from numpyro import handlers
from numpyro.distributions import constraints

from hierax.errors import DataError, ModelError

SiteKind = Literal["latent", "observed", "deterministic"]


@dataclass(frozen=True)
class SiteInfo:
    """One site of a model: its role, shape and named dimensions."""

    name: str
    kind: SiteKind
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    distribution: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """Sites and plates of a traced model."""

    sites: dict[str, SiteInfo]
    plates: dict[str, int]
    coords: dict[str, list[Any]] = field(default_factory=dict)

    def names(self, kind: SiteKind) -> list[str]:
        """Names of the sites of one kind, in model order."""
        return [name for name, site in self.sites.items() if site.kind == kind]

    def dims_of(self, kinds: Sequence[SiteKind]) -> dict[str, list[str]]:
        """``{site: dims}`` for the given kinds, in ArviZ's ``dims=`` format."""
        return {n: list(s.dims) for n, s in self.sites.items() if s.kind in kinds and s.dims}


def base_distribution(fn: Any) -> Any:
    """The distribution inside NumPyro's wrappers (expand, to_event, mask)."""
    while hasattr(fn, "base_dist") and type(fn).__name__ in (
        "ExpandedDistribution",
        "Independent",
        "MaskedDistribution",
    ):
        fn = fn.base_dist
    return fn


def has_static_support(fn: Any) -> bool:
    """Whether the support is fixed by the family (Poisson, Beta...), not by parameters.

    Supports that depend on parameters (Uniform(0, upper), TruncatedNormal,
    Binomial) are not checked before sampling: the data may be possible for
    other parameter values.
    """
    support = getattr(type(base_distribution(fn)), "support", None)
    return (
        support is not None
        and not constraints.is_dependent(support)
        and not isinstance(support, property)
    )


def trace_model(
    model_fn: Callable[..., Any], data: Mapping[str, Any], seed: int = 0, abstract: bool = False
) -> dict[str, Any]:
    """Run the model once under a seed and return NumPyro's trace.

    With ``abstract=True`` the model runs under JAX tracing, so its latent and
    deterministic values are abstract (shapes and dtypes only; observed values
    stay concrete) and nothing is compiled: running a model eagerly compiles
    each primitive separately, which costs seconds. A model that needs
    concrete values (Python control flow on a sampled value) is run eagerly.
    """
    if abstract:
        captured: dict[str, Any] = {}

        def run() -> int:
            with handlers.seed(rng_seed=seed):
                captured["trace"] = handlers.trace(model_fn).get_trace(**data)
            return 0

        try:
            jax.make_jaxpr(run)()
            return captured["trace"]
        except Exception:  # anything a concrete run may handle (or report) better
            pass
    try:
        with handlers.seed(rng_seed=seed):
            return handlers.trace(model_fn).get_trace(**data)
    except DataError:
        raise
    except Exception as error:  # the user's code failed: say where, keep the cause
        raise ModelError(
            f"running model function {getattr(model_fn, '__name__', model_fn)!r} with the given "
            f"data failed: {type(error).__name__}: {error}"
        ) from error


def _site_dims(
    name: str,
    shape: tuple[int, ...],
    event_ndim: int,
    frames: Sequence[Any],
    plates: Mapping[str, int],
    override: Sequence[str] | None,
) -> tuple[str, ...]:
    if override is not None:
        if len(override) != len(shape):
            raise ModelError(
                f"dims for site {name!r} were given as {list(override)}, but the site has "
                f"shape {shape} ({len(shape)} dimension(s)); give one name per dimension."
            )
        return tuple(override)
    names = [f"{name}_dim_{i}" for i in range(len(shape))]
    batch_ndim = len(shape) - event_ndim
    for frame in frames:
        if frame.name not in plates or frame.dim is None:
            continue
        axis = batch_ndim + frame.dim
        if 0 <= axis < batch_ndim and shape[axis] == frame.size:
            names[axis] = frame.name
    return tuple(names)


def inspect_model(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    *,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Sequence[Any]] | None = None,
    abstract: bool = False,
) -> tuple[ModelInfo, dict[str, Any]]:
    """Trace ``model_fn(**data)`` and describe its sites.

    Parameters
    ----------
    model_fn : callable
        A NumPyro model function.
    data : mapping
        Keyword arguments for the model.
    dims : mapping, optional
        Explicit dimension names per site; they take precedence over plate names.
    coords : mapping, optional
        Coordinate values per dimension name (e.g. group levels). Their lengths
        are checked against the plate sizes.
    abstract : bool
        Trace without computing values (see :func:`trace_model`).

    Returns
    -------
    info : ModelInfo
    trace : dict
        The NumPyro trace (kept for support checks of observed data).
    """
    dims = dict(dims or {})
    trace = trace_model(model_fn, data, abstract=abstract)
    plates = {name: int(site["args"][0]) for name, site in trace.items() if site["type"] == "plate"}
    sites: dict[str, SiteInfo] = {}
    for name, site in trace.items():
        if site["type"] == "sample":
            kind: SiteKind = "observed" if site["is_observed"] else "latent"
            value = site["value"]
            shape = tuple(np.shape(value))
            event_ndim = len(getattr(site["fn"], "event_shape", ()))
            distribution = type(base_distribution(site["fn"])).__name__
        elif site["type"] == "deterministic":
            kind = "deterministic"
            shape = tuple(np.shape(site["value"]))
            event_ndim = 0
            distribution = ""
        else:
            continue
        site_dims = _site_dims(
            name, shape, event_ndim, site.get("cond_indep_stack", []), plates, dims.get(name)
        )
        sites[name] = SiteInfo(name, kind, shape, site_dims, distribution)

    unknown = [name for name in dims if name not in sites]
    if unknown:
        raise ModelError(f"dims were given for {unknown}, which are not sites of the model.")

    sizes: dict[str, int] = {}
    for site in sites.values():
        for dim, size in zip(site.dims, site.shape, strict=True):
            sizes.setdefault(dim, size)
    checked_coords: dict[str, list[Any]] = {}
    for dim, values in (coords or {}).items():
        values = list(values)
        if dim in sizes and sizes[dim] != len(values):
            raise ModelError(
                f"coords for dimension {dim!r} have {len(values)} value(s) but the model's "
                f"{dim!r} dimension has size {sizes[dim]}."
            )
        checked_coords[dim] = values
    return ModelInfo(sites=sites, plates=plates, coords=checked_coords), trace


def check_observed_support(trace: Mapping[str, Any]) -> None:
    """Raise :class:`DataError` when observed values are NaN or outside the likelihood's support."""
    for name, site in trace.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        if isinstance(site["value"], jax.core.Tracer):
            continue  # a factor's value in an abstract trace: computed, not data
        value = np.asarray(site["value"])
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            bad = np.flatnonzero(~np.isfinite(value).reshape(-1))
            raise DataError(
                f"observed site {name!r} has {bad.size} NaN/inf value(s) (first flat positions "
                f"{bad[:5].tolist()}); remove those rows before fitting."
            )
        if not has_static_support(site["fn"]):
            continue
        support = site["fn"].support
        try:
            inside = np.asarray(jax.device_get(support(site["value"])))
        except Exception:  # support checks that cannot run on this value are skipped
            continue
        inside = np.broadcast_to(inside, np.shape(inside))
        if not inside.all():
            bad = np.flatnonzero(~inside.reshape(-1))
            examples = value.reshape(-1)[bad[:5]] if value.ndim else value.reshape(-1)[:1]
            raise DataError(
                f"observed site {name!r} has {bad.size} value(s) outside the support of its "
                f"{type(base_distribution(site['fn'])).__name__} likelihood ({support}); first flat positions "
                f"{bad[:5].tolist()}, values {examples.tolist()}."
            )
