"""Scale-free sampling: an affine change of variables taken from the posterior's curvature.

Why this exists (and is written here rather than taken from NumPyro): NumPyro's
and Stan's mass-matrix adaptation regularise every variance estimate toward an
*absolute* 1e-3. A parameter whose posterior sd is 1e-6 (a binary star's log
period known to a part in a million) then gets a mass matrix that is wrong by
eight orders of magnitude, and NUTS stalls at maximum tree depth. Rescaling the
unconstrained parameters with the curvature at the posterior mode,

    u = center + L z,      L L^T ≈ (-∇² log p(center))^{-1},

makes every direction of ``z`` of unit scale, so the standard adaptation then
works as intended. The map is affine with a constant Jacobian: the posterior
sampled in ``z`` is exactly the posterior, only better conditioned.

Everything here is a pure function of arrays, except :func:`find_mode`, which
drives SciPy's L-BFGS-B with JAX gradients.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jax
import numpy as np
import scipy.linalg
import scipy.optimize

from hierax.core.device import to_device

#: A point's log density and its gradient; points are host arrays (NumPy), results
#: array-like (JAX or NumPy): converting a host point with ``jnp.asarray`` would
#: compile a program of its own, while a compiled function takes NumPy as is.
ValueAndGrad = Callable[[np.ndarray], tuple[Any, Any]]
#: ``-∇² log p`` at a point (host array in, array-like out).
NegativeHessian = Callable[[np.ndarray], Any]

PreconditionKind = Literal["dense", "diag", "identity"]

#: Above this many unconstrained parameters the Hessian is not formed.
MAX_HESSIAN_DIM = 2000
#: Above this many parameters a dense transform is not used (cost per gradient ~ d²).
MAX_DENSE_DIM = 1000
#: ... and not chosen automatically above this many. Beyond it the d² cost of the
#: transform outweighs a typical model's gradient, and the curvature at the mode of a
#: high-dimensional hierarchical posterior (one latent value per star or patient)
#: describes its correlations poorly away from the mode: on the star-cluster seed
#: (258 parameters) the dense transform took 101 leapfrog steps per draw, the
#: diagonal one 22, for 2.5 times the effective samples per second.
AUTO_DENSE_DIM = 64


@dataclass(frozen=True)
class Preconditioner:
    """An affine map between sampler coordinates ``z`` and unconstrained ``u``.

    Attributes
    ----------
    kind : {"dense", "diag", "identity"}
    center : array, shape (d,)
    factor : array, shape (d, d) for "dense", (d,) for "diag" and "identity"
        ``u = center + factor @ z`` (dense) or ``center + factor * z``.
    inverse_factor : array, same shape as ``factor``
        ``z = inverse_factor @ (u - center)`` (dense) or ``(u - center) * inverse_factor``.
    """

    kind: PreconditionKind
    center: jax.Array
    factor: jax.Array
    inverse_factor: jax.Array

    def to_unconstrained(self, z: jax.Array) -> jax.Array:
        """Map sampler coordinates ``(..., d)`` to unconstrained parameters."""
        if self.kind == "dense":
            return self.center + z @ self.factor.T
        return self.center + z * self.factor

    def to_unconstrained_numpy(self, z: np.ndarray) -> np.ndarray:
        """:meth:`to_unconstrained` in NumPy (no JAX dispatch for host-side batches)."""
        center, factor = np.asarray(self.center), np.asarray(self.factor)
        z = np.asarray(z, dtype=np.float64)
        if self.kind == "dense":
            return center + z @ factor.T
        return center + z * factor

    def from_unconstrained(self, u: jax.Array) -> jax.Array:
        """Inverse of :meth:`to_unconstrained`."""
        if self.kind == "dense":
            return (u - self.center) @ self.inverse_factor.T
        return (u - self.center) * self.inverse_factor

    def from_unconstrained_numpy(self, u: np.ndarray) -> np.ndarray:
        """:meth:`from_unconstrained` in NumPy."""
        center, inverse = np.asarray(self.center), np.asarray(self.inverse_factor)
        u = np.asarray(u, dtype=np.float64)
        if self.kind == "dense":
            return (u - center) @ inverse.T
        return (u - center) * inverse

    def describe(self) -> dict[str, object]:
        """Summary for the fit's metadata."""
        scales = (
            np.sqrt(np.sum(np.asarray(self.factor) ** 2, axis=1))
            if self.kind == "dense"
            else np.abs(np.asarray(self.factor))
        )
        return {
            "kind": self.kind,
            "min_scale": float(scales.min()),
            "max_scale": float(scales.max()),
        }


@dataclass(frozen=True)
class ModeResult:
    """Outcome of a mode search."""

    position: np.ndarray
    log_density: float
    success: bool
    message: str


#: A search that stops with every (Jacobi-scaled) gradient entry below this is at the
#: mode: within 1e-4 of a curvature sd of it.
STATIONARY = 1e-4


def find_mode(
    value_and_grad: ValueAndGrad,
    start: np.ndarray,
    *,
    hessian: NegativeHessian | None = None,
    max_iterations: int = 1000,
) -> ModeResult:
    """Maximise a log density from ``start``.

    With ``hessian`` (``-∇² log p``), a trust-region Newton method is used: it is
    invariant to the parameters' scales, which matters when they differ by many
    orders of magnitude. Without it, L-BFGS. The search is reported as failed
    when it does not converge: a common cause is a hierarchical model whose joint
    density has no finite mode (a centered group sd running to zero), in which
    case the caller must not trust the end point.
    """
    start = np.asarray(start, dtype=np.float64)
    hessian_at_start = None
    if hessian is not None:
        hessian_at_start = np.asarray(hessian(start), dtype=np.float64)
    # Jacobi scaling: optimise over y with x = start + scale * y, where scale comes
    # from the curvature at the start, so the problem the optimiser sees has unit
    # diagonal curvature even when the parameters' scales differ by 1e9.
    scale = np.ones_like(start)
    if hessian_at_start is not None:
        diagonal = np.abs(np.diag(hessian_at_start))
        usable = np.isfinite(diagonal) & (diagonal > 0)
        scale = np.where(usable, 1.0 / np.sqrt(np.where(usable, diagonal, 1.0)), 1.0)

    def to_x(y: np.ndarray) -> np.ndarray:
        return start + scale * y

    def negative(y: np.ndarray) -> tuple[float, np.ndarray]:
        raw_value, grad = value_and_grad(to_x(y))
        value = float(raw_value)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(y)
        return -value, -scale * np.asarray(grad, dtype=np.float64)

    origin = np.zeros_like(start)
    start_value, _ = negative(origin)
    if not np.isfinite(start_value):
        return ModeResult(start, -np.inf, False, "log density not finite at the start")
    result = None
    if hessian is not None:

        def negative_hess(y: np.ndarray) -> np.ndarray:
            matrix = np.asarray(hessian(to_x(y)), dtype=np.float64)
            matrix = np.where(np.isfinite(matrix), matrix, 0.0)
            return matrix * np.outer(scale, scale)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                result = scipy.optimize.minimize(
                    negative,
                    origin,
                    jac=True,
                    hess=negative_hess,
                    method="trust-exact",
                    options={"maxiter": max_iterations, "gtol": 1e-6},
                )
            except (np.linalg.LinAlgError, ValueError, UnboundLocalError):
                # UnboundLocalError: scipy's trust-exact subproblem (1.17) reaches its
                # iteration limit without one successful factorization (SBC study,
                # latent path: 1 fit of 200); L-BFGS below takes over
                result = None
        if result is not None and np.isfinite(result.fun) and not result.success:
            if np.max(np.abs(result.jac)) <= STATIONARY:
                # stopped for want of progress at a stationary point: with gradients
                # from finite differences (accurate to about 1e-6) that is the mode
                result.success = True
                result.message = f"stationary (gradient below {STATIONARY:g}): {result.message}"
            elif result.fun <= start_value:
                origin = np.asarray(result.x)  # L-BFGS goes on from there
        if result is not None and not (result.success and np.isfinite(result.fun)):
            result = None
    if result is None:
        result = scipy.optimize.minimize(
            negative,
            origin,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iterations, "maxcor": 20, "gtol": 1e-8, "ftol": 1e-13},
        )
    position = to_x(np.asarray(result.x))
    value = -float(result.fun)
    if not np.isfinite(value) or value < -start_value - 1e-8:
        return ModeResult(start, -start_value, False, "optimiser did not improve on the start")
    return ModeResult(position, value, bool(result.success), str(result.message))


def hessian_function(
    log_density: Callable[[jax.Array], jax.Array], dim: int
) -> Callable[[jax.Array], jax.Array] | None:
    """Jitted ``-∇² log p``, or ``None`` when the dimension is too large to form it."""
    if dim > MAX_HESSIAN_DIM:
        return None
    hess = jax.hessian(log_density)
    return jax.jit(lambda x: -hess(x))


def derivative_functions(
    log_density: Callable[[jax.Array], jax.Array], dim: int
) -> tuple[ValueAndGrad, NegativeHessian | None]:
    """``(value_and_grad, negative_hessian)`` of ``log_density`` from one compiled function.

    A mode search needs all three at the same points; compiling them together
    halves the compilation time. The last point's results are kept, so asking
    for the value and then the Hessian at one point evaluates once. Above
    :data:`MAX_HESSIAN_DIM` only the value and gradient are compiled.
    """
    value_and_grad = jax.value_and_grad(log_density)
    if dim > MAX_HESSIAN_DIM:
        return jax.jit(value_and_grad), None
    hess = jax.hessian(log_density)

    def all_three(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        value, grad = value_and_grad(x)
        return value, grad, -hess(x)

    compiled = jax.jit(all_three)
    last: dict[str, object] = {}

    def evaluate(x: np.ndarray) -> tuple[jax.Array, jax.Array, jax.Array]:
        point = np.asarray(x, dtype=np.float64)
        key = point.tobytes()
        if last.get("key") != key:
            last["key"], last["result"] = key, compiled(point)  # jit takes NumPy as is
        return last["result"]  # type: ignore[return-value]

    def first_two(x: np.ndarray) -> tuple[jax.Array, jax.Array]:
        value, grad, _ = evaluate(x)
        return value, grad

    return first_two, lambda x: evaluate(x)[2]


def finite_difference_derivatives(
    log_density: Callable[[jax.Array], jax.Array],
) -> tuple[ValueAndGrad, NegativeHessian]:
    """``(value_and_grad, negative_hessian)`` with the Hessian from differences of gradients.

    Only the gradient is compiled (a second-order program can take seconds to
    compile: 3.3 s on the collapsed sleep-study model). Each column is a
    central difference of the gradient with a step of 1e-4 of the parameter's
    own scale, taken from a first pass with a step relative to the value:
    parameters whose posterior sds differ by orders of magnitude (a star's log
    period known to 1e-6) each get a step that fits them. Meant for the
    handful of parameters of a collapsed model: 4 d gradients per Hessian.
    """
    value_and_grad: ValueAndGrad = jax.jit(jax.value_and_grad(log_density))

    def gradient(x: np.ndarray) -> np.ndarray:
        return np.asarray(value_and_grad(x)[1], dtype=np.float64)

    def differences(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
        columns = []
        for i, step in enumerate(steps):
            shift = np.zeros_like(x)
            shift[i] = step
            columns.append((gradient(x + shift) - gradient(x - shift)) / (2.0 * step))
        matrix = -np.stack(columns, axis=1)
        return 0.5 * (matrix + matrix.T)

    def negative(x: np.ndarray) -> np.ndarray:
        point = np.asarray(x, dtype=np.float64)
        rough = differences(point, 1e-5 * np.maximum(np.abs(point), 1.0))
        diagonal = np.abs(np.diag(rough))
        scales = np.where(
            np.isfinite(diagonal) & (diagonal > 0), 1.0 / np.sqrt(np.maximum(diagonal, 1e-300)), 1.0
        )
        return differences(point, 1e-4 * np.minimum(scales, 1.0))

    return value_and_grad, negative


#: Up to this many parameters a mode search may take its derivatives from finite
#: differences of log densities alone (2 d^2 + 1 of them per point). The binary-star
#: seed's 16: 11 stencils of 513 densities (0.09 s) against a gradient program's
#: compilation and 384 gradient calls (preparation 0.92 -> 0.40 s in a fresh process).
STENCIL_MAX_DIM = 16


def stencil_derivatives(
    log_densities: Callable[[np.ndarray], np.ndarray], dim: int
) -> tuple[ValueAndGrad, NegativeHessian]:
    """``(value_and_grad, negative_hessian)`` from one batch of log densities per point.

    ``log_densities`` maps points ``(m, dim)`` to their log densities ``(m,)``
    (one compiled, vectorized program: the sampler's own). At each point the
    value, the central-difference gradient and Hessian come from the
    ``2 dim^2 + 1`` points of a second-order stencil, evaluated together, so a
    mode search needs no gradient program: for a collapsed model of a few
    parameters, compiling one costs more than the whole search. The steps
    are 1e-3 of each parameter's curvature sd at the last point (1e-4 of its
    value at the first), where the differences' rounding error (about
    1e-13 / 1e-6 of the curvature) and their truncation error (about 1e-6 of
    it) are both small.
    """
    pairs = [(i, j) for i in range(dim) for j in range(i + 1, dim)]
    signs = np.array([(1, 1), (1, -1), (-1, 1), (-1, -1)], dtype=float)
    state: dict[str, object] = {}

    def steps_at(x: np.ndarray) -> np.ndarray:
        scales = state.get("scales")
        if scales is None:
            return 1e-4 * np.maximum(np.abs(x), 1.0)
        return 1e-3 * np.minimum(np.asarray(scales), np.maximum(np.abs(x), 1.0))

    def evaluate(x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        point = np.asarray(x, dtype=np.float64)
        key = point.tobytes()
        if state.get("key") == key:
            return state["result"]  # type: ignore[return-value]
        h = steps_at(point)
        result = stencil(point, h)
        for _ in range(2):
            # steps of over 1 % of a curvature sd (the first point's, relative to the
            # values: 20 sds for a log period known to 1e-5) measure the curvature
            # elsewhere: again with steps fitted to the new estimate
            scales = state.get("scales")
            if scales is None or not np.any(h > 1e-2 * np.asarray(scales)):
                break
            h = steps_at(point)
            result = stencil(point, h)
        state["key"], state["result"] = key, result
        return result

    def stencil(point: np.ndarray, h: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        eye = np.diag(h)
        points = [point[None, :], point + eye, point - eye]
        for i, j in pairs:
            shift = np.zeros((4, dim))
            shift[:, i] = signs[:, 0] * h[i]
            shift[:, j] = signs[:, 1] * h[j]
            points.append(point + shift)
        values = np.asarray(log_densities(np.concatenate(points)), dtype=np.float64)
        value, plus, minus = values[0], values[1 : 1 + dim], values[1 + dim : 1 + 2 * dim]
        gradient = (plus - minus) / (2.0 * h)
        negative = np.diag(-(plus - 2.0 * value + minus) / h**2)
        corners = values[1 + 2 * dim :].reshape(len(pairs), 4)
        for (i, j), (pp, pm, mp, mm) in zip(pairs, corners, strict=True):
            negative[i, j] = negative[j, i] = -(pp - pm - mp + mm) / (4.0 * h[i] * h[j])
        diagonal = np.diag(negative)
        if np.all(np.isfinite(diagonal)) and np.all(diagonal > 0):
            state["scales"] = 1.0 / np.sqrt(diagonal)
        return value, gradient, negative

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, gradient, _ = evaluate(x)
        return value, gradient

    def negative_hessian_at(x: np.ndarray) -> np.ndarray:
        return evaluate(x)[2]

    return value_and_grad, negative_hessian_at


def negative_hessian(hessian: NegativeHessian | None, position: np.ndarray) -> np.ndarray | None:
    """``-∇² log p`` at ``position`` (symmetrised), or ``None`` when unavailable or not finite."""
    if hessian is None:
        return None
    matrix = np.asarray(hessian(position), dtype=np.float64)
    hessian_matrix = 0.5 * (matrix + matrix.T)
    if not np.all(np.isfinite(hessian_matrix)):
        return None
    return hessian_matrix


def from_curvature(
    center: np.ndarray,
    precision: np.ndarray | None,
    *,
    allow_dense: bool = True,
    max_dense_dim: int = MAX_DENSE_DIM,
    at_mode: bool = True,
    max_scale: float = 10.0,
) -> Preconditioner:
    """Build the affine map from a precision matrix (the negative Hessian).

    A positive-definite precision gives ``L = chol(precision)^{-T}`` (dense) or the
    Laplace marginal sds (diagonal). Otherwise, or when the curvature was not
    taken at a mode (``at_mode=False``), each scale is ``1/sqrt(|H_ii|)``, capped
    at ``max_scale`` so that flat directions are not blown up.
    """
    center = np.asarray(center, dtype=np.float64)
    dim = center.size
    if precision is None:
        ones = to_device(np.ones(dim))
        return Preconditioner("identity", to_device(center), ones, ones)
    positive_definite = False
    if at_mode:
        try:
            cholesky = np.linalg.cholesky(precision)
            positive_definite = bool(np.all(np.isfinite(cholesky)))
        except np.linalg.LinAlgError:
            positive_definite = False
    if positive_definite:
        # L = R^{-T} with precision = R R^T, so L L^T = precision^{-1}.
        factor = scipy.linalg.solve_triangular(cholesky, np.eye(dim), lower=True).T
        if allow_dense and dim <= min(max_dense_dim, MAX_DENSE_DIM) and np.all(np.isfinite(factor)):
            # z = R^T (u - center) inverts u = center + R^{-T} z without a solve.
            return Preconditioner(
                "dense", to_device(center), to_device(factor), to_device(cholesky.T)
            )
        scales = np.sqrt(np.sum(factor**2, axis=1))
    else:
        diagonal = np.abs(np.diag(precision))
        scales = np.where(diagonal > 0, 1.0 / np.sqrt(np.maximum(diagonal, 1e-300)), max_scale)
        # away from a mode, flat directions are not blown up
        scales = np.minimum(scales, max_scale)
    scales = np.where(np.isfinite(scales) & (scales > 0), scales, 1.0)
    return Preconditioner("diag", to_device(center), to_device(scales), to_device(1.0 / scales))
