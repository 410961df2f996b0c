"""Inverse prediction: the posterior of the independent variable given readouts.

For each case (one or several replicate readouts of the same unknown x) the
posterior ``p(x | y) ∝ prior(x) Π_j p(y_j | x)`` is evaluated on a grid over
``[lower, upper]``; many cases are computed at once with ``jax.vmap``.

The grid is read as cells: grid point ``i`` stands for the cell between the
midpoints to its neighbours (the first and last cells end at ``lower`` and
``upper``), whose widths are the trapezoid weights. Every summary is exact for
that piecewise description:

* the density integrates to 1 (trapezoid rule);
* the median and the equal-tailed interval (ETI) come from the trapezoid CDF;
* the highest-density interval (HDI) is the smallest set of cells holding the
  probability: cells sorted by density, taken from the highest until their mass
  reaches it. calibr8 searches the HDI with an optimiser, which can miss it; on a
  grid the answer is exact. For a multimodal posterior the HDI is a union of
  intervals; ``hdi_intervals`` lists them and ``hdi_lower``/``hdi_upper`` give
  their hull.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from hierax.calibration._range import readouts_outside
from hierax.errors import DataError, ModelError

if TYPE_CHECKING:
    from hierax.calibration.model import CalibrationModel

__all__ = [
    "IndependentPosterior",
    "grid_posterior",
    "infer_independent",
    "infer_independent_from_loglik",
]

LogLikelihood = Callable[[jax.Array, jax.Array], jax.Array]  # (y, x) -> elementwise log density


@dataclass(frozen=True)
class IndependentPosterior:
    """Posterior of the independent variable on a grid, for one or many cases.

    Arrays have a leading ``case`` axis when several cases were inferred at
    once and none for a single case.

    Attributes
    ----------
    grid : ndarray (steps,)
    pdf : ndarray ([case,] steps)
        Normalised density at the grid points.
    cdf : ndarray ([case,] steps)
    median, eti_lower, eti_upper : ndarray ([case])
    hdi_lower, hdi_upper : ndarray ([case])
        Hull of the highest-density region.
    hdi_mask : ndarray of bool ([case,] steps)
        The grid cells in the highest-density region.
    hdi_mass : ndarray ([case])
        Probability of the highest-density region (>= ``ci_prob``, by less than
        one cell's mass).
    n_hdi_intervals : ndarray of int ([case])
        Number of disjoint intervals of the highest-density region.
    ci_prob : float
    out_of_range : ndarray of bool ([case])
        Cases with a readout outside what the calibration produces anywhere on
        ``[lower, upper]`` (a :class:`~hierax.errors.CalibrationWarning` names
        them): their posterior sits at an end of the interval because of the
        interval, not the data, so its summaries are no estimate.
    """

    grid: np.ndarray
    edges: np.ndarray
    pdf: np.ndarray
    cdf: np.ndarray
    median: np.ndarray
    eti_lower: np.ndarray
    eti_upper: np.ndarray
    hdi_lower: np.ndarray
    hdi_upper: np.ndarray
    hdi_mask: np.ndarray
    hdi_mass: np.ndarray
    n_hdi_intervals: np.ndarray
    ci_prob: float
    single: bool
    out_of_range: np.ndarray

    @property
    def eti(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` of the equal-tailed interval."""
        return self.eti_lower, self.eti_upper

    @property
    def hdi(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: hull of the highest-density region."""
        return self.hdi_lower, self.hdi_upper

    @property
    def hdi_intervals(self) -> Any:
        """Disjoint intervals of the HDI: a list of ``(lower, upper)`` for a single
        case, a list of such lists for many."""
        masks = np.atleast_2d(self.hdi_mask)
        result = [_runs(mask, self.edges) for mask in masks]
        return result[0] if self.single else result

    @property
    def multimodal(self) -> np.ndarray:
        """Whether the HDI falls apart into more than one interval."""
        return np.asarray(self.n_hdi_intervals) > 1

    def eti_contains(self, x: Any) -> np.ndarray:
        """Whether ``x`` (one value per case) lies in the equal-tailed interval."""
        x = np.asarray(x, dtype=float)
        return (self.eti_lower <= x) & (x <= self.eti_upper)

    def hdi_contains(self, x: Any) -> np.ndarray:
        """Whether ``x`` (one value per case) lies in the highest-density region."""
        x = np.asarray(x, dtype=float)
        cell = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, self.grid.size - 1)
        inside = (x >= self.edges[0]) & (x <= self.edges[-1])
        return (
            np.take_along_axis(np.atleast_2d(self.hdi_mask), np.atleast_1d(cell)[:, None], axis=1)[
                :, 0
            ].reshape(np.shape(x))
            & inside
        )

    def summary(self) -> str:
        """A short text: median, ETI and HDI (with its pieces when multimodal)."""
        percent = f"{self.ci_prob * 100:g} %"
        medians = np.atleast_1d(self.median)
        lowers, uppers = np.atleast_1d(self.eti_lower), np.atleast_1d(self.eti_upper)
        pieces = [self.hdi_intervals] if self.single else self.hdi_intervals
        flagged = np.atleast_1d(self.out_of_range)
        lines = []
        for case, intervals in enumerate(pieces):
            hdi = " ∪ ".join(f"[{lo:.6g}, {hi:.6g}]" for lo, hi in intervals)
            prefix = "" if self.single else f"case {case}: "
            lines.append(
                f"{prefix}median {medians[case]:.6g}; {percent} ETI "
                f"[{lowers[case]:.6g}, {uppers[case]:.6g}]; {percent} HDI {hdi}"
                + (
                    " (readout outside what the calibration produces on the interval: no estimate)"
                    if flagged[case]
                    else ""
                )
            )
        return "\n".join(lines)


def _runs(mask: np.ndarray, edges: np.ndarray) -> list[tuple[float, float]]:
    """Contiguous runs of True cells as ``(lower edge, upper edge)``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    change = np.diff(padded)
    starts, stops = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    return [(float(edges[a]), float(edges[b])) for a, b in zip(starts, stops, strict=True)]


def cell_edges(grid: jax.Array) -> jax.Array:
    """Cell boundaries: ``grid[0]``, the midpoints, ``grid[-1]`` (steps + 1 values)."""
    return jnp.concatenate([grid[:1], 0.5 * (grid[1:] + grid[:-1]), grid[-1:]])


def grid_posterior(log_density: jax.Array, grid: jax.Array, ci_prob: float) -> dict[str, jax.Array]:
    """Summaries of one unnormalised log density on a grid (pure, vmappable).

    Parameters
    ----------
    log_density : (steps,)
    grid : (steps,) increasing
    ci_prob : float
    """
    edges = cell_edges(grid)
    widths = jnp.diff(edges)  # trapezoid weights, (steps,)
    shifted = jnp.exp(log_density - jnp.max(log_density))
    pdf = shifted / jnp.sum(shifted * widths)
    # trapezoid CDF at the grid points
    cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * jnp.diff(grid))])
    quantiles = jnp.interp(jnp.array([0.5, (1 - ci_prob) / 2, (1 + ci_prob) / 2]), cdf, grid)
    # exact HDI on the cells: highest densities first until the mass reaches ci_prob
    mass = pdf * widths
    order = jnp.argsort(-pdf)
    cumulative = jnp.cumsum(mass[order])
    last = jnp.minimum(jnp.searchsorted(cumulative, ci_prob), grid.shape[0] - 1)
    threshold = pdf[order][last]
    mask = pdf >= threshold
    indices = jnp.arange(grid.shape[0])
    first_cell = jnp.min(jnp.where(mask, indices, grid.shape[0]))
    last_cell = jnp.max(jnp.where(mask, indices, -1))
    starts = mask & ~jnp.concatenate([jnp.zeros(1, dtype=bool), mask[:-1]])
    return {
        "pdf": pdf,
        "cdf": cdf,
        "median": quantiles[0],
        "eti_lower": quantiles[1],
        "eti_upper": quantiles[2],
        "hdi_lower": edges[first_cell],
        "hdi_upper": edges[last_cell + 1],
        "hdi_mask": mask,
        "hdi_mass": jnp.sum(jnp.where(mask, mass, 0.0)),
        "n_hdi_intervals": jnp.sum(starts),
    }


def infer_independent_from_loglik(
    log_likelihood: LogLikelihood,
    y: Any,
    lower: float,
    upper: float,
    *,
    steps: int = 1000,
    ci_prob: float = 0.95,
    log_prior: Callable[[jax.Array], jax.Array] | None = None,
) -> IndependentPosterior:
    """Grid posterior of x for each row of readouts ``y``.

    Parameters
    ----------
    log_likelihood : callable
        ``log_likelihood(y, x)``: elementwise log density of readouts ``y`` at
        independent values ``x`` (broadcasting).
    y : float, 1-D or 2-D array
        A float or a 1-D array: replicate readouts of one unknown x. A 2-D array
        ``(case, replicate)``: one row per unknown; pad rows with fewer
        replicates with NaN.
    lower, upper : float
        The interval of the uniform prior (and of the grid).
    steps : int
        Number of grid points.
    ci_prob : float
        Probability of the intervals.
    log_prior : callable, optional
        Log prior density of x (up to a constant) on the grid; uniform if omitted.
    """
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise ModelError(
            f"infer_independent needs finite lower < upper, got lower={lower}, upper={upper}."
        )
    if not 0 < ci_prob < 1:
        raise ModelError(f"ci_prob must be between 0 and 1, got {ci_prob}.")
    if int(steps) < 3:
        raise ModelError(f"steps must be at least 3, got {steps}.")
    readouts, single = readout_matrix(y)
    grid = jnp.linspace(float(lower), float(upper), int(steps))
    prior = jnp.zeros_like(grid)
    if log_prior is not None:
        prior = jnp.broadcast_to(jnp.asarray(log_prior(grid), dtype=grid.dtype), grid.shape)

    def one_case(row: jax.Array) -> dict[str, jax.Array]:
        present = jnp.isfinite(row)
        pointwise = log_likelihood(jnp.where(present, row, 0.0)[None, :], grid[:, None])
        log_density = prior + jnp.sum(jnp.where(present[None, :], pointwise, 0.0), axis=1)
        return grid_posterior(log_density, grid, ci_prob) | {"peak": jnp.max(log_density)}

    results = {
        k: np.asarray(v) for k, v in jax.jit(jax.vmap(one_case))(jnp.asarray(readouts)).items()
    }
    impossible = ~np.isfinite(results.pop("peak"))
    if impossible.any():
        rows = np.flatnonzero(impossible)[:5].tolist()
        raise DataError(
            f"the readouts of case(s) {rows} ({readouts[rows[0]][np.isfinite(readouts[rows[0]])].tolist()}"
            f"{' ...' if len(rows) > 1 else ''}) are impossible for every x in [{lower}, {upper}] "
            "under this calibration; widen the interval or check the readouts."
        )
    if single:
        results = {k: v[0] for k, v in results.items()}
    grid_np = np.asarray(grid)
    return IndependentPosterior(
        grid=grid_np,
        edges=np.asarray(cell_edges(grid)),
        ci_prob=float(ci_prob),
        single=single,
        out_of_range=np.zeros((), bool) if single else np.zeros(readouts.shape[0], bool),
        **results,
    )


def readout_matrix(y: Any) -> tuple[np.ndarray, bool]:
    """Readouts as a ``(case, replicate)`` float array, and whether ``y`` was one case.

    Raises
    ------
    DataError
        For non-numeric readouts, more than 2 dimensions, or a case without any
        finite readout.
    """
    try:
        readouts = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as error:
        raise DataError(
            f"readouts y must be numbers ({error}); give a number, a 1-D array of replicates "
            "or a 2-D (case, replicate) array."
        ) from None
    single = readouts.ndim <= 1
    if readouts.ndim > 2:
        raise DataError(
            f"readouts y must be a number, a 1-D array of replicates or a 2-D (case, replicate) "
            f"array; got shape {readouts.shape}."
        )
    readouts = readouts.reshape(1, -1) if single else readouts
    empty = ~np.isfinite(readouts).any(axis=1)
    if readouts.size == 0 or empty.any():
        rows = np.flatnonzero(empty)[:5].tolist()
        raise DataError(
            f"case(s) {rows} of the readouts y have no finite value; give at least one readout "
            "per case (NaN marks a missing replicate)."
        )
    return readouts, single


def infer_independent(
    cal: CalibrationModel,
    y: Any,
    lower: float,
    upper: float,
    *,
    steps: int = 1000,
    ci_prob: float = 0.95,
    log_prior: Callable[[jax.Array], jax.Array] | None = None,
    theta: Any = None,
) -> IndependentPosterior:
    """Grid posterior of x under a calibration model; see ``CalibrationModel.infer_independent``.

    Cases with a readout outside what the calibration produces on ``[lower, upper]``
    are marked in ``out_of_range`` with a :class:`~hierax.errors.CalibrationWarning`
    (see :mod:`hierax.calibration._range`).
    """
    mean_theta, noise_theta = cal.split_theta(theta)
    entries = [jnp.asarray(t) for t in mean_theta + noise_theta]

    def log_likelihood(y_values: jax.Array, x_values: jax.Array) -> jax.Array:
        return cal.loglikelihood(y=y_values, x=x_values, theta=entries, reduce=False)

    result = infer_independent_from_loglik(
        log_likelihood, y, lower, upper, steps=steps, ci_prob=ci_prob, log_prior=log_prior
    )
    readouts, single = readout_matrix(y)
    outside = readouts_outside(
        cal, readouts, result.grid, np.atleast_2d(result.pdf), entries, single
    )
    return replace(result, out_of_range=outside[0] if single else outside)
