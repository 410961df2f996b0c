"""Fitting calibration models: starting points, maximum likelihood (local or
global) with JAX gradients and scipy's optimisers, and a Bayesian fit through
the hierax pipeline.

scipy does the optimising (L-BFGS-B, differential evolution); what hierax adds
is exact gradients and curvature from JAX, rescaling every parameter by the
curvature at the start (so parameters of very different scales converge
alike), standard errors from the inverse Hessian, and warnings that name the
parameters that ended on a bound.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy import optimize

from hierax.calibration._data import (
    Bounds,
    bound_pairs,
    check_guess_inside,
    check_informative,
    clean_calibration_data,
    theta_vector,
)
from hierax.calibration.noise import LogNormalNoise, PoissonNoise, StudentTNoise
from hierax.calibration.numpyro_site import calibration_likelihood
from hierax.errors import CalibrationWarning, InitializationError, ModelError
from hierax.results.fit import fit as hx_fit

if TYPE_CHECKING:
    from hierax.calibration.model import CalibrationModel
    from hierax.results.fit import Fit

__all__ = [
    "MLEResult",
    "default_bounds",
    "fit_bayes",
    "fit_mle",
    "initial_guess",
    "maximize_likelihood",
    "resolve_bounds",
]


@dataclass(frozen=True)
class MLEResult:
    """Outcome of a maximum-likelihood fit.

    Attributes
    ----------
    theta : ndarray
        The estimate, in the order of ``theta_names``.
    standard_errors : ndarray
        From the inverse Hessian of the negative log likelihood; NaN where the
        Hessian is not positive definite (the fit then warns with a
        :class:`~hierax.errors.CalibrationWarning` naming these parameters).
    covariance : ndarray
        The inverse Hessian (NaN when unavailable).
    log_likelihood : float
    success : bool
        Whether the optimiser reported convergence.
    message : str
    at_bounds : tuple of str
        Parameters that ended on one of their bounds.
    n_evaluations : int
    method : str
        The optimiser(s) used.
    theta_names : tuple of str
    covariance_method : str
        ``"hessian"`` (the inverse observed information), ``"outer product of
        scores"`` (the BHHH estimate of the information, used for noise models
        whose likelihood is not twice differentiable: Laplace noise has no
        curvature in the location) or ``"unavailable"``.
    """

    theta: np.ndarray
    standard_errors: np.ndarray
    covariance: np.ndarray
    log_likelihood: float
    success: bool
    message: str
    at_bounds: tuple[str, ...] = ()
    n_evaluations: int = 0
    method: str = "L-BFGS-B"
    theta_names: tuple[str, ...] = field(default=())
    covariance_method: str = "hessian"


# ---------------------------------------------------------------- start, bounds
def default_bounds(cal: CalibrationModel) -> list[tuple[float, float]]:
    """Positive scale (when constant) and degrees of freedom; everything else free."""
    noise = cal.noise
    scale = (0.0, math.inf) if noise.scale_degree == 0 else (-math.inf, math.inf)
    return (
        [(-math.inf, math.inf)] * len(cal.mean_theta_names)
        + [scale] * len(noise.scale_names)
        + [(0.0, math.inf)] * len(noise.extra_names)
    )


def resolve_bounds(cal: CalibrationModel, bounds: Bounds | None) -> list[tuple[float, float]]:
    """The user's bounds; parameters they leave out keep :func:`default_bounds`."""
    defaults = default_bounds(cal)
    if bounds is None:
        return defaults
    given = bound_pairs(bounds, cal.theta_names)
    if isinstance(bounds, Mapping):
        return [
            pair if name in bounds else default
            for name, pair, default in zip(cal.theta_names, given, defaults, strict=True)
        ]
    return given


def initial_guess(cal: CalibrationModel, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A starting point from the data: the mean function's heuristic, refined by robust
    least squares, and noise parameters from the residuals."""
    mean_fn = cal.mean_function
    if mean_fn.guess is None:
        raise ModelError(
            f"mean function {mean_fn.name!r} has no automatic guess; give guess=[...] with one "
            f"value per parameter {list(cal.theta_names)}."
        )
    mean_guess = np.asarray(mean_fn.guess(x, y), dtype=float)

    def residuals(theta: jax.Array) -> jax.Array:
        return mean_fn(x, list(theta)) - y

    residual_fn = jax.jit(residuals)
    jacobian = jax.jit(jax.jacfwd(residuals))
    try:
        with np.errstate(all="ignore"):
            refined = optimize.least_squares(
                lambda t: np.asarray(residual_fn(t)),
                mean_guess,
                jac=lambda t: np.asarray(jacobian(t)),
                loss="soft_l1",
                f_scale=max(float(np.std(y)), 1e-12) * 0.1,
                max_nfev=200 * (len(mean_guess) + 1),
            )
        if np.all(np.isfinite(refined.x)) and np.all(np.isfinite(residual_fn(refined.x))):
            mean_guess = refined.x
    except (ValueError, np.linalg.LinAlgError):
        pass  # keep the heuristic; the likelihood fit starts from there
    mu = np.asarray(mean_fn(x, list(mean_guess)))
    positive_mean = isinstance(cal.noise, LogNormalNoise | PoissonNoise)
    if positive_mean and mean_fn.offset_indices and np.min(mu) <= 0:
        # these noise models need a positive mean at every point: lift the curve
        mean_guess = mean_guess.copy()
        mean_guess[list(mean_fn.offset_indices)] += -np.min(mu) + 0.01 * max(np.ptp(y), 1e-6)
        mu = np.asarray(mean_fn(x, list(mean_guess)))
    noise = cal.noise
    noise_guess: list[float] = []
    if not isinstance(noise, PoissonNoise):
        if isinstance(noise, LogNormalNoise):
            usable = (y > 0) & (mu > 0)
            spread = float(np.std(np.log(y[usable]) - np.log(mu[usable]))) if usable.any() else 0.1
        else:
            spread = float(np.std(y - mu))
        spread = spread if np.isfinite(spread) and spread > 0 else max(float(np.std(y)), 1e-3)
        noise_guess = [spread] + [0.0] * noise.scale_degree
    if isinstance(noise, StudentTNoise):
        noise_guess.append(5.0)
    return np.concatenate([mean_guess, np.asarray(noise_guess, dtype=float)])


# --------------------------------------------------------------- the optimiser
def _curvature_scales(hessian: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """1 / sqrt(curvature) per parameter, or the guess's magnitude where that fails."""
    diagonal = np.abs(np.diag(hessian))
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = 1.0 / np.sqrt(diagonal)
    fallback = np.maximum(np.abs(guess), 1.0)
    return np.where(np.isfinite(scales) & (scales > 0), scales, fallback)


def _at_bounds(
    theta: np.ndarray, bounds: Sequence[tuple[float, float]], scales: np.ndarray
) -> list[int]:
    hits = []
    for index, (value, (lower, upper)) in enumerate(zip(theta, bounds, strict=True)):
        tolerance = 1e-6 * (scales[index] + abs(value))
        if abs(value - lower) <= tolerance or abs(value - upper) <= tolerance:
            hits.append(index)
    return hits


def maximize_likelihood(
    log_likelihood: Callable[[jax.Array], jax.Array],
    guess: np.ndarray,
    bounds: Sequence[tuple[float, float]],
    names: Sequence[str],
    *,
    global_search: bool = False,
    seed: int = 0,
    maxiter: int = 5000,
    pointwise_log_likelihood: Callable[[jax.Array], jax.Array] | None = None,
) -> MLEResult:
    """Maximise ``log_likelihood(theta)`` within box ``bounds`` starting from ``guess``.

    With ``global_search`` scipy's differential evolution explores the whole
    box first (all bounds must be finite), then L-BFGS-B polishes its best.
    Warns with :class:`~hierax.errors.CalibrationWarning` when the optimiser
    fails, a parameter ends on a bound, or standard errors are not finite.

    ``pointwise_log_likelihood(theta)``, the per-point log likelihoods, is for
    a likelihood that is not twice differentiable (Laplace noise): the standard
    errors then come from the outer product of its gradients (BHHH) instead of
    the Hessian.
    """
    names = tuple(names)
    negative = jax.jit(lambda t: -log_likelihood(t))
    value_and_grad = jax.jit(jax.value_and_grad(lambda t: -log_likelihood(t)))
    hessian_fn = jax.jit(jax.hessian(lambda t: -log_likelihood(t)))
    start = np.asarray(guess, dtype=float)
    evaluations = 0

    if global_search:
        infinite = [
            n for n, (lo, hi) in zip(names, bounds, strict=True) if not np.isfinite(lo + hi)
        ]
        if infinite:
            raise ModelError(
                f"the global optimiser needs finite bounds for every parameter; {infinite} have "
                "none. Give bounds={name: (lower, upper), ...} for them."
            )
        batched = jax.jit(jax.vmap(negative, in_axes=1))

        def population(thetas: np.ndarray) -> np.ndarray:
            values = np.asarray(batched(jnp.asarray(thetas)))
            return np.where(np.isfinite(values), values, np.inf)

        explored = optimize.differential_evolution(
            population,
            bounds=list(bounds),
            seed=seed,
            polish=False,
            vectorized=True,
            updating="deferred",
            maxiter=1000,
            tol=1e-8,
        )
        evaluations += int(explored.nfev)
        start = np.asarray(explored.x, dtype=float)

    start_value = float(negative(start))
    if not np.isfinite(start_value):
        raise InitializationError(
            "the log likelihood is not finite at the starting point "
            + ", ".join(f"{n}={v:g}" for n, v in zip(names, start, strict=True))
            + "; give a guess under which every calibration point is possible "
            "(e.g. a positive scale, asymptotes beyond the data)."
        )
    scales = _curvature_scales(np.asarray(hessian_fn(start)), start)
    penalty = 1e10 * (1.0 + abs(start_value))

    def scaled_objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient = value_and_grad(jnp.asarray(z * scales))
        value, gradient = float(value), np.asarray(gradient) * scales
        if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
            return penalty, np.zeros_like(z)
        return value, gradient

    scaled_bounds = [(lo / s, hi / s) for (lo, hi), s in zip(bounds, scales, strict=True)]
    result = optimize.minimize(
        scaled_objective,
        start / scales,
        jac=True,
        method="L-BFGS-B",
        bounds=[
            (lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
            for lo, hi in scaled_bounds
        ],
        options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 30},
    )
    evaluations += int(result.nfev)
    method = "differential_evolution + L-BFGS-B" if global_search else "L-BFGS-B"
    theta = np.asarray(result.x, dtype=float) * scales
    # scipy reports "ABNORMAL" when it cannot improve on an optimum reached to
    # machine precision; a vanishing projected gradient means it did converge.
    success = bool(result.success) or _converged(
        value_and_grad, theta, scales, _at_bounds(theta, bounds, scales)
    )
    message = str(result.message)
    if not success:
        # a likelihood with kinks (Laplace noise) stalls gradient methods at the
        # optimum: polish without gradients and trust Powell's convergence test
        polished = optimize.minimize(
            lambda z: scaled_objective(z)[0],
            result.x,
            method="Powell",
            bounds=optimize.Bounds(*np.asarray(scaled_bounds).T),
            options={"maxiter": maxiter, "xtol": 1e-10, "ftol": 1e-14},
        )
        evaluations += int(polished.nfev)
        if polished.fun <= result.fun:
            theta = np.asarray(polished.x, dtype=float) * scales
        success, message, method = (
            bool(polished.success),
            str(polished.message),
            method + " + Powell",
        )
    value = float(negative(theta))
    hessian = np.asarray(hessian_fn(theta))
    covariance, covariance_method = _covariance(hessian, theta, pointwise_log_likelihood)
    errors = np.sqrt(np.clip(np.diag(covariance), 0, None))
    hits = _at_bounds(theta, bounds, scales)
    if not success or not np.isfinite(value):
        warnings.warn(
            f"the maximum-likelihood optimiser did not converge ({message}); the "
            "estimate may be poor. Try a better guess, bounds, or global_search=True.",
            CalibrationWarning,
            stacklevel=4,
        )
    if hits:
        detail = ", ".join(f"{names[i]}={theta[i]:g} on {bounds[i]}" for i in hits)
        warnings.warn(
            f"parameter(s) ended on a bound: {detail}. The optimum may lie beyond it: widen "
            "the bounds or check the model.",
            CalibrationWarning,
            stacklevel=4,
        )
    undetermined = [
        name for name, error in zip(names, errors, strict=True) if not np.isfinite(error)
    ]
    if undetermined:
        on_bound = (
            f", where {[names[i] for i in hits]} sit on a bound (the curvature there is no "
            "basis for standard errors)"
            if hits
            else ""
        )
        warnings.warn(
            f"the standard errors of {undetermined} are not finite: the log likelihood is not "
            f"curved downward at the estimate{_flat_directions(hessian, names)}{on_bound}, so the "
            "data do not "
            "determine these parameters (e.g. a parameter the curve hardly depends on over the "
            "data, or readouts without noise). The estimate may still describe the data; for uncertainties "
            "add calibration points where the curve changes, bound the parameters, or use "
            "fit_bayes with priors.",
            CalibrationWarning,
            stacklevel=4,
        )
    return MLEResult(
        theta=theta,
        standard_errors=errors,
        covariance=covariance,
        log_likelihood=-value,
        success=success,
        message=message,
        at_bounds=tuple(names[i] for i in hits),
        n_evaluations=evaluations,
        method=method,
        theta_names=names,
        covariance_method=covariance_method,
    )


def _inverse_if_positive_definite(matrix: np.ndarray) -> np.ndarray | None:
    if not np.all(np.isfinite(matrix)):
        return None
    try:
        np.linalg.cholesky(matrix)
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return None
    return inverse if np.all(np.isfinite(inverse)) else None


def _covariance(
    hessian: np.ndarray,
    theta: np.ndarray,
    pointwise_log_likelihood: Callable[[jax.Array], jax.Array] | None,
) -> tuple[np.ndarray, str]:
    """The covariance of the estimate and how it was computed (NaN when unavailable).

    The inverse Hessian of the negative log likelihood (observed information);
    with ``pointwise_log_likelihood``, for a likelihood that is not twice
    differentiable, the inverse of the outer product of the per-point scores
    (BHHH), which is consistent for a correct model.
    """
    n = len(theta)
    if pointwise_log_likelihood is None:
        covariance, method = _inverse_if_positive_definite(hessian), "hessian"
    else:
        scores = np.asarray(jax.jacfwd(pointwise_log_likelihood)(jnp.asarray(theta)))  # (point, p)
        covariance, method = (
            _inverse_if_positive_definite(scores.T @ scores),
            "outer product of scores",
        )
    if covariance is None:
        return np.full((n, n), np.nan), "unavailable"
    return covariance, method


def _flat_directions(hessian: np.ndarray, names: Sequence[str]) -> str:
    """`` (flat along ...)``: the parameters that dominate the directions in which the
    curvature is not positive, or an empty string when it cannot be computed."""
    if not np.all(np.isfinite(hessian)):
        return " (its curvature is not finite there)"
    symmetric = 0.5 * (hessian + hessian.T)
    values, vectors = np.linalg.eigh(symmetric)
    tolerance = 1e-10 * max(float(np.max(np.abs(values))), 1e-300)
    flat = vectors[:, values <= tolerance]  # (parameter, direction)
    if flat.shape[1] == 0:
        return ""
    weights = np.max(np.abs(flat), axis=1)  # (parameter,)
    involved = [name for name, weight in zip(names, weights, strict=True) if weight > 0.3]
    return f" (flat or curved upward along directions dominated by {involved})"


def _converged(
    value_and_grad: Callable[[jax.Array], Any],
    theta: np.ndarray,
    scales: np.ndarray,
    hits: list[int],
) -> bool:
    """Whether the gradient of the free parameters vanishes in curvature units
    (a step of 1e-3 standard errors or less would remain)."""
    value, gradient = value_and_grad(jnp.asarray(theta))
    scaled = np.asarray(gradient) * scales
    free = np.ones(len(theta), dtype=bool)
    free[hits] = False
    return bool(np.isfinite(value) and np.all(np.abs(scaled[free]) < 1e-3))


def fit_mle(
    cal: CalibrationModel,
    x: Any,
    y: Any,
    *,
    guess: Sequence[float] | Mapping[str, float] | None = None,
    bounds: Bounds | None = None,
    global_search: bool = False,
    seed: int = 0,
) -> tuple[MLEResult, np.ndarray, list[tuple[float, float]], np.ndarray, np.ndarray]:
    """Validate data, guess and bounds, then maximise the likelihood.

    Returns the result, the starting point, the bounds and the cleaned data;
    see ``CalibrationModel.fit_mle``.
    """
    x_array, y_array = clean_calibration_data(
        x, y, cal.independent_key, cal.dependent_key, n_theta=cal.n_theta
    )
    check_informative(
        x_array,
        y_array,
        cal.independent_key,
        cal.dependent_key,
        mean_names=cal.mean_theta_names,
        n_scale=len(cal.noise.scale_names),
    )
    box = resolve_bounds(cal, bounds)
    if guess is None:  # the automatic guess is kept inside the box
        start = np.clip(initial_guess(cal, x_array, y_array), *np.asarray(box).T)
    else:
        start = theta_vector(guess, cal.theta_names, "guess")
    check_guess_inside(start, box, cal.theta_names)
    objective = cal.objective(x_array, y_array)
    x_jax, y_jax = jnp.asarray(x_array), jnp.asarray(y_array)
    result = maximize_likelihood(
        lambda theta: -objective(theta),
        start,
        box,
        cal.theta_names,
        global_search=global_search,
        seed=seed,
        pointwise_log_likelihood=None
        if cal.noise.twice_differentiable
        else lambda theta: cal.loglikelihood(y=y_jax, x=x_jax, theta=list(theta), reduce=False),
    )
    return result, start, box, x_array, y_array


# ---------------------------------------------------------------- Bayesian fit
def fit_bayes(
    cal: CalibrationModel,
    x: Any,
    y: Any,
    priors: Mapping[str, Any] | None,
    bounds: Bounds | None,
    **fit_kwargs: Any,
) -> Fit:
    """Posterior over theta with :func:`hierax.fit`; see ``CalibrationModel.fit_bayes``."""
    x, y = clean_calibration_data(x, y, cal.independent_key, cal.dependent_key)

    priors = dict(priors or {})
    unknown = [name for name in priors if name not in cal.theta_names]
    if unknown:
        raise ModelError(
            f"priors name unknown parameter(s) {unknown}; the parameters are {list(cal.theta_names)}."
        )
    chosen: dict[str, Any] = {}
    lacking = []
    for name, (lower, upper) in zip(cal.theta_names, resolve_bounds(cal, bounds), strict=True):
        if name in priors:
            chosen[name] = priors[name]
        elif np.isfinite(lower) and np.isfinite(upper):
            chosen[name] = dist.Uniform(lower, upper)
        else:
            lacking.append(name)
    if lacking:
        raise ModelError(
            f"no prior for {lacking}: give priors={{name: numpyro distribution or fixed value}} "
            "for them, or finite bounds (which mean a uniform prior)."
        )
    point_dim = f"{cal.independent_key}_point"

    def calibration_model(x: jax.Array, y: jax.Array | None = None) -> None:
        theta = [
            numpyro.sample(name, prior) if isinstance(prior, dist.Distribution) else prior
            for name, prior in chosen.items()
        ]
        with numpyro.plate(point_dim, x.shape[0]):
            calibration_likelihood(cal.dependent_key, cal, x, theta, obs=y)

    calibration_model.__name__ = f"calibration_{cal.mean_function.name}_{cal.noise.name}"
    return hx_fit(calibration_model, {"x": x, "y": y}, **fit_kwargs)
