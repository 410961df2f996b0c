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
posterior draw: from a piecewise-exponential approximation on a grid around
the mode (by inverting its distribution function), corrected by one
Metropolis-Hastings step against the exact density.

Everything here is a pure array function; ``log_integrand`` maps an array of
unconstrained values of shape ``(..., n)`` to the per-row log integrand of the
same shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GRID_POINTS",
    "NODES",
    "conditional_draws",
    "conditional_quantiles",
    "grid_offsets",
    "log_marginal",
    "log_marginal_and_placement",
    "row_modes",
]

#: Gauss-Hermite nodes per row (the outermost lie 10 curvature sds from the mode).
#: On skewed measurement integrals (a star's distance behind a parallax with 40 %
#: error) 16 nodes err by 1e-5 in the log integral, 32 by 8e-8, 64 by 1e-11; on the
#: star-cluster seed (errors of 2-5 %) 12 nodes are already exact to 1e-14. An error
#: of 1e-7 per row, smooth in the parameters, is far below any Monte Carlo error,
#: and 32 nodes evaluate 1.5 times faster than 64.
NODES = 32
#: Grid points per row for the conditional draws' proposal, spread over the mode +-
#: GRID_HALF_WIDTH sds with a sinh spacing (0.33 sd apart at the mode, 2 sd at the ends,
#: where a Gaussian's density is 1e-14 of its peak). Between grid points the log density
#: is taken as linear; one Metropolis-Hastings step against the exact density then
#: corrects the draws (see conditional_draws). On skewed measurement conditionals
#: (parallax errors of 5-80 %) the distribution function of the 20-point grid is within
#: 2.4e-3 to 7.9e-3 of the exact one, that of the corrected draws within 0.9e-4 to
#: 1.2e-3: better than 48 points without the step (4.1e-4 to 1.3e-3), at 0.6 times
#: the cost (16 points err by up to 2.7e-3 after the step, 24 by 5.8e-4).
GRID_POINTS = 20
GRID_HALF_WIDTH = 8.0
#: Metropolis-Hastings steps after the grid draw: each shrinks the error by about the
#: proposal's own (a second step costs as much as 8 more grid points).
CORRECTION_STEPS = 1
#: How strongly the grid concentrates at the mode (``sinh(GRID_BEND * t)``, t in [-1, 1]).
GRID_BEND = 2.65
#: Precision of the draws' arithmetic after the log density (see _grid_density).
WORKING_DTYPE = jnp.float32
#: Below this change of the log density across a cell, its mass and inverse use series.
SERIES_BELOW = 1e-2
NEWTON_STEPS = 40
#: Newton steps stop below this many sds: the mode is then within about its square
#: (1e-3 sd). The quadrature does not need more: its nodes may sit off the mode by a
#: fraction of an sd at no loss (skewed rows with 40 % parallax errors: the same
#: 7.6e-8 error with tolerances from 1e-3 to 0.3), and each step saved is a gradient
#: and curvature of every row (star-cluster seed: 10 % of an evaluation).
NEWTON_TOLERANCE = 3e-2
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
    when every row's last step is below :data:`NEWTON_TOLERANCE` of its sd (the
    next would be about its square: Newton converges quadratically), or after
    ``steps``. The sd comes from the curvature at the last point where it was
    evaluated, within that tolerance of the mode: placing nodes or a grid needs
    no more.
    """

    def newton(u: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        first, second = _derivatives(log_integrand, u)
        concave = second < 0
        delta = jnp.where(concave, -first / jnp.where(concave, second, -1.0), jnp.sign(first))
        delta = jnp.clip(jnp.where(jnp.isfinite(delta), delta, 0.0), -MAX_STEP, MAX_STEP)
        size = jnp.abs(delta) * jnp.sqrt(jnp.where(concave, -second, 1.0))
        return u + delta, jnp.max(size), second

    State = tuple[jax.Array, jax.Array, jax.Array, jax.Array]

    def keep_going(state: State) -> jax.Array:
        _, size, _, count = state
        return (size > NEWTON_TOLERANCE) & (count < steps)

    def step(state: State) -> State:
        u, _, _, count = state
        u, size, second = newton(u)
        return u, size, second, count + 1

    initial = (
        start,
        jnp.asarray(jnp.inf, dtype=start.dtype),
        -jnp.ones_like(start),
        jnp.asarray(0),
    )
    mode, _, second, _ = jax.lax.while_loop(keep_going, step, initial)
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
    return log_marginal_and_placement(log_integrand, start, nodes)[0]


def log_marginal_and_placement(
    log_integrand: LogIntegrand, start: jax.Array, nodes: int = NODES
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`log_marginal`, with each row's mode and curvature sd (the nodes' placement).

    The placement serves the conditional draws afterwards
    (:func:`conditional_quantiles`), which then need no mode search of their own.
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
    return jax.nn.logsumexp(values, axis=0) + jnp.log(np.sqrt(2.0) * scale), mode, scale


def grid_offsets(
    points: int = GRID_POINTS, half_width: float = GRID_HALF_WIDTH, bend: float = GRID_BEND
) -> np.ndarray:
    """Where the draws' grid lies, in curvature sds from the mode: dense at the mode."""
    t = np.linspace(-1.0, 1.0, points)
    return half_width * np.sinh(bend * t) / np.sinh(bend)


@dataclass(frozen=True)
class _GridDensity:
    """Each row's proposal density: its log density linear between grid points.

    Arrays of shape ``(points, n)`` (``grid``, ``log_density``) or
    ``(points - 1, n)`` (per cell: ``slope``, ``mass``, ``upper``, ``width`` in
    sds); ``scale`` is each row's curvature sd. The log density is relative to
    the row's largest grid value and, like the cells, in :data:`WORKING_DTYPE`.
    """

    grid: jax.Array
    scale: jax.Array
    log_density: jax.Array
    slope: jax.Array
    mass: jax.Array
    upper: jax.Array
    width: jax.Array


def _grid_density(
    log_integrand: LogIntegrand,
    mode: jax.Array,
    scale: jax.Array,
    points: int,
    half_width: float,
) -> _GridDensity:
    """The piecewise-exponential density through ``exp(g_i)`` at :func:`grid_offsets`."""
    offsets = grid_offsets(points, half_width)
    grid = mode + scale * jnp.asarray(offsets)[:, None]  # (points, n)
    log_density = log_integrand(grid)
    log_density = jnp.where(jnp.isnan(log_density), -jnp.inf, log_density)
    # below exp(-80) of the peak a point holds no mass; clipping keeps every slope finite.
    # From here on single precision is enough: masses and positions within a cell to
    # about 1e-6, far below what the correction step leaves (and it runs 1.6 times faster)
    log_density = jnp.maximum(log_density - jnp.max(log_density, axis=0), -80.0)
    log_density = log_density.astype(WORKING_DTYPE)
    density = jnp.exp(log_density)
    width = jnp.asarray(np.diff(offsets), dtype=WORKING_DTYPE)[:, None]  # in sds
    slope = log_density[1:] - log_density[:-1]  # change of the log density across each cell
    small = jnp.abs(slope) < SERIES_BELOW
    # mass of a cell whose density goes exponentially from d0 to d1: width (d1 - d0) / slope,
    # by its series where the slope is small (no cancellation)
    mass = width * jnp.where(
        small,
        density[:-1] * (1.0 + slope * (0.5 + slope / 6.0)),
        (density[1:] - density[:-1]) / jnp.where(small, 1.0, slope),
    )
    # mass up to each cell's end: a product with a triangular matrix (a scan compiles
    # slowly and a cumulative sum runs slowly on CPU)
    cells = points - 1
    upper = jnp.asarray(np.tril(np.ones((cells, cells))), dtype=WORKING_DTYPE) @ mass
    return _GridDensity(grid, scale, log_density, slope, mass, upper, width)


def _invert(density: _GridDensity, uniforms: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Quantiles of the grid density at ``uniforms`` (``(..., n)``) and its log density there.

    The cell holding the target mass is found by counting the cells below it
    (no sort, no search); within it, the exponential density's distribution
    function is inverted in closed form. The log density is relative to the
    row's largest grid value, unnormalized.
    """
    upper = density.upper
    target = uniforms.astype(WORKING_DTYPE) * upper[-1]
    cells = upper.shape[0]
    below = upper[:-1].reshape((cells - 1,) + (1,) * (target.ndim - 1) + upper.shape[1:])
    index = jnp.sum(below < target, axis=0)  # the cell holding the target, (..., n)

    # each row's values in its cell, picked by a mask: a gather along the cells runs
    # element by element on CPU, three times slower at this size
    mask = index[None] == jnp.arange(cells).reshape((cells,) + (1,) * index.ndim)

    def cell(values: jax.Array) -> jax.Array:
        values = values[:cells].reshape((cells,) + (1,) * (index.ndim - 1) + values.shape[1:])
        return jnp.sum(jnp.where(mask, values, 0), axis=0)

    cell_mass, cell_slope = cell(density.mass), cell(density.slope)
    fraction = (target - cell(upper) + cell_mass) / jnp.where(cell_mass > 0, cell_mass, 1.0)
    fraction = jnp.clip(fraction, 0.0, 1.0)
    # where in the cell (0 to 1) the exponential density's distribution function reaches
    # the fraction: log1p(f expm1(a)) / a, which cannot overflow (|a| <= 80 after the
    # clipping, expm1(80) < 1e35); for small slopes its series
    # f + a f (1 - f) / 2 + a^2 f (1 - f) (1 - 2 f) / 6
    flat = jnp.abs(cell_slope) < SERIES_BELOW
    a = jnp.where(flat, 1.0, cell_slope)
    exact = jnp.log1p(fraction * jnp.expm1(a)) / a
    spread = fraction * (1.0 - fraction)
    series = fraction + cell_slope * spread * (0.5 + cell_slope * (1.0 - 2.0 * fraction) / 6.0)
    position = jnp.clip(jnp.where(flat, series, exact), 0.0, 1.0)
    log_density = cell(density.log_density) + cell_slope * position
    offset = (position * cell(density.width)).astype(density.grid.dtype)
    return cell(density.grid) + density.scale * offset, log_density


def _placed_grid_density(
    log_integrand: LogIntegrand,
    start: jax.Array,
    points: int,
    half_width: float,
    placement: tuple[jax.Array, jax.Array] | None,
) -> _GridDensity:
    """:func:`_grid_density` at each row's mode and curvature sd: given, or searched."""
    mode, scale = row_modes(log_integrand, start) if placement is None else placement
    return _grid_density(log_integrand, mode, scale, points, half_width)


def conditional_quantiles(
    log_integrand: LogIntegrand,
    start: jax.Array,
    uniforms: jax.Array,
    points: int = GRID_POINTS,
    half_width: float = GRID_HALF_WIDTH,
    placement: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Each row's quantile at ``uniforms`` (shape ``(n,)``) of the grid approximation.

    The approximation of the density ``∝ exp(g_i(u))`` that
    :func:`conditional_draws` proposes from: ``g_i`` is evaluated on
    :func:`grid_offsets` around the mode (in curvature sds) and taken as linear
    between grid points, so that each cell holds an exponential density whose
    mass and inverse distribution function are closed-form. ``placement`` (each
    row's mode and curvature sd, from :func:`log_marginal_and_placement`) saves
    the mode search.
    """
    density = _placed_grid_density(log_integrand, start, points, half_width, placement)
    return _invert(density, uniforms)[0]


def conditional_draws(
    log_integrand: LogIntegrand,
    start: jax.Array,
    key: jax.Array,
    points: int = GRID_POINTS,
    half_width: float = GRID_HALF_WIDTH,
    placement: tuple[jax.Array, jax.Array] | None = None,
    steps: int = CORRECTION_STEPS,
) -> jax.Array:
    """One draw per row from the density proportional to ``exp(g_i(u))``, unconstrained.

    A draw from the grid approximation ``q_i`` (:func:`conditional_quantiles`),
    then independence Metropolis-Hastings steps: a fresh draw of ``q_i`` is
    accepted with probability ``min(1, w(new) / w(current))``, ``w = exp(g_i) / q_i``
    (``steps`` steps). A step leaves the exact conditional invariant and shrinks
    the approximation's error to about its square: on skewed rows (parallax
    errors of 5-80 %) the distribution function of the 20-point grid's draws is
    within 8e-3 of the exact one, after the step within 1.2e-3 (mostly within
    3e-4; the step is accepted 98-99.5 % of the time). Every draw costs the
    same: no draw is rejected outright.
    """
    density = _placed_grid_density(log_integrand, start, points, half_width, placement)
    uniforms = jax.random.uniform(key, (2 * steps + 1,) + jnp.shape(start), dtype=WORKING_DTYPE)
    proposals, log_proposal = _invert(density, uniforms[: steps + 1])
    log_weight = log_integrand(proposals) - log_proposal.astype(proposals.dtype)
    log_weight = jnp.where(jnp.isnan(log_weight), -jnp.inf, log_weight)
    log_uniform = jnp.log(uniforms[steps + 1 :]).astype(proposals.dtype)
    state, state_weight = proposals[0], log_weight[0]
    for step in range(steps):
        # accept where log U < log w(candidate) - log w(state); a state of no density
        # (log w = -inf) is always left, a candidate of none never taken
        accept = log_uniform[step] + state_weight < log_weight[step + 1]
        state = jnp.where(accept, proposals[step + 1], state)
        state_weight = jnp.where(accept, log_weight[step + 1], state_weight)
    return state
