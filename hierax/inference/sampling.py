"""Fitting a NumPyro model function with NUTS: the pipeline every model type ends in.

Flow: validate data → trace the model (sites, plates, dims) → initial values →
mode search and curvature (``precondition``) → NumPyro NUTS on the rescaled
parameters → constrained draws, sample statistics and optional predictive
groups → :class:`~hierax.results.fit.Fit`, with a convergence check.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.infer import MCMC, NUTS
from numpyro.infer.initialization import init_to_median, init_to_uniform, init_to_value
from numpyro.infer.util import initialize_model

from hierax.core import interrupt
from hierax.core.device import prng_key
from hierax.data import validate_model_data
from hierax.errors import InitializationError, ModelError, SamplingError
from hierax.inference.init import InitValues, check_finite_log_density, per_chain_inits
from hierax.inference.precondition import (
    AUTO_DENSE_DIM,
    MAX_DENSE_DIM,
    ModeResult,
    Preconditioner,
    derivative_functions,
    find_mode,
    finite_difference_derivatives,
    from_curvature,
    negative_hessian,
)
from hierax.models.model_info import ModelInfo, check_observed_support, inspect_model

ChainMethod = Literal["auto", "parallel", "vectorized", "sequential"]
PreconditionOption = Literal["auto", "dense", "diag", "none"]

_EXTRA_FIELDS = ("diverging", "num_steps", "energy", "potential_energy", "accept_prob")


@dataclass
class SamplerOutput:
    """Raw output of :func:`run_nuts`, before it becomes an InferenceData."""

    posterior: dict[str, np.ndarray]  # site -> (chain, draw, *shape)
    sample_stats: dict[str, np.ndarray]  # stat -> (chain, draw)
    info: dict[str, Any]


@dataclass(frozen=True)
class EngineResult:
    """What every engine returns: draws of the plain model's sites, and how they were made.

    ``model_fn`` is the plain model (its sites, dims and data make the fit);
    ``data`` its validated arrays; ``posterior`` holds every latent and
    deterministic site, ``(chain, draw, ...)``; ``run_info`` the engine's
    settings and timings. The results layer turns it into a ``Fit``.
    """

    model_fn: Callable[..., Any]
    data: dict[str, Any]
    info: ModelInfo
    data_dims: dict[str, list[str]]
    posterior: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    run_info: dict[str, Any]
    seed: int
    draws: int


#: Integer run options and their smallest allowed value.
_INTEGER_OPTIONS = {
    "chains": 1,
    "draws": 1,
    "warmup": 0,
    "max_tree_depth": 1,
    "multistart": 0,
    "seed": 0,
}
_CHOICE_OPTIONS: dict[str, tuple[str, ...]] = {
    "precondition": ("auto", "dense", "diag", "none"),
    "chain_method": ("auto", "parallel", "vectorized", "sequential"),
}


def check_run_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check the sampler's run options before anything is built; return them normalised.

    ``chains``, ``draws`` (at least 1), ``warmup``, ``multistart`` (at least 0),
    ``max_tree_depth`` (at least 1) and ``seed`` (None or at least 0, as NumPy
    seeds are) must be whole numbers: an integral float such as ``50.0``
    becomes ``50``; ``target_accept`` a number strictly between 0 and 1;
    ``precondition`` and ``chain_method`` one of their choices. Other entries
    pass through unchanged, as do options that are absent.

    Raises
    ------
    ModelError
        Naming the option, the value given and what is allowed.
    """
    checked = dict(options)
    for name, minimum in _INTEGER_OPTIONS.items():
        if name not in checked or (name == "seed" and checked[name] is None):
            continue
        value = checked[name]
        whole = _whole_number(value)
        if whole is None or whole < minimum:
            allowed = "None or " if name == "seed" else ""
            raise ModelError(
                f"{name} must be {allowed}a whole number >= {minimum}, got {value!r}"
                f"{f' ({type(value).__name__})' if whole is None else ''}."
            )
        checked[name] = whole
    if "target_accept" in checked:
        value = checked["target_accept"]
        number = (
            float(value)
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
            else math.nan
        )
        if not 0.0 < number < 1.0:  # also NaN
            raise ModelError(
                f"target_accept must be a number strictly between 0 and 1 (e.g. 0.8, or 0.95 "
                f"against divergences), got {value!r}."
            )
        checked["target_accept"] = number
    for name, choices in _CHOICE_OPTIONS.items():
        if name in checked and checked[name] not in choices:
            raise ModelError(f"{name} must be one of {list(choices)}, got {checked[name]!r}.")
    return checked


def _whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number) and number.is_integer():
            return int(number)
    return None


def default_progress() -> bool:
    """Show progress bars on an interactive terminal, never under CI or pytest."""
    if os.environ.get("CI") or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return sys.stderr.isatty()


def choose_chain_method(chains: int, requested: ChainMethod = "auto") -> str:
    """Parallel across devices when there are enough of them, vectorised otherwise."""
    if requested != "auto":
        return requested
    if chains > 1 and jax.local_device_count() >= chains:
        return "parallel"
    return "vectorized"


class Unconstrained:
    """The model's log density on a flat unconstrained vector."""

    def __init__(self, potential_fn: Callable[[Any], jax.Array], unravel: Callable[..., Any]):
        self._potential_fn = potential_fn
        self.unravel = unravel
        self.value_and_grad = jax.jit(jax.value_and_grad(self.log_density))

    def log_density(self, flat: jax.Array) -> jax.Array:
        return -self._potential_fn(self.unravel(flat))


def initial_unconstrained(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    inits: list[dict[str, np.ndarray]] | None,
    chains: int,
    key: jax.Array,
    dispersed: bool = False,
) -> tuple[Any, np.ndarray, Callable[..., Any]]:
    """Per-chain unconstrained starting points, plus NumPyro's model helpers.

    When every chain shares one strategy (no per-chain values, or the same
    values for all), NumPyro searches the chains' starts in one batched,
    compiled call: its unbatched search evaluates the log density and its
    gradient primitive by primitive, which costs seconds of compilation.
    """
    keys = jax.random.split(key, chains)

    def strategy(chain: int) -> Any:
        if inits is not None:
            return init_to_value(values=inits[chain])
        if dispersed:
            return init_to_uniform(radius=2.0)
        return init_to_median(num_samples=15)

    shared = inits is None or all(_same_values(inits[0], other) for other in inits[1:])
    groups = (
        [(list(range(chains)), strategy(0))]
        if shared
        else [([chain], strategy(chain)) for chain in range(chains)]
    )
    model_info = None
    starts = np.empty((chains, 0))
    for members, chain_strategy in groups:
        try:
            info = initialize_model(
                keys[np.asarray(members)],
                model_fn,
                init_strategy=chain_strategy,
                model_kwargs=dict(data),
            )
        except (RuntimeError, ValueError) as error:
            values = inits[members[0]] if inits is not None else {}
            check_finite_log_density(model_fn, data, values, where=f"chain {members[0]}'s start")
            raise InitializationError(
                f"no valid starting point found for chain {members[0]}: {error}"
            ) from error
        flat = np.asarray(jax.vmap(lambda tree: ravel_pytree(tree)[0])(info.param_info.z))
        if model_info is None:
            model_info = info
            starts = np.empty((chains, flat.shape[1]))
        starts[np.asarray(members)] = flat
    assert model_info is not None
    first = jax.tree_util.tree_map(lambda leaf: leaf[0], model_info.param_info.z)
    _, unravel = ravel_pytree(first)
    return model_info, starts.astype(np.float64), unravel


def _same_values(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _usable_mode(mode: ModeResult, precision: np.ndarray | None) -> bool:
    """A converged search whose curvature is finite and positive definite.

    A "mode" at the bottom of a funnel's spike (a centered group sd driven to
    zero) has non-finite or numerically singular curvature and must not be used.
    """
    if not mode.success or precision is None:
        return False
    try:
        return bool(np.all(np.isfinite(np.linalg.cholesky(precision))))
    except np.linalg.LinAlgError:
        return False


def _cluster_modes(
    modes: dict[int, ModeResult], usable: list[int], preconditioner: Preconditioner
) -> dict[str, Any]:
    """Group the optima that lie within 3 posterior sds of each other (in whitened units)."""
    clusters: list[dict[str, Any]] = []
    for c in sorted(usable, key=lambda c: -modes[c].log_density):
        z = preconditioner.from_unconstrained_numpy(modes[c].position)
        for cluster in clusters:
            if np.max(np.abs(z - cluster["z"])) < 3.0:
                cluster["count"] += 1
                break
        else:
            clusters.append({"z": z, "count": 1, "log_density": modes[c].log_density})
    return {
        "searches": len(modes),
        "converged": len(usable),
        "modes": [
            {"log_density": round(c["log_density"], 3), "searches": c["count"]} for c in clusters
        ],
    }


def precondition_at_mode(
    target: Unconstrained,
    starts: np.ndarray,
    option: PreconditionOption,
    key: jax.Array,
    extra_starts: np.ndarray | None = None,
    finite_differences: bool = False,
    jitter: bool = True,
    derivatives: tuple[Callable[..., Any], Callable[..., Any]] | None = None,
) -> tuple[Preconditioner, np.ndarray, dict[str, Any]]:
    """Mode search from each distinct start, curvature at the best mode, chain starts in z.

    With ``extra_starts`` (multi-start), every start is optimised, the optima
    are clustered, and all chains start in the best mode. With
    ``finite_differences`` the Hessian comes from differences of gradients
    (no second-order program to compile; for a few parameters). Given
    ``derivatives`` (``value_and_grad`` and ``-∇² log p`` callables), no
    derivative program is compiled at all. Without ``jitter`` the chains start
    at the modes themselves.
    """
    chains, dim = starts.shape
    if option == "none":
        identity = from_curvature(np.zeros(dim), None)
        return identity, starts, {"kind": "identity", "mode_found": False}

    # chains sharing a start share its mode search
    distinct: list[int] = []
    source_of: list[int] = []
    for chain in range(chains):
        match = next((c for c in distinct if np.allclose(starts[chain], starts[c])), None)
        if match is None:
            distinct.append(chain)
            match = chain
        source_of.append(match)

    hessian: Callable[..., Any] | None
    if derivatives is not None:
        value_and_grad, hessian = derivatives
    elif finite_differences:
        value_and_grad, hessian = finite_difference_derivatives(target.log_density)
    else:
        value_and_grad, hessian = derivative_functions(target.log_density, dim)
    modes = {c: find_mode(value_and_grad, starts[c], hessian=hessian) for c in distinct}
    multistart = extra_starts is not None and len(extra_starts) > 0
    if multistart:
        assert extra_starts is not None
        for offset, start in enumerate(extra_starts):
            modes[chains + offset] = find_mode(value_and_grad, start, hessian=hessian)
        distinct = distinct + [chains + i for i in range(len(extra_starts))]
    curvature = {c: negative_hessian(hessian, modes[c].position) for c in distinct}
    usable = [c for c in distinct if _usable_mode(modes[c], curvature[c])]
    if usable:
        best = max(usable, key=lambda c: modes[c].log_density)
        center, precision = modes[best].position, curvature[best]
    else:
        # Away from a mode the Hessian need not be positive definite: from_curvature
        # then uses its (capped) diagonal only.
        best = distinct[0]
        center = starts[best]
        precision = negative_hessian(hessian, center)
    preconditioner = from_curvature(
        center,
        precision,
        allow_dense=option in ("auto", "dense"),
        max_dense_dim=MAX_DENSE_DIM if option == "dense" else AUTO_DENSE_DIM,
        at_mode=bool(usable),
    )

    # Each chain starts at its own mode (or start) plus a draw from the local
    # Gaussian approximation, so chains are dispersed on the posterior's own scale.
    offsets = (
        np.asarray(jax.random.normal(key, (chains, dim))) if jitter else np.zeros((chains, dim))
    )
    jitter_scale = 1.0 if usable else 0.1
    z_starts = np.empty((chains, dim))
    for chain in range(chains):
        source = best if multistart and usable else source_of[chain]
        base = modes[source].position if source in usable else starts[chain]
        z_base = preconditioner.from_unconstrained_numpy(base)
        candidate = z_base + jitter_scale * offsets[chain]
        value = float(value_and_grad(preconditioner.to_unconstrained_numpy(candidate))[0])
        z_starts[chain] = candidate if np.isfinite(value) else z_base
    details = {
        **preconditioner.describe(),
        "mode_found": bool(usable),
        "mode_log_density": float(modes[best].log_density),
        "mode_message": modes[best].message,
    }
    if multistart:
        details["multistart"] = _cluster_modes(modes, usable, preconditioner)
    return preconditioner, z_starts, details


def run_nuts(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    *,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int = 0,
    target_accept: float = 0.8,
    init: InitValues | Sequence[InitValues] | None = None,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    precondition: PreconditionOption = "auto",
    chain_method: ChainMethod = "auto",
    progress: bool | None = None,
    multistart: int = 0,
    model_info: ModelInfo,
) -> SamplerOutput:
    """Run NUTS on a validated model; see :func:`hierax.fit` for the arguments."""
    if chains < 1 or draws < 1 or warmup < 0:
        raise SamplingError(
            f"chains and draws must be >= 1 and warmup >= 0 (got chains={chains}, "
            f"draws={draws}, warmup={warmup})."
        )
    if not 0.0 < target_accept < 1.0:
        raise SamplingError(f"target_accept must lie in (0, 1), got {target_accept}.")
    if precondition not in ("auto", "dense", "diag", "none"):
        raise SamplingError(
            f"precondition must be 'auto', 'dense', 'diag' or 'none', got {precondition!r}."
        )
    inits = per_chain_inits(init, chains, model_info)
    if inits is not None:
        for chain, values in enumerate(inits):
            if any(_same_values(values, earlier) for earlier in inits[:chain]):
                continue  # the same values as an earlier chain's: checked already
            check_finite_log_density(
                model_fn, data, values, where=f"chain {chain}'s initial values"
            )

    key = prng_key(seed)
    init_key, jitter_key, sample_key = jax.random.split(key, 3)
    show_progress = default_progress() if progress is None else progress
    if show_progress and precondition != "none":
        print(
            "hierax: finding the posterior mode and its curvature...", file=sys.stderr, flush=True
        )
    started = time.perf_counter()
    numpyro_info, starts, unravel = initial_unconstrained(model_fn, data, inits, chains, init_key)
    target = Unconstrained(numpyro_info.potential_fn, unravel)
    extra_starts = None
    if multistart > 0:
        # dispersed starts: uniform on (-2, 2) in the unconstrained space, as Stan does
        _, extra_starts, _ = initial_unconstrained(
            model_fn, data, None, multistart, jax.random.fold_in(init_key, 1), dispersed=True
        )
    preconditioner, z_starts, precondition_info = precondition_at_mode(
        target, starts, precondition, jitter_key, extra_starts
    )
    preparation_seconds = time.perf_counter() - started

    def potential_z(z: jax.Array) -> jax.Array:
        return -target.log_density(preconditioner.to_unconstrained(z))

    kernel = NUTS(
        potential_fn=potential_z,
        target_accept_prob=target_accept,
        dense_mass=dense_mass,
        max_tree_depth=max_tree_depth,
    )
    method = choose_chain_method(chains, chain_method)
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method=method,
        progress_bar=show_progress,
    )
    started = time.perf_counter()
    init_params = jnp.asarray(z_starts if chains > 1 else z_starts[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*There are not enough devices.*")
        mcmc.run(sample_key, init_params=init_params, extra_fields=_EXTRA_FIELDS)
        jax.block_until_ready(mcmc.last_state)  # chains run asynchronously: time them whole
    sampling_seconds = time.perf_counter() - started
    interrupt.check()

    z = np.asarray(mcmc.get_samples(group_by_chain=True))  # (chain, draw, d)
    if not np.all(np.isfinite(z)):
        raise SamplingError("the sampler produced non-finite draws; the model may be improper.")
    unconstrained = preconditioner.to_unconstrained(jnp.asarray(z.reshape(chains * draws, -1)))
    postprocess = numpyro_info.postprocess_fn
    constrained = jax.jit(jax.vmap(lambda flat: postprocess(unravel(flat))))(unconstrained)
    posterior = {
        name: np.asarray(value).reshape((chains, draws) + tuple(np.shape(value)[1:]))
        for name, value in constrained.items()
    }

    extra = mcmc.get_extra_fields(group_by_chain=True)
    num_steps = np.asarray(extra["num_steps"])
    tree_depth = np.floor(np.log2(np.maximum(num_steps, 1))).astype(np.int64) + 1
    inverse_mass = mcmc.last_state.adapt_state.inverse_mass_matrix
    step_size = np.broadcast_to(
        np.asarray(mcmc.last_state.adapt_state.step_size).reshape(chains, 1), (chains, draws)
    )
    sample_stats = {
        "diverging": np.asarray(extra["diverging"], dtype=bool),
        "tree_depth": tree_depth,
        "n_steps": num_steps.astype(np.int64),
        "energy": np.asarray(extra["energy"]),
        "lp": -np.asarray(extra["potential_energy"]),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "step_size": np.array(step_size),
        "reached_max_treedepth": tree_depth >= max_tree_depth,
    }
    del inverse_mass
    info = {
        "chains": chains,
        "draws": draws,
        "warmup": warmup,
        "seed": seed,
        "target_accept": target_accept,
        "max_tree_depth": max_tree_depth,
        "dense_mass": dense_mass,
        "chain_method": method,
        "preparation_seconds": preparation_seconds,
        "sampling_seconds": sampling_seconds,
        "precondition": precondition_info,
    }
    return SamplerOutput(posterior, sample_stats, info)


def prepare(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any] | None,
    *,
    coords: Mapping[str, Sequence[Any]] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    abstract: bool = False,
) -> tuple[dict[str, Any], ModelInfo, dict[str, list[str]]]:
    """Validate data, trace the model and split ``dims`` into site dims and data dims.

    ``abstract=True`` traces shapes only (for a model that is described but
    not run, e.g. the full model of a collapsed fit).
    """
    cleaned = validate_model_data(model_fn, data or {})
    dims = dict(dims or {})
    data_dims = {key: list(value) for key, value in dims.items() if key in cleaned}
    site_dims = {key: value for key, value in dims.items() if key not in cleaned}
    info, trace = inspect_model(model_fn, cleaned, dims=site_dims, coords=coords, abstract=abstract)
    check_observed_support(trace)
    if not info.names("latent"):
        raise SamplingError(
            "the model has no latent sample sites: there is nothing to infer. "
            "Did you pass observed values for every site?"
        )
    return cleaned, info, data_dims
