"""Validation of calibration data and of guesses and bounds, outside ``jit``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hierax.errors import (
    CalibrationWarning,
    DataError,
    InitializationError,
    ModelError,
    close_matches,
)

Bounds = (
    Sequence[tuple[float | None, float | None]] | Mapping[str, tuple[float | None, float | None]]
)


def clean_calibration_data(
    x: Any, y: Any, x_name: str = "x", y_name: str = "y", *, n_theta: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """1-D float arrays of equal length with NaN/inf rows masked (with a warning).

    Raises
    ------
    DataError
        When the lengths differ, an input is not 1-D numeric data, or fewer
        finite points remain than there are parameters.
    """
    arrays = []
    for name, values in ((x_name, x), (y_name, y)):
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"calibration column {name!r} holds non-numeric values ({error}); "
                "convert it to numbers first."
            ) from None
        if array.ndim == 2 and 1 in array.shape:  # a single column or row
            array = array.reshape(-1)
        if array.ndim != 1:
            raise DataError(
                f"calibration column {name!r} must be 1-D, got shape {array.shape}; "
                "give one value per calibration point."
            )
        arrays.append(array)
    x_array, y_array = arrays
    if x_array.shape[0] != y_array.shape[0]:
        raise DataError(
            f"the independent variable {x_name!r} has {x_array.shape[0]} values but the dependent "
            f"variable {y_name!r} has {y_array.shape[0]}; give one {y_name!r} per {x_name!r}."
        )
    bad_x, bad_y = ~np.isfinite(x_array), ~np.isfinite(y_array)
    bad = bad_x | bad_y
    if bad.any():
        warnings.warn(
            f"masked {int(bad.sum())} of {bad.size} calibration points with NaN/inf values "
            f"({int(bad_x.sum())} in {x_name!r}, {int(bad_y.sum())} in {y_name!r}; first rows "
            f"{np.flatnonzero(bad)[:5].tolist()}); the fit uses the remaining {int((~bad).sum())}.",
            CalibrationWarning,
            stacklevel=4,
        )
        x_array, y_array = x_array[~bad], y_array[~bad]
    if x_array.size == 0 or x_array.size < n_theta:
        raise DataError(
            f"only {x_array.size} finite calibration point(s) in {x_name!r}/{y_name!r}; "
            f"the model has {n_theta} parameters and needs at least {max(n_theta, 1)} points. "
            "Add calibration points or choose a model with fewer parameters."
        )
    return x_array, y_array


def check_informative(
    x: np.ndarray,
    y: np.ndarray,
    x_name: str,
    y_name: str,
    *,
    mean_names: Sequence[str],
    n_scale: int,
) -> None:
    """Raise :class:`DataError` for calibration data that cannot determine the fit.

    Three conditions make a maximum-likelihood fit meaningless rather than merely
    imprecise, and they are errors, not warnings:

    * fewer distinct ``x`` than the mean function has parameters: the predicted
      means at ``k`` distinct ``x`` are ``k`` numbers, which cannot pin down more
      than ``k`` parameters, so the curvature of the likelihood is singular for
      every data set of this design (all ``x`` equal is the extreme case);
    * fewer distinct ``x`` than a mean-dependent noise scale has coefficients
      (``scale_degree + 1``), for the same reason;
    * all readouts ``y`` equal: nothing changes with ``x``, so there is no curve
      to invert, and a noise scale shrinks to 0 (an unbounded likelihood).

    A fit whose data are merely weak (e.g. a curve seen only on one side of its
    inflection, readouts without noise) is still returned; ``fit_mle`` then warns
    with :class:`~hierax.errors.CalibrationWarning` naming the parameters whose
    standard errors are not finite.

    Parameters
    ----------
    x, y : ndarray
        Cleaned calibration data (finite, equal length).
    x_name, y_name : str
        Names of the variables, for messages.
    mean_names : sequence of str
        Parameters of the mean function.
    n_scale : int
        Coefficients of the noise scale polynomial (0 for a noise model without scale).
    """
    distinct_x = np.unique(x)
    needed = max(len(mean_names), n_scale)
    if distinct_x.size < needed:
        shown = ", ".join(f"{v:g}" for v in distinct_x[:5]) + (
            " ..." if distinct_x.size > 5 else ""
        )
        if len(mean_names) >= n_scale:
            reason = f"the mean function has {len(mean_names)} parameters {list(mean_names)}"
        else:
            reason = f"the noise scale is a polynomial of the mean with {n_scale} coefficients"
        raise DataError(
            f"the independent variable {x_name!r} has {distinct_x.size} distinct value(s) "
            f"({shown}), but {reason}: it needs at least {needed} distinct {x_name!r} values "
            f"to determine them. Measure at more {x_name!r} levels, or choose a model with "
            "fewer parameters."
        )
    if np.unique(y).size < 2:
        raise DataError(
            f"all {y.size} readouts of the dependent variable {y_name!r} equal {y[0]:g}; a "
            f"calibration needs at least 2 distinct {y_name!r} values (readouts that change "
            f"with {x_name!r}). Check that the right column was given."
        )


def theta_vector(
    values: Sequence[float] | Mapping[str, float], names: Sequence[str], what: str
) -> np.ndarray:
    """A float vector in the order of ``names`` from a sequence or a name mapping."""
    if isinstance(values, Mapping):
        unknown = [key for key in values if key not in names]
        if unknown:
            hints = "".join(close_matches(str(k), names) for k in unknown)
            raise ModelError(
                f"{what} names unknown parameter(s) {unknown}; the parameters are "
                f"{list(names)}.{hints}"
            )
        missing = [name for name in names if name not in values]
        if missing:
            raise ModelError(f"{what} lacks the parameter(s) {missing}; give all of {list(names)}.")
        values = [values[name] for name in names]
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size != len(names):
        raise ModelError(
            f"{what} has {array.size} entries but the model has {len(names)} parameters "
            f"{list(names)}."
        )
    return array


def bound_pairs(bounds: Bounds | None, names: Sequence[str]) -> list[tuple[float, float]]:
    """``(lower, upper)`` per parameter with ``None`` as an infinite bound."""
    if bounds is None:
        return [(-math.inf, math.inf)] * len(names)
    if isinstance(bounds, Mapping):
        unknown = [key for key in bounds if key not in names]
        if unknown:
            hints = "".join(close_matches(str(k), names) for k in unknown)
            raise ModelError(
                f"bounds name unknown parameter(s) {unknown}; the parameters are "
                f"{list(names)}.{hints}"
            )
        pairs = [bounds.get(name, (None, None)) for name in names]
    else:
        pairs = list(bounds)
        if len(pairs) != len(names):
            raise ModelError(
                f"bounds has {len(pairs)} (lower, upper) pairs but the model has {len(names)} "
                f"parameters {list(names)}."
            )
    result = []
    for name, pair in zip(names, pairs, strict=True):
        lower, upper = pair
        lower = -math.inf if lower is None else float(lower)
        upper = math.inf if upper is None else float(upper)
        if not lower < upper:
            raise ModelError(
                f"bounds of {name!r} are ({lower}, {upper}); the lower bound must be below the "
                "upper bound."
            )
        result.append((lower, upper))
    return result


def check_guess_inside(
    guess: np.ndarray, bounds: Sequence[tuple[float, float]], names: Sequence[str]
) -> None:
    """Raise :class:`InitializationError` naming each guess outside its bounds."""
    outside = [
        f"{name!r} = {value:g} is outside ({lower:g}, {upper:g})"
        for name, value, (lower, upper) in zip(names, guess, bounds, strict=True)
        if not lower <= value <= upper or not np.isfinite(value)
    ]
    if outside:
        raise InitializationError(
            "the guess is outside the bounds: "
            + "; ".join(outside)
            + ". Move the guess inside the bounds or widen the bounds."
        )
