"""The fit of a collapsed model, shared by every kind of marginalization.

Formula models (:mod:`.formula`), conditionally linear parameters of nonlinear
models (:mod:`.nonlinear`) and per-row latent values (:mod:`.latent`) differ
in how they integrate parameters out and draw them back; the rest is the
same: describe the plain model, sample the collapsed one
(:func:`hierax.inference.independence.sample_collapsed`), draw the integrated-out
sites for every posterior draw, and return draws of the plain model's variables
(the results layer makes them a fit).

A collapsed model with nothing left to sample (every other parameter known,
e.g. a linear model with a fixed sigma) is exact: its "posterior" is one point,
and the fit holds ``chains x draws`` independent draws of the integrated-out
sites from their exact conditional distribution (``info["method"] == "exact"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer.util import log_density

from hierax.core import interrupt
from hierax.core.device import prng_key
from hierax.data import validate_model_data
from hierax.errors import SamplingError
from hierax.inference.independence import check_draw_method, sample_collapsed
from hierax.inference.sampling import EngineResult, SamplerOutput, prepare
from hierax.models.description import ModelDescription
from hierax.models.model_info import ModelInfo, check_observed_support, inspect_model

__all__ = [
    "EngineResult",
    "array_data",
    "batch_size",
    "flat_draws",
    "map_draws",
    "run_collapsed",
]


def batch_size(n: int, cap: int = 64) -> int:
    """The largest divisor of ``n`` up to ``cap``: ``jax.lax.map`` batches with no remainder.

    A remainder is a second copy of the mapped function in the compiled
    program (``lax.map`` maps it apart), which doubles its compile time.
    """
    divisor = max(d for d in range(1, min(cap, n) + 1) if n % d == 0)
    # a small divisor (n prime) would map almost draw by draw: take the remainder then
    return divisor if divisor >= min(n, cap // 4) else min(cap, n)


def map_draws(one: Callable[[Any], Any], flat: Any, key: jax.Array, count: int, cap: int) -> Any:
    """``one((draw_values, draw_key))`` for each of ``count`` posterior draws, compiled once.

    ``flat`` holds the draws along its leading axis. The draws are mapped in
    batches (:func:`batch_size` up to ``cap``), and the per-draw keys are split
    from ``key`` inside the compiled function: split outside, they would
    compile a program of their own.
    """
    return jax.jit(
        lambda xs, k: jax.lax.map(
            one, (xs, jax.random.split(k, count)), batch_size=batch_size(count, cap)
        )
    )(flat, key)


def flat_draws(
    posterior: Mapping[str, Any], shape: tuple[int, int] | None
) -> tuple[dict[str, np.ndarray], int, int]:
    """Posterior draws ``(chain, draw, ...)`` flattened to ``(chain * draw, ...)``.

    ``shape`` is ``(chains, draws)``, needed only when ``posterior`` is empty (an
    exact fit: nothing was sampled). Returns the flat draws, chains and draws.
    """
    chains, draws = shape if shape is not None else next(iter(posterior.values())).shape[:2]
    flat = {
        k: np.reshape(np.asarray(v), (chains * draws,) + np.shape(v)[2:])
        for k, v in posterior.items()
    }
    return flat, chains, draws


def array_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """The array-valued data (what a compiled function may take as arguments)."""
    return {k: v for k, v in data.items() if v is not None and np.ndim(v) > 0}


#: ``draw(posterior, key, data, shape)``: the integrated-out sites for every posterior
#: draw, ``(chain, draw, ...)``, given the collapsed model's draws (its latent and
#: deterministic sites; none at all for an exact fit), its data and ``(chains, draws)``.
DrawFunction = Callable[
    [Mapping[str, np.ndarray], jax.Array, Mapping[str, Any], tuple[int, int]], Mapping[str, Any]
]


def _keep_sites(init: Any, names: set[str]) -> Any:
    """Initial values of the collapsed model's own sites only."""
    if init is None:
        return None
    if isinstance(init, list | tuple):
        return [{k: v for k, v in dict(values).items() if k in names} for values in init]
    return {k: v for k, v in dict(init).items() if k in names}


def _describe_collapsed(
    collapsed: Callable[..., Any], data: Mapping[str, Any]
) -> tuple[dict[str, Any], ModelInfo]:
    """The collapsed model's validated data and sites.

    Unlike :func:`hierax.inference.sampling.prepare` it accepts a model without latent
    sites: integrating out is then exact (:func:`_exact_output`).
    """
    arrays = validate_model_data(collapsed, data)
    info, trace = inspect_model(collapsed, arrays, abstract=True)
    check_observed_support(trace)
    return arrays, info


def _exact_output(
    collapsed: Callable[..., Any], arrays: Mapping[str, Any], chains: int, draws: int, seed: int
) -> SamplerOutput:
    """The "sampler output" of a collapsed model with nothing to sample.

    Its deterministic sites (known values such as a fixed sigma) are repeated
    for every draw; ``lp`` is its log density, the log marginal likelihood
    (the same for every draw). No chain runs, so nothing can diverge.
    """
    for name, value in (("chains", chains), ("draws", draws)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise SamplingError(f"{name} must be a whole number >= 1, got {value!r}.")
    started = time.perf_counter()
    log_joint, trace = log_density(handlers.seed(collapsed, rng_seed=0), (), dict(arrays), {})
    known = {
        name: np.broadcast_to(np.asarray(site["value"]), (chains, draws, *np.shape(site["value"])))
        for name, site in trace.items()
        if site["type"] == "deterministic"
    }
    sample_stats = {
        "diverging": np.zeros((chains, draws), dtype=bool),
        "lp": np.full((chains, draws), float(log_joint)),
    }
    info = {
        "method": "exact",
        "chains": chains,
        "draws": draws,
        "warmup": 0,
        "seed": seed,
        "preparation_seconds": time.perf_counter() - started,
        "sampling_seconds": 0.0,
        "exact_because": "every parameter that is not integrated out has a known value",
    }
    return SamplerOutput({k: np.array(v) for k, v in known.items()}, sample_stats, info)


def run_collapsed(
    description: ModelDescription,
    collapsed: Callable[..., Any],
    *,
    draw: DrawFunction,
    marginalized: list[str],
    collapsed_data: Mapping[str, Any] | None = None,
    extra_info: Mapping[str, Any] | None = None,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int | None = None,
    init: Any = None,
    draw_method: str = "auto",
    **sampler: Any,
) -> EngineResult:
    """Sample ``collapsed``, draw the integrated-out sites, return the plain model's draws.

    Parameters
    ----------
    description
        The model: its plain density (``description.density``), data, coords
        and dims make the fit.
    collapsed
        The collapsed NumPyro model; its data are ``collapsed_data`` (default:
        the plain model's validated data).
    draw
        Draws the integrated-out sites (see :data:`DrawFunction`).
    marginalized
        Names recorded in ``info["marginalized"]``.
    init
        Initial values; those of integrated-out sites are dropped.
    draw_method
        As in :func:`hierax.inference.independence.sample_collapsed`.
    """
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
    model_fn = description.density
    # the plain model is only described (sites, dims), never run: trace it abstractly
    cleaned, info, data_dims = prepare(
        model_fn, description.data, coords=description.coords, dims=description.dims, abstract=True
    )
    arrays, collapsed_info = _describe_collapsed(
        collapsed, cleaned if collapsed_data is None else collapsed_data
    )
    if collapsed_info.names("latent"):
        output = sample_collapsed(
            collapsed,
            arrays,
            model_info=collapsed_info,
            chains=chains,
            draws=draws,
            warmup=warmup,
            seed=seed,
            init=_keep_sites(init, set(collapsed_info.names("latent"))),
            draw_method=draw_method,
            **sampler,
        )
    else:  # nothing left to sample: the conditional draws are the posterior
        check_draw_method(draw_method)
        output = _exact_output(collapsed, arrays, chains, draws, seed)
    interrupt.check()  # before the draws: one compiled call that cannot stop midway
    started = time.perf_counter()
    # the collapsed model's own sites, including what it records for the draws
    own_sites = set(collapsed_info.names("latent")) | set(collapsed_info.names("deterministic"))
    sampled = {k: v for k, v in output.posterior.items() if k in own_sites}
    # a stream of its own, derived without compiling a key operation
    draw_seed = int(np.random.SeedSequence([seed, 7]).generate_state(1)[0])
    drawn = draw(sampled, prng_key(draw_seed), arrays, (chains, draws))
    conditional_seconds = time.perf_counter() - started
    posterior = {**output.posterior, **drawn}
    wanted = [n for n, site in info.sites.items() if site.kind in ("latent", "deterministic")]
    missing = [n for n in wanted if n not in posterior]
    if missing:  # pragma: no cover - a site the collapsed model does not know is a bug
        raise RuntimeError(f"marginalized fit lacks sites {missing}")
    run_info = {
        **output.info,
        "marginalized": list(marginalized),
        **dict(extra_info or {}),
        "conditional_draw_seconds": conditional_seconds,
    }
    return EngineResult(
        model_fn=model_fn,
        data=cleaned,
        info=info,
        data_dims=data_dims,
        posterior={n: np.asarray(posterior[n]) for n in wanted},
        sample_stats=output.sample_stats,
        run_info=run_info,
        seed=seed,
        draws=draws,
    )
