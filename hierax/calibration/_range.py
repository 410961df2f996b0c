"""What readouts a calibration can produce, and the warnings when inverse prediction
asks about readouts outside that range.

Two questions, one for each kind of inverse prediction:

* ``predict_independent(y)`` inverts the mean function. It extrapolates when the
  answer lies outside the ``x`` range of the calibration data (the curve was
  never checked there), and it has no answer (NaN) when no ``x`` gives the mean
  ``y`` (beyond an asymptote).
* ``infer_independent(y, lower, upper)`` computes a posterior on ``[lower, upper]``.
  When a readout lies outside what the calibration produces anywhere on that
  interval, the likelihood is negligible everywhere and the posterior piles up
  at the end nearest the readout because of the interval, not the data.

"What the calibration produces" is the union over ``x`` of the central
``1 - OUTSIDE_PROBABILITY`` interval of the readout distribution (the noise
model's ``scipy`` quantiles around the mean), evaluated on the inference grid.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from hierax.errors import CalibrationWarning

if TYPE_CHECKING:
    from hierax.calibration.model import CalibrationModel

__all__ = ["OUTSIDE_PROBABILITY", "check_inverse_prediction", "readouts_outside"]

#: A readout with a smaller two-sided tail probability at every x counts as one
#: the calibration does not produce (the normal's +-4.9 sd).
OUTSIDE_PROBABILITY = 1e-6


def _listing(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(f"{v:.6g}" for v in values[:limit])
    return f"[{shown}{', ...' if values.size > limit else ''}]"


def check_inverse_prediction(cal: CalibrationModel, y: Any, x: Any, theta: Any) -> None:
    """Warn when ``x = predict_independent(y)`` has no answer or extrapolates.

    Does nothing inside ``jit`` (traced values cannot be inspected).

    Warns
    -----
    CalibrationWarning
        Naming the readouts without an inverse (NaN results), and the readouts
        whose ``x`` lies outside the calibration data's ``x`` range.
    """
    if isinstance(x, jax.core.Tracer) or isinstance(y, jax.core.Tracer):
        return
    x_values = np.asarray(x, dtype=float)
    y_values = np.broadcast_to(np.asarray(y, dtype=float), x_values.shape)
    x_key, y_key = cal.independent_key, cal.dependent_key
    data_range = _data_range(cal, theta)
    no_inverse = np.isfinite(y_values) & ~np.isfinite(x_values)
    if no_inverse.any():
        known = (
            ""
            if data_range is None
            else f"; over the calibration data ({x_key!r} from {data_range[0]:.6g} to "
            f"{data_range[1]:.6g}) the mean runs from {data_range[2]:.6g} to {data_range[3]:.6g}"
        )
        warnings.warn(
            f"no {x_key!r} gives the mean {y_key!r} = {_listing(y_values[no_inverse])} under the "
            f"{cal.mean_function.name!r} mean function: the readout(s) lie beyond the range of "
            f"the curve (e.g. past an asymptote){known}. predict_independent returns NaN for "
            f"them; use infer_independent(y, lower, upper) for a posterior of {x_key!r} on an "
            "interval, or check the readouts.",
            CalibrationWarning,
            stacklevel=3,
        )
    if data_range is None:
        return  # no calibration data stored (e.g. with_theta): nothing to extrapolate from
    x_min, x_max = data_range[0], data_range[1]
    tolerance = 1e-9 * max(x_max - x_min, abs(x_min), abs(x_max), 1e-300)
    outside = np.isfinite(x_values) & (
        (x_values < x_min - tolerance) | (x_values > x_max + tolerance)
    )
    if outside.any():
        warnings.warn(
            f"predict_independent extrapolates: the readout(s) {_listing(y_values[outside])} of "
            f"{y_key!r} give {x_key!r} = {_listing(x_values[outside])}, outside the calibration "
            f"data's {x_key!r} range [{x_min:.6g}, {x_max:.6g}] (mean {y_key!r} from "
            f"{data_range[2]:.6g} to {data_range[3]:.6g} there), where no data checked the "
            f"{cal.mean_function.name!r} curve. Extend the calibration to cover these readouts, "
            "or treat the values as rough.",
            CalibrationWarning,
            stacklevel=3,
        )


def _data_range(cal: CalibrationModel, theta: Any) -> tuple[float, float, float, float] | None:
    """``(x_min, x_max, mean_min, mean_max)`` over the calibration data, or None."""
    data = cal.cal_independent
    if data is None or data.size == 0 or not np.isfinite(data).any():
        return None
    x_min, x_max = float(np.nanmin(data)), float(np.nanmax(data))
    with np.errstate(invalid="ignore"):
        means = np.asarray(cal.predict_mean(np.array([x_min, x_max]), theta), dtype=float)
    finite = means[np.isfinite(means)]
    if finite.size == 0:
        return x_min, x_max, float("nan"), float("nan")
    return x_min, x_max, float(finite.min()), float(finite.max())


def producible_range(
    cal: CalibrationModel, grid: np.ndarray, theta: Sequence[Any]
) -> tuple[float, float, float, float] | None:
    """``(low, high, mean_min, mean_max)``: the readouts the calibration produces for
    ``x`` on ``grid`` (central ``1 - OUTSIDE_PROBABILITY`` of the noise around the
    mean) and the range of the mean there; None when the noise model has no
    ``scipy`` quantiles or no grid point gives a valid distribution."""
    with np.errstate(all="ignore"):
        params = [np.asarray(p, dtype=float) for p in cal.predict_dependent(grid, theta)]
        try:
            frozen = cal.noise.scipy(params)
        except NotImplementedError:
            return None
        low = np.asarray(frozen.ppf(OUTSIDE_PROBABILITY / 2), dtype=float)
        high = np.asarray(frozen.isf(OUTSIDE_PROBABILITY / 2), dtype=float)
    mean = params[0]
    if not (np.isfinite(low).any() and np.isfinite(high).any() and np.isfinite(mean).any()):
        return None
    return (
        float(np.nanmin(low)),
        float(np.nanmax(high)),
        float(np.nanmin(mean)),
        float(np.nanmax(mean)),
    )


def readouts_outside(
    cal: CalibrationModel,
    readouts: np.ndarray,
    grid: np.ndarray,
    pdf: np.ndarray,
    theta: Sequence[Any],
    single: bool,
) -> np.ndarray:
    """Which cases have a readout outside what the calibration produces on ``grid``;
    warns naming them.

    Parameters
    ----------
    readouts : (case, replicate)
        NaN marks a missing replicate.
    grid : (steps,)
    pdf : (case, steps)
        The posterior density, to say where it piles up.
    theta : sequence
        The parameters used for the inference.
    single : bool
        One case (the warning then does not number cases).

    Returns
    -------
    ndarray of bool (case,)
    """
    produced = producible_range(cal, grid, theta)
    if produced is None:
        return np.zeros(readouts.shape[0], dtype=bool)
    low, high, mean_low, mean_high = produced
    with np.errstate(invalid="ignore"):
        beyond = np.isfinite(readouts) & ((readouts < low) | (readouts > high))
    cases = np.flatnonzero(beyond.any(axis=1))
    if cases.size:
        first = cases[0]
        values = readouts[first][beyond[first]]
        mode = float(grid[int(np.argmax(pdf[first]))])
        which = (
            "" if single else f" of case(s) {cases[:5].tolist()}{' ...' if cases.size > 5 else ''}"
        )
        x_key, y_key = cal.independent_key, cal.dependent_key
        lower, upper = float(grid[0]), float(grid[-1])
        warnings.warn(
            f"the readout(s) {_listing(values)} of {y_key!r}{which} lie outside what this "
            f"calibration produces for {x_key!r} in [{lower:g}, {upper:g}]: readouts from "
            f"{low:.6g} to {high:.6g} (the mean runs from {mean_low:.6g} to {mean_high:.6g}; "
            f"the noise adds its central {(1 - OUTSIDE_PROBABILITY) * 100:g} %). The likelihood "
            "is negligible on the whole interval, so the posterior is shaped by the interval, "
            f"not the data (its mode is at {x_key!r} = {mode:g}): its median and intervals are "
            "no estimate. Check the readouts, or widen [lower, upper] if the curve reaches them "
            "elsewhere. The result's out_of_range marks these cases.",
            CalibrationWarning,
            stacklevel=4,
        )
    return beyond.any(axis=1)
