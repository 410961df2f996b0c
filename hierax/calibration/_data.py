"""Validation of calibration data and of guesses and bounds, outside ``jit``."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import CalibrationWarning, DataError, InitializationError, ModelError, close_matches

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
            f"the model has {n_theta} parameters and needs at least as many points."
        )
    return x_array, y_array


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
