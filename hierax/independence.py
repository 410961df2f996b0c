"""Independence Metropolis-Hastings from a Student-t fitted to the posterior.

For models with a handful of parameters (a collapsed Gaussian model keeps
only group sds, correlations and sigma), NUTS's per-iteration overhead
dominates. Here proposals are drawn from a multivariate Student-t, their log
densities are evaluated in vectorized batches by one compiled program (no
gradients; the mode search takes finite differences of the same program),
and each chain accepts or rejects proposals in turn (independence
Metropolis-Hastings: exact for any proposal that covers the posterior,
efficient when it is close).

The first proposal is a heavy-tailed Student-t at the mode, with the inverse
curvature there as scale, matched to the importance-weighted moments when the
posterior is skewed. Once it covers the posterior (Pareto k of its importance
ratios below 0.5; Vehtari et al., PSIS), a tighter Student-t at the weighted
moments is tried and kept when it is accepted more often and its ratios stay
tame. Chains are thinned where they accept rarely or their draws are worth
little. When k > 0.7, or the acceptance rate is low, the caller falls back to
NUTS.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from . import interrupt
from ._device import prng_key
from .chain_stats import ess_bulk
from .init import per_chain_inits
from .model_info import ModelInfo
from .precondition import STENCIL_MAX_DIM, stencil_derivatives
from .sampling import SamplerOutput, _initial_unconstrained, _precondition, _Unconstrained

__all__ = ["PARETO_K_MAX", "check_draw_method", "run_independence", "sample_collapsed"]

#: Proposals whose importance ratios have a Pareto k above this are not used.
PARETO_K_MAX = 0.7
#: Nor proposals accepted less often than this.
MIN_ACCEPTANCE = 0.25
#: Nor models with more unconstrained parameters than this. Pareto k and the
#: acceptance rate judge the proposal's fit; the cap stops wasted work where a
#: Student-t cannot fit (in many dimensions its weights degrade). The binary-star
#: seed's collapsed model (16 parameters: 14 log periods, their mean and sd) gets
#: k 0.05-0.5 and acceptance 0.68-0.71 (seeds 0-4), and 2-3 times nutpie's effective
#: samples per second.
MAX_DIMENSION = 32
#: Chains accepting less often than this are thinned (by at most MAX_THIN): rejections
#: cluster where the importance ratios have a heavy tail (binary-star seed, acceptance
#: 0.7: min bulk ESS 900 of 4000 draws unthinned, 2100 thinned by 2).
TARGET_ACCEPTANCE = 0.8
MAX_THIN = 8
#: Chains whose kept draws' min bulk ESS is below this share of their number are thinned
#: twice as much (once).
MIN_EFFICIENCY = 0.5
#: Rounds of importance-weighted moment matching before the final proposal.
ADAPTATION_ROUNDS = 2
ADAPTATION_DRAWS = 2000
#: A proposal whose Pareto k on half of ADAPTATION_DRAWS is below this clearly fits: the
#: other half is not drawn (the star cluster: k -0.6), for up to SURE_FIT_MAX_DIM
#: parameters. In more dimensions the tighter proposal's moments need all the draws
#: (binary-star seed, 16 parameters: acceptance 0.64 from 1000 draws' moments, 0.70
#: from 2000).
SURE_FIT = 0.2
SURE_FIT_MAX_DIM = 4
#: The first proposal's scale is inflated by this factor and its degrees of freedom are
#: few: it must cover the posterior.
SCALE = 1.2
DF = 5.0
#: Once a proposal covers the posterior, a tighter one fitted to its importance-weighted
#: moments is tried: a near-Gaussian posterior then accepts most proposals (16
#: dimensions, Gaussian posterior: acceptance 0.46 with the covering Student-t, 0.86
#: with this one). It is used when its Pareto k stays below 0.5 on the trial draws and its
#: estimated acceptance is higher; if its final draws' k then exceeds PARETO_K_MAX, the
#: covering proposal is drawn from instead.
TIGHT_DF = 30.0
TIGHT_SCALE = 1.0
#: Nor is it kept when one of its final draws carries more than this share of the total
#: importance weight: a chain reaching that draw stays there for about share x draws
#: steps. Pareto k can miss a few such outliers (radon seed, 4000 draws: k 0.05, one
#: draw with 2600 times the mean weight, min bulk ESS 7).
MAX_WEIGHT_SHARE = 0.01
#: Draws of the tighter proposal's trial (its Pareto k is checked again on the final draws).
TRIAL_DRAWS = 1000
#: Proposals evaluated together by the one compiled program: a vectorized batch whose
#: intermediates stay in the CPU's cache (the star-cluster model's quadrature holds 32 x
#: 256 values per proposal), yet large enough to pay each operation's overhead rarely
#: (per proposal on the binary-star seed: 100 at once 21 us, 20 at once 29 us, 1000 at
#: once 31 us).
_EVALUATION_BATCH = 100


def _batches(values: np.ndarray) -> list[np.ndarray]:
    """Rows in batches of ``_EVALUATION_BATCH``, the last one padded by repeating its first row."""
    values = np.asarray(values)
    pieces = []
    for start in range(0, len(values), _EVALUATION_BATCH):
        piece = values[start : start + _EVALUATION_BATCH]
        if len(piece) < _EVALUATION_BATCH:
            padding = np.repeat(piece[:1], _EVALUATION_BATCH - len(piece), axis=0)
            piece = np.concatenate([piece, padding])
        pieces.append(piece)
    return pieces


def _student_t_log_density(z: np.ndarray, df: float) -> np.ndarray:
    """Log density of a standard multivariate Student-t at rows of ``z`` (n, d)."""
    d = z.shape[-1]
    return (
        math.lgamma((df + d) / 2)
        - math.lgamma(df / 2)
        - 0.5 * d * math.log(df * math.pi)
        - 0.5 * (df + d) * np.log1p(np.sum(z**2, axis=-1) / df)
    )


@dataclass(frozen=True)
class _Proposal:
    """A multivariate Student-t with location ``mean`` and scale matrix ``(scale chol)(scale chol)'``."""

    mean: np.ndarray
    chol: np.ndarray
    df: float = DF
    scale: float = SCALE

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        # multivariate t: one chi-square mixing variable per draw (not per coordinate).
        # NumPy's generator, not JAX's: these few arrays need no compilation.
        normal = rng.standard_normal((size, self.mean.size))
        chi2 = rng.chisquare(self.df, size)
        t = normal * np.sqrt(self.df / chi2)[:, None]
        return self.mean + self.scale * t @ self.chol.T

    def log_density(self, z: np.ndarray) -> np.ndarray:
        standard = np.linalg.solve(self.chol, (z - self.mean).T).T / self.scale
        log_det = np.sum(np.log(np.diag(self.chol))) + self.mean.size * np.log(self.scale)
        return _student_t_log_density(standard, self.df) - log_det

    @classmethod
    def from_weighted(
        cls, z: np.ndarray, weights: np.ndarray, df: float = DF, scale: float = SCALE
    ) -> _Proposal:
        """Centered at the weighted mean of ``z``, its weighted covariance as scale matrix."""
        weights = weights / weights.sum()
        mean = weights @ z
        centered = z - mean
        cov = (centered * weights[:, None]).T @ centered
        cov += 1e-9 * np.eye(mean.size) * max(1.0, float(np.trace(cov)))
        return cls(mean, np.linalg.cholesky(cov), df, scale)

    def describe(self) -> str:
        return f"multivariate Student-t (df {self.df:g}, scale x{self.scale:g})"


@dataclass(frozen=True)
class _Checked:
    """Proposals drawn and evaluated: their log importance ratios and Pareto k."""

    z: np.ndarray
    log_ratio: np.ndarray
    constrained: dict[str, np.ndarray]
    smoothed: np.ndarray
    pareto_k: float
    log_p: np.ndarray


def _burn_in(log_ratio: np.ndarray, pareto_k: float, longest: int) -> int:
    """Steps for an independence chain to forget its start, at most ``longest``.

    With ratios bounded by ``M`` times their mean, the chain's distance (in total
    variation) from the posterior after ``n`` steps is at most ``(1 - 1/M)^n``
    (Mengersen and Tweedie 1996): the steps that bring it below 1e-3. ``M`` is
    taken from the draws where Pareto k < 0 says the ratios are bounded (their
    largest is then close to the bound); elsewhere ``longest``.
    """
    finite = log_ratio[np.isfinite(log_ratio)]
    if pareto_k >= 0 or finite.size == 0:
        return longest
    weights = np.exp(finite - finite.max())
    bound = 1.0 / float(weights.mean())  # the largest ratio over their mean
    if bound <= 1.0 + 1e-12:
        return min(longest, 1)
    return min(longest, int(np.ceil(np.log(1e-3) / np.log1p(-1.0 / bound))))


def _largest_share(log_ratio: np.ndarray) -> float:
    """The largest importance weight's share of their total."""
    finite = log_ratio[np.isfinite(log_ratio)]
    if finite.size == 0:
        return 1.0
    weights = np.exp(finite - finite.max())
    return float(1.0 / weights.sum())


def expected_acceptance(log_ratio: np.ndarray, log_shift: np.ndarray | None = None) -> float:
    """Independence MH's acceptance rate, estimated from proposals' log importance ratios.

    With ``w = p / q`` at independent draws from ``q``, the rate is
    ``E_{x~p, y~q} min(1, w(y) / w(x))``: self-normalized weights stand in for
    ``x ~ p``, the draws themselves for ``y ~ q``. Sorted by ``w``, the double
    sum is ``Σ_i α_i [Σ_{j>=i} β_j + Σ_{j<i} β_j w_j / w_i]``, with ``α`` the
    weights of ``x`` and ``β`` those of ``y``.

    ``log_shift = log q - log q0`` estimates the rate of a proposal ``q`` from
    draws of another, ``q0``, that covers it (importance weights for both
    ``x`` and ``y``); ``log_ratio`` is then ``log p - log q`` at those draws.
    Draws where the posterior density is zero count as rejected proposals.
    """
    shift = np.zeros_like(log_ratio) if log_shift is None else np.asarray(log_shift)
    order = np.argsort(log_ratio)
    log_w, shift = log_ratio[order], shift[order]
    if not np.any(np.isfinite(log_w)):
        return 0.0
    top = np.max(log_w[np.isfinite(log_w)])
    alpha = np.exp(log_w + shift - np.logaddexp.reduce(log_w + shift))  # x ~ p
    beta = np.exp(shift - np.logaddexp.reduce(shift))  # y ~ q
    at_or_above = np.cumsum(beta[::-1])[::-1]
    below = np.concatenate([[0.0], np.cumsum(beta * np.exp(log_w - top))[:-1]])
    # α_i / w_i = β_i Σβ' / Σα', in the normalizations above, times exp(top)
    scaled = np.exp(shift + top - np.logaddexp.reduce(log_w + shift))
    scaled = np.where(np.isfinite(log_w), scaled, 0.0)
    return float(np.sum(alpha * at_or_above) + np.sum(scaled * below))


#: A point's log density and constrained values (latent and deterministic sites).
PointEvaluation = Callable[[jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def _density_and_sites(
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
    from numpyro import handlers
    from numpyro.distributions.transforms import biject_to
    from numpyro.distributions.util import sum_rightmost
    from numpyro.infer.util import log_density

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


def _host_inverse(transform: Any, value: np.ndarray) -> np.ndarray | None:
    """``transform.inv(value)`` in NumPy for NumPyro's usual bijections, else None.

    Identity, exp, sigmoid and affine maps with concrete parameters (and their
    compositions): the supports of real, positive, bounded and unit-interval
    parameters. Through JAX, inverting the start values would compile a
    program of its own.
    """
    from numpyro.distributions import transforms

    if isinstance(transform, transforms.IndependentTransform):
        return _host_inverse(transform.base_transform, value)
    if isinstance(transform, transforms.ComposeTransform):
        result: np.ndarray | None = value
        for part in reversed(transform.parts):
            result = None if result is None else _host_inverse(part, result)
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


def _flat_layout(
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


def _direct_setup(
    model_fn: Callable[..., Any], data: Mapping[str, Any], init: Mapping[str, Any] | None
) -> tuple[Callable[..., Any], PointEvaluation, np.ndarray, Callable[..., Any]] | None:
    """Potential, constrained values and a start without running the model outside ``jit``.

    NumPyro's set-up (``initialize_model``) runs the model and searches for a
    valid start primitive by primitive, which compiles each primitive on its
    own. A collapsed model has only continuous hyperparameters: the shapes come
    from an abstract trace, the start is 0 on the unconstrained scale (sds and
    sigma 1, correlations 0) or the given values, and NumPyro's public
    ``potential_energy`` and the transforms of :func:`_density_and_sites` run
    inside the compiled functions. Returns the potential, a point's log density
    and constrained values, the start and the unravelling function, or None
    where this does not apply.
    """
    from numpyro.distributions.transforms import biject_to
    from numpyro.infer.util import potential_energy, unconstrain_fn

    from .model_info import trace_model

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
    ravel, unravel = _flat_layout(shapes)
    start = ravel(dict.fromkeys(shapes, 0.0))
    if init:
        given = {k: np.asarray(v) for k, v in init.items() if k in shapes}
        inverses = {
            k: _host_inverse(biject_to(trace[k]["fn"].support), v) for k, v in given.items()
        }
        if all(value is not None for value in inverses.values()):
            unconstrained: Mapping[str, Any] = inverses
        else:  # a support with a parameter-dependent bound: through the model
            unconstrained = jax.jit(lambda values: unconstrain_fn(model_fn, (), kwargs, values))(
                given
            )
        start = ravel({name: unconstrained.get(name, 0.0) for name in shapes})

    def potential(params: Any) -> jax.Array:
        return potential_energy(model_fn, (), kwargs, params)

    density_and_sites = _density_and_sites(model_fn, kwargs)

    def point(flat: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return density_and_sites(unravel(flat))  # type: ignore[no-any-return]

    return potential, point, start[None, :], unravel


def _independence_chains(
    log_ratio: np.ndarray, uniforms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Run independence MH on precomputed log ratios (chains, steps).

    Returns the index of the state held after each step and the acceptance
    probability of each step. Each step depends on the last, so the loop runs
    on Python floats: NumPy's per-call overhead on a handful of chains costs
    more than the arithmetic (4 chains x 4100 steps: 15 ms against 1.6 ms).
    """
    chains, steps = log_ratio.shape
    held = np.zeros((chains, steps), dtype=np.int64)
    for chain in range(chains):
        interrupt.check()
        ratios, draws = log_ratio[chain].tolist(), uniforms[chain].tolist()
        states = [0] * steps
        current, current_ratio = 0, ratios[0]
        for step in range(1, steps):
            change = ratios[step] - current_ratio
            # accepted when u < exp(min(0, change)); a NaN change (both ratios -inf) rejects
            if change >= 0.0 or draws[step] < math.exp(change):
                current, current_ratio = step, ratios[step]
            states[step] = current
        held[chain] = states
    previous = np.concatenate([np.zeros((chains, 1), dtype=np.int64), held[:, :-1]], axis=1)
    with np.errstate(invalid="ignore"):  # -inf - -inf: NaN, a rejected step
        change = log_ratio - np.take_along_axis(log_ratio, previous, axis=1)
        accept_prob = np.exp(np.minimum(0.0, change))
    accept_prob[:, 0] = 1.0
    return held, accept_prob


def _batch_evaluator(
    point: PointEvaluation, dim: int
) -> tuple[Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]], float]:
    """Log densities and constrained values of any number of points, and its compile time.

    One program, compiled ahead of time for a batch of ``_EVALUATION_BATCH``
    points, serves the mode search (finite differences, see
    :func:`hierax.precondition.stencil_derivatives`) and the proposals alike.
    """
    started = time.perf_counter()
    batch = (
        jax.jit(jax.vmap(point))
        .lower(jax.ShapeDtypeStruct((_EVALUATION_BATCH, dim), jnp.result_type(float)))
        .compile()
    )
    compile_seconds = time.perf_counter() - started

    def evaluate(u: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        pieces = []
        for piece in _batches(u):
            interrupt.check()
            pieces.append(batch(piece))
        log_p = np.concatenate([np.asarray(p[0]) for p in pieces])[: len(u)]
        constrained = {
            name: np.concatenate([np.asarray(p[1][name]) for p in pieces])[: len(u)]
            for name in pieces[0][1]
        }
        return log_p, constrained

    return evaluate, compile_seconds


def _numpyro_point(
    potential_fn: Callable[..., Any], postprocess: Callable[..., Any], unravel: Callable[..., Any]
) -> PointEvaluation:
    """A point's log density and constrained values from NumPyro's own set-up."""

    def point(flat: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        return -potential_fn(unravel(flat)), postprocess(unravel(flat))

    return point


def _stencil(
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]], dim: int
) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """Stencil derivatives from the batch program, for few enough parameters."""
    if dim > STENCIL_MAX_DIM:
        return None  # a gradient program: 2 d^2 + 1 densities per point cost too much
    return stencil_derivatives(lambda points: evaluate(points)[0], dim)


def run_independence(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    *,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int = 0,
    model_info: ModelInfo,
    init: Mapping[str, Any] | None = None,
) -> SamplerOutput | str:
    """Sample with independence MH from a Student-t at the mode, or say why not.

    Parameters
    ----------
    model_fn, data
        A validated NumPyro model and its data.
    chains, draws
        Chains and retained draws per chain.
    warmup
        Steps discarded at the start of each chain (at most 100 are needed:
        every proposal is already a draw near the posterior).
    init : dict, optional
        Values of (some) sites where the mode search starts.

    Returns
    -------
    SamplerOutput, or a string with the reason to fall back to NUTS.
    """
    inits = per_chain_inits(init, 1, model_info)
    init_key = prng_key(seed)
    proposal_rng, accept_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    started = time.perf_counter()
    direct = _direct_setup(model_fn, data, inits[0] if inits else None)
    if direct is not None:
        potential_fn, point, starts, unravel = direct
    else:
        numpyro_info, starts, unravel = _initial_unconstrained(model_fn, data, inits, 1, init_key)
        potential_fn = numpyro_info.potential_fn
        point = _numpyro_point(potential_fn, numpyro_info.postprocess_fn, unravel)
    dim = starts.shape[1]
    if dim > MAX_DIMENSION:
        return f"{dim} parameters are too many for an independence proposal"

    def search(
        potential_fn: Callable[..., Any], point: PointEvaluation, starts: np.ndarray
    ) -> tuple[Callable[..., Any], float, Any, dict[str, Any]]:
        """The batch program, its compile time, the preconditioner at the mode, details."""
        evaluate, seconds = _batch_evaluator(point, dim)
        preconditioner, _, details = _precondition(
            _Unconstrained(potential_fn, unravel),
            starts,
            "dense",
            init_key,
            finite_differences=True,
            jitter=False,
            derivatives=_stencil(evaluate, dim),
        )
        return evaluate, seconds, preconditioner, details

    evaluate, compile_seconds, preconditioner, details = search(potential_fn, point, starts)
    if direct is not None and not np.isfinite(details.get("mode_log_density", np.nan)):
        # the plain start (all unconstrained values 0) is outside the posterior's
        # support: let NumPyro search for a valid one
        numpyro_info, starts, unravel = _initial_unconstrained(model_fn, data, inits, 1, init_key)
        potential_fn = numpyro_info.potential_fn
        point = _numpyro_point(potential_fn, numpyro_info.postprocess_fn, unravel)
        evaluate, more_seconds, preconditioner, details = search(potential_fn, point, starts)
        compile_seconds += more_seconds
    if not details.get("mode_found"):
        return "no posterior mode with positive definite curvature was found"
    preparation_seconds = time.perf_counter() - started - compile_seconds

    burn = min(int(warmup), 100)
    started = time.perf_counter()

    def log_ratios(z: np.ndarray, proposal: _Proposal) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        log_p, constrained = evaluate(preconditioner.to_unconstrained_numpy(z))
        log_q = proposal.log_density(z)
        return np.where(np.isfinite(log_p), log_p - log_q, -np.inf), constrained

    def checked(proposal: _Proposal, size: int, sure_below: float | None = None) -> _Checked | None:
        """``size`` proposals evaluated, or None where most have no posterior density.

        With ``sure_below``, half of them first: when their Pareto k is already
        below it, the proposal clearly fits and the other half is not drawn.
        """
        if sure_below is not None:
            first = checked(proposal, size // 2)
            if first is None or first.pareto_k < sure_below:
                return first
            rest = checked(proposal, size - size // 2)
            if rest is None:
                return None
            z = np.concatenate([first.z, rest.z])
            log_ratio = np.concatenate([first.log_ratio, rest.log_ratio])
            proposed = {
                k: np.concatenate([v, rest.constrained[k]]) for k, v in first.constrained.items()
            }
        else:
            z = proposal.draw(proposal_rng, size)
            log_ratio, proposed = log_ratios(z, proposal)
        finite = np.isfinite(log_ratio)
        if finite.mean() < 0.5:
            return None
        smoothed, k = az.psislw(np.where(finite, log_ratio, log_ratio[finite].min() - 50.0))
        log_p = log_ratio + proposal.log_density(z)
        return _Checked(z, log_ratio, proposed, smoothed, float(np.asarray(k)), log_p)

    # the Laplace approximation, then importance-weighted moments (adaptive importance
    # sampling) when the posterior is skewed: the proposal must cover the posterior
    proposal = _Proposal(np.zeros(dim), np.eye(dim))
    covering: _Proposal | None = None  # the fitted covering proposal, when a tighter one is tried
    # the last proposals drawn from the proposal in use before the final round: the chains'
    # burn-in comes from them (a chain may start anywhere; only what follows is kept)
    earlier: _Checked | None = None
    covering_check: _Checked | None = None
    round_ = 0
    while True:
        final = round_ == ADAPTATION_ROUNDS
        result = (
            checked(proposal, chains * draws)
            if final
            else checked(
                proposal, ADAPTATION_DRAWS, sure_below=SURE_FIT if dim <= SURE_FIT_MAX_DIM else None
            )
        )
        if result is None:
            return "most proposals fall where the posterior density is zero or undefined"
        z, log_ratio, proposed, pareto_k = (
            result.z,
            result.log_ratio,
            result.constrained,
            result.pareto_k,
        )
        if (
            final
            and covering is not None
            and (pareto_k > PARETO_K_MAX or _largest_share(log_ratio) > MAX_WEIGHT_SHARE)
        ):
            # the tighter proposal's weights have too heavy a tail after all, or a few
            # draws it rarely makes carry much of the posterior: use the covering one
            proposal, covering, earlier = covering, None, covering_check
            continue
        if final:
            break
        earlier = result
        weights = np.exp(result.smoothed - result.smoothed.max())
        if pareto_k >= 0.5:  # a skewed posterior: match the weighted moments and retry
            proposal = _Proposal.from_weighted(z, weights)
            earlier = None
            round_ += 1
            continue
        # the proposal covers the posterior: try a tighter one at the same moments
        tighter = _Proposal.from_weighted(z, weights, TIGHT_DF, TIGHT_SCALE)
        if pareto_k < 0:
            # bounded ratios: these draws cover the tighter proposal too, and estimate
            # its acceptance by reweighting (its Pareto k is checked on the final draws)
            log_tight = tighter.log_density(z)
            better = expected_acceptance(
                result.log_p - log_tight, log_tight - proposal.log_density(z)
            ) > expected_acceptance(log_ratio)
        else:
            trial = checked(tighter, TRIAL_DRAWS)
            better = (
                trial is not None
                and trial.pareto_k < 0.5
                and expected_acceptance(trial.log_ratio) > expected_acceptance(log_ratio)
            )
            earlier = trial if better else earlier
        if better:
            proposal, covering, covering_check = tighter, proposal, result
            if earlier is result:
                # the covering draws serve as burn-in only if none of them is a draw the
                # tighter proposal would rarely make: a chain starting there stays long
                # (radon seeds 1 and 3: min ESS 90 and 7)
                ratio = result.log_p - tighter.log_density(result.z)
                earlier = (
                    _Checked(result.z, ratio, proposed, result.smoothed, pareto_k, result.log_p)
                    if _largest_share(ratio) <= MAX_WEIGHT_SHARE
                    else None
                )
        round_ = ADAPTATION_ROUNDS
    if pareto_k > PARETO_K_MAX:
        return f"the proposal fits poorly (Pareto k {pareto_k:.2f} > {PARETO_K_MAX})"
    # the acceptance rate these proposals would give (no chain needs to run for it)
    acceptance = expected_acceptance(log_ratio)
    if acceptance < MIN_ACCEPTANCE:
        return f"the proposal is accepted too rarely ({acceptance:.2f})"
    # A rarely accepting chain repeats its states: thin it so that each kept draw is
    # worth about one independent draw (proposals are cheap, no gradients)
    thin = int(np.clip(np.ceil(TARGET_ACCEPTANCE / acceptance), 1, MAX_THIN))
    burn = _burn_in(log_ratio, pareto_k, burn)
    if earlier is None or earlier.z.shape[0] < chains * burn:
        extra = checked(proposal, chains * burn) if burn else None
        earlier = extra if extra is not None else earlier
    enough = earlier is not None and earlier.z.shape[0] >= chains * burn
    burn = burn if enough else 0
    fresh = [(z, log_ratio, proposed)]

    def run_chains(
        thin: int,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Each chain: its burn-in, then draws x thin proposals (the proposals are
        independent draws, so any arrangement into chains is valid)."""
        missing = chains * draws * thin - sum(len(part[0]) for part in fresh)
        if missing > 0:
            z_more = proposal.draw(proposal_rng, missing)
            fresh.append((z_more, *log_ratios(z_more, proposal)))

        def arrange(head: np.ndarray | None, pieces: list[np.ndarray]) -> np.ndarray:
            body = np.concatenate(pieces)[: chains * draws * thin]
            body = body.reshape((chains, draws * thin) + body.shape[1:])
            if head is not None and burn:
                head = head[-chains * burn :].reshape((chains, burn) + head.shape[1:])
                body = np.concatenate([head, body], axis=1)
            return body.reshape((-1,) + body.shape[2:])

        head = earlier if burn else None
        all_z = arrange(None if head is None else head.z, [part[0] for part in fresh])
        ratio = arrange(None if head is None else head.log_ratio, [part[1] for part in fresh])
        values = {
            name: arrange(
                None if head is None else head.constrained[name], [part[2][name] for part in fresh]
            )
            for name in fresh[0][2]
        }
        length = burn + draws * thin
        uniforms = accept_rng.uniform(size=(chains, length))
        held, accept_prob = _independence_chains(ratio.reshape(chains, length), uniforms)
        # after the burn-in, every thin-th state
        kept = held[:, burn + thin - 1 :: thin][:, :draws] + (np.arange(chains) * length)[:, None]
        return all_z, ratio, values, accept_prob, kept

    all_z, log_ratio, proposed, accept_prob, kept = run_chains(thin)
    # where rejections cluster (a heavy tail of the ratios), the kept draws are worth
    # less than the acceptance rate suggests: thin more (binary-star seed: min bulk ESS
    # 1190 of 4000 draws thinned by 2, 3200 thinned by 4)
    efficiency = float(np.min(ess_bulk(all_z[kept]))) / (chains * draws)
    if efficiency < MIN_EFFICIENCY and thin < MAX_THIN:
        thin = min(MAX_THIN, 2 * thin)
        all_z, log_ratio, proposed, accept_prob, kept = run_chains(thin)
    acceptance = float(accept_prob[:, burn:].mean())
    log_p = log_ratio + proposal.log_density(all_z)
    constrained = {name: value[kept.reshape(-1)] for name, value in proposed.items()}
    sampling_seconds = time.perf_counter() - started
    posterior = {
        name: np.asarray(value).reshape((chains, draws) + tuple(np.shape(value)[1:]))
        for name, value in constrained.items()
    }
    lp = log_p[kept.reshape(-1)].reshape(chains, draws)
    sample_stats = {
        "diverging": np.zeros((chains, draws), dtype=bool),
        "acceptance_rate": accept_prob[:, burn + thin - 1 :: thin][:, :draws],
        "lp": lp,
    }
    info = {
        "method": "independence_mh",
        "chains": chains,
        "draws": draws,
        "warmup": burn,
        "seed": seed,
        "proposal": f"{proposal.describe()} fitted to the posterior",
        "pareto_k": pareto_k,
        "acceptance_rate": acceptance,
        "thin": thin,
        "preparation_seconds": preparation_seconds,
        "compile_seconds": compile_seconds,
        "sampling_seconds": sampling_seconds,
        "precondition": details,
    }
    return SamplerOutput(posterior, sample_stats, info)


def check_draw_method(draw_method: str) -> None:
    """Raise :class:`~hierax.errors.ModelError` unless ``draw_method`` is a known one."""
    from .errors import ModelError

    if draw_method not in ("auto", "nuts", "independence"):
        raise ModelError(
            f"draw_method must be 'auto', 'nuts' or 'independence', got {draw_method!r}."
        )


def sample_collapsed(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    *,
    model_info: ModelInfo,
    chains: int,
    draws: int,
    warmup: int,
    seed: int,
    init: Any = None,
    draw_method: str = "auto",
    **sampler: Any,
) -> SamplerOutput:
    """Sample a collapsed (marginalized) model: independence MH when it fits, else NUTS.

    ``draw_method``: "auto" tries :func:`run_independence` and falls back to
    NUTS, recording why in ``info["independence_not_used_because"]``;
    "independence" raises :class:`~hierax.errors.ModelError` when its checks
    fail; "nuts" goes straight to NUTS. One dict of initial values starts the
    mode search; per-chain values need NUTS. (A collapsed model with nothing to
    sample never comes here: :func:`hierax.marginal.collapsed.fit_collapsed`
    draws it exactly.)
    """
    from .errors import ModelError
    from .sampling import run_nuts

    check_draw_method(draw_method)
    output: SamplerOutput | str = "NUTS was asked for"
    if draw_method != "nuts":
        if init is None or isinstance(init, Mapping):
            output = run_independence(
                model_fn,
                data,
                chains=chains,
                draws=draws,
                warmup=warmup,
                seed=seed,
                model_info=model_info,
                init=init,
            )
        else:
            output = "per-chain initial values were given"
        if isinstance(output, str) and draw_method == "independence":
            raise ModelError(f"independence sampling is not possible here: {output}.")
    if isinstance(output, str):
        fallback = output
        output = run_nuts(
            model_fn,
            data,
            chains=chains,
            draws=draws,
            warmup=warmup,
            seed=seed,
            init=init,
            model_info=model_info,
            **sampler,
        )
        output.info["method"] = "nuts"
        if draw_method == "auto":
            output.info["independence_not_used_because"] = fallback
    return output
