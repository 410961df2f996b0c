"""One-dimensional latent values integrated out per row: adaptive Gauss-Hermite quadrature.

A model with one latent scalar per observation (a star's distance, a
patient's true value behind a noisy measurement) has as many parameters as
rows, yet each row's latent value touches only its own row. Its integral is
one-dimensional:

    log p(y_i | θ) = log ∫ exp(g_i(u)) du,
    g_i(u) = log p(r(u) | θ) + log |r'(u)| + log p(y_i | r(u), θ),

with ``u`` the latent value on the unconstrained scale. Each ``g_i`` is
maximised by a few damped Newton steps (all rows at once: the rows are
independent, so the Hessian is diagonal and one forward-over-reverse pass
gives it), and the integral is taken by Gauss-Hermite quadrature centered at
that mode with the curvature's scale (adaptive Gauss-Hermite, as in
Liu & Pierce 1994 and lme4's ``nAGQ``): exact for a Gaussian ``g``, and
converging fast for the smooth, unimodal integrands of measurement models.
Afterwards each latent value is drawn from its conditional density for every
posterior draw by inverting its cumulative distribution on a fine grid.

Everything here is a pure array function; ``log_integrand`` maps an array of
unconstrained values of shape ``(..., n)`` to the per-row log integrand of the
same shape.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GRID_POINTS",
    "NODES",
    "conditional_draws",
    "log_marginal",
    "row_modes",
]

#: Gauss-Hermite nodes per row (the outermost lie 10.5 curvature sds from the mode).
#: On skewed measurement integrals (a star's distance behind a parallax with 40 %
#: error) 16 nodes err by 1e-5 in the log integral, 32 by 1e-7, 64 by 1e-11.
NODES = 64
#: Grid points per row for the conditional draws, over the mode +- GRID_HALF_WIDTH sds:
#: a spacing of 0.16 sd, where the piecewise-linear density's distribution function
#: is within 5e-4 of a Gaussian's (the Monte Carlo error of 4000 draws' quantiles
#: is about 0.01).
GRID_POINTS = 128
GRID_HALF_WIDTH = 10.0
NEWTON_STEPS = 40
#: Newton steps longer than this (unconstrained units) are cut back: damping far from the mode.
MAX_STEP = 1.0

LogIntegrand = Callable[[jax.Array], jax.Array]


def _derivatives(log_integrand: LogIntegrand, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """First and second derivative of each row's log integrand (rows are independent)."""

    def gradient(v: jax.Array) -> jax.Array:
        return jax.grad(lambda w: jnp.sum(log_integrand(w)))(v)

    first, second = jax.jvp(gradient, (u,), (jnp.ones_like(u),))
    return first, second


def row_modes(
    log_integrand: LogIntegrand, start: jax.Array, steps: int = NEWTON_STEPS
) -> tuple[jax.Array, jax.Array]:
    """Each row's mode and the sd ``1 / sqrt(-g'')`` there, by damped Newton steps.

    Where the curvature is not negative (far from the mode of a log-concave
    tail) the step goes uphill by at most :data:`MAX_STEP`. The search stops
    when every row's last step is below 1e-10 of its sd, or after ``steps``.
    """

    def newton(u: jax.Array) -> tuple[jax.Array, jax.Array]:
        first, second = _derivatives(log_integrand, u)
        concave = second < 0
        delta = jnp.where(concave, -first / jnp.where(concave, second, -1.0), jnp.sign(first))
        delta = jnp.clip(jnp.where(jnp.isfinite(delta), delta, 0.0), -MAX_STEP, MAX_STEP)
        size = jnp.abs(delta) * jnp.sqrt(jnp.where(concave, -second, 1.0))
        return u + delta, jnp.max(size)

    def keep_going(state: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        _, size, count = state
        return (size > 1e-10) & (count < steps)

    def step(
        state: tuple[jax.Array, jax.Array, jax.Array],
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        u, _, count = state
        u, size = newton(u)
        return u, size, count + 1

    mode, _, _ = jax.lax.while_loop(
        keep_going, step, (start, jnp.asarray(jnp.inf, dtype=start.dtype), jnp.asarray(0))
    )
    _, second = _derivatives(log_integrand, mode)
    scale = 1.0 / jnp.sqrt(jnp.where(second < 0, -second, 1.0))
    return mode, scale


def log_marginal(log_integrand: LogIntegrand, start: jax.Array, nodes: int = NODES) -> jax.Array:
    """``log ∫ exp(g_i(u)) du`` for every row ``i``, by adaptive Gauss-Hermite quadrature.

    Parameters
    ----------
    log_integrand : callable
        Unconstrained values ``(..., n)`` -> per-row log integrand ``(..., n)``.
    start : array, shape (n,)
        Where each row's mode search starts.
    nodes : int
        Gauss-Hermite nodes per row.

    Returns
    -------
    array, shape (n,)
    """
    x, w = np.polynomial.hermite.hermgauss(nodes)
    mode, scale = row_modes(log_integrand, start)
    mode, scale = jax.lax.stop_gradient(mode), jax.lax.stop_gradient(scale)
    # the quadrature is a function of θ through g only: the nodes' placement
    # does not change the integral (to quadrature accuracy), so no gradient
    # flows through the mode search
    points = mode + np.sqrt(2.0) * scale * jnp.asarray(x)[:, None]  # (nodes, n)
    values = log_integrand(points) + jnp.asarray(np.log(w) + x**2)[:, None]
    values = jnp.where(jnp.isnan(values), -jnp.inf, values)
    return jax.nn.logsumexp(values, axis=0) + jnp.log(np.sqrt(2.0) * scale)


def conditional_draws(
    log_integrand: LogIntegrand,
    start: jax.Array,
    key: jax.Array,
    points: int = GRID_POINTS,
    half_width: float = GRID_HALF_WIDTH,
) -> jax.Array:
    """One draw per row from the density proportional to ``exp(g_i(u))``, unconstrained.

    The density is evaluated on ``points`` equally spaced values over the
    mode +- ``half_width`` curvature sds; its cumulative distribution (the
    trapezoidal rule) is inverted at a uniform draw, with linear
    interpolation between grid points (the density is piecewise linear).
    """
    mode, scale = row_modes(log_integrand, start)
    offsets = jnp.linspace(-half_width, half_width, points)
    grid = mode + scale * offsets[:, None]  # (points, n)
    log_density = log_integrand(grid)
    log_density = jnp.where(jnp.isnan(log_density), -jnp.inf, log_density)
    density = jnp.exp(log_density - jnp.max(log_density, axis=0))
    pieces = 0.5 * (density[1:] + density[:-1])  # trapezoid masses (points - 1, n)
    cdf = jnp.concatenate([jnp.zeros((1, density.shape[1])), jnp.cumsum(pieces, axis=0)])
    target = jax.random.uniform(key, (density.shape[1],)) * cdf[-1]
    # the interval holding the target, then the exact inverse of the linear density in it
    index = jnp.clip(jax.vmap(jnp.searchsorted, in_axes=(1, 0))(cdf, target) - 1, 0, points - 2)
    rows = jnp.arange(density.shape[1])
    left, right = density[index, rows], density[index + 1, rows]
    remaining = target - cdf[index, rows]
    # mass of [0, t] in a unit interval with density left + (right - left) t:
    # left t + (right - left) t^2 / 2 = remaining
    slope = right - left
    t = jnp.where(
        jnp.abs(slope) > 1e-12 * jnp.maximum(left, right),
        (-left + jnp.sqrt(jnp.maximum(left**2 + 2.0 * slope * remaining, 0.0)))
        / jnp.where(slope == 0, 1.0, slope),
        remaining / jnp.where(left > 0, left, 1.0),
    )
    t = jnp.clip(t, 0.0, 1.0)
    step = grid[1] - grid[0]
    return grid[index, rows] + t * step
