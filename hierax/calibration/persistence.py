"""Calibration models as versioned JSON, as calibr8 stores them.

The file holds the model type, the mean function and noise model, the
parameter names, the fitted values, bounds and guess, the calibration data,
the keys of x and y, the versions and a timestamp. Loading checks the model
type and the major version of the format before reading anything else.
Non-finite numbers are written as ``null`` (JSON has no NaN/inf).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from .._files import atomic_write
from ..errors import FileFormatError, IncompatibleModelError, IncompatibleVersionError
from .mean_functions import MeanFunction, mean_function
from .noise import NoiseModel, noise_model

if TYPE_CHECKING:
    from .model import CalibrationModel

__all__ = ["FORMAT_VERSION", "load_model", "save_model"]

FORMAT_VERSION = "1.0"
_FORMAT_NAME = "hierax.calibration"


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _numbers(values: np.ndarray | None) -> list[float | None] | None:
    return None if values is None else [_number(float(v)) for v in np.asarray(values)]


def _floats(values: Any, infinite: float = math.nan) -> np.ndarray | None:
    if values is None:
        return None
    return np.asarray([infinite if v is None else float(v) for v in values], dtype=float)


def to_dict(cal: CalibrationModel) -> dict[str, Any]:
    """The JSON content of a model (plain Python types only)."""
    bounds = None
    if cal.theta_bounds is not None:
        bounds = [[_number(lo), _number(hi)] for lo, hi in cal.theta_bounds]
    return {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hierax_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model_type": type(cal).__name__,
        "mean_function": cal.mean_function.name,
        "degree": cal.mean_function.degree,
        "noise": cal.noise.name,
        "scale_degree": cal.noise.scale_degree,
        "independent_key": cal.independent_key,
        "dependent_key": cal.dependent_key,
        "theta_names": list(cal.theta_names),
        "theta_fitted": _numbers(cal.theta_fitted),
        "theta_bounds": bounds,
        "theta_guess": _numbers(cal.theta_guess),
        "cal_independent": _numbers(cal.cal_independent),
        "cal_dependent": _numbers(cal.cal_dependent),
    }


def save_model(cal: CalibrationModel, path: str | os.PathLike[str]) -> Path:
    """Write ``cal`` to ``path`` as JSON, atomically (a crash leaves no partial file)."""
    path = Path(path)
    text = json.dumps(to_dict(cal), indent=2, allow_nan=False)
    atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


def _major(version: Any) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def load_model(
    path: str | os.PathLike[str],
    *,
    model_class: type[CalibrationModel] | None = None,
    mean: str | MeanFunction | None = None,
    noise: str | NoiseModel | None = None,
) -> CalibrationModel:
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : path
    model_class : type, optional
        The class to load into (default :class:`CalibrationModel`); the file's
        ``model_type`` must be its name.
    mean, noise : optional
        The mean function and noise model you expect; a custom MeanFunction
        must be given here because code is not stored in the file.

    Raises
    ------
    FileNotFoundError
    FileFormatError
        Not a hierax calibration file.
    IncompatibleVersionError
        Written with another major format version.
    IncompatibleModelError
        The file holds another model type, mean function or noise model.
    """
    from .model import CalibrationModel

    cls = model_class or CalibrationModel
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such calibration file: {str(path)!r}")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{str(path)!r} is not a JSON file ({error}).") from None
    if not isinstance(content, dict) or content.get("format") != _FORMAT_NAME:
        raise FileFormatError(
            f'{str(path)!r} is not a hierax calibration file (no "format": "{_FORMAT_NAME}"); '
            "save calibration models with CalibrationModel.save."
        )
    found = content.get("format_version")
    if _major(found) != _major(FORMAT_VERSION):
        raise IncompatibleVersionError(
            f"{str(path)!r} was written with calibration format version {found!r}; this hierax "
            f"({__version__}) reads major version {_major(FORMAT_VERSION)} (format "
            f"{FORMAT_VERSION}). Refit the calibration, or load it with a matching hierax version."
        )
    if content.get("model_type") != cls.__name__:
        raise IncompatibleModelError(
            f"{str(path)!r} holds a {content.get('model_type')!r}, not a {cls.__name__!r}; load it "
            f"with {content.get('model_type')}.load."
        )
    stored_mean, stored_noise = content.get("mean_function"), content.get("noise")
    stored_degree = content.get("degree")
    if mean is not None:
        expected = (
            mean if isinstance(mean, MeanFunction) else mean_function(mean, stored_degree or 1)
        )
        if expected.name != stored_mean or (
            not isinstance(mean, MeanFunction) and expected.degree != stored_degree
        ):
            raise IncompatibleModelError(
                f"{str(path)!r} holds a {_describe_mean(stored_mean, stored_degree)} calibration, "
                f"not a {_describe_mean(expected.name, expected.degree)} one; load it without "
                "mean=... or pick the matching file."
            )
        mean_fn = expected
    else:
        mean_fn = _builtin_mean(path, stored_mean, stored_degree)
    if noise is not None:
        expected_noise = (
            noise
            if isinstance(noise, NoiseModel)
            else noise_model(noise, int(content.get("scale_degree") or 0))
        )
        if expected_noise.name != stored_noise:
            raise IncompatibleModelError(
                f"{str(path)!r} holds a calibration with {stored_noise!r} noise, not "
                f"{expected_noise.name!r}; load it without noise=... or pick the matching file."
            )
    noise_obj = noise_model(str(stored_noise), int(content.get("scale_degree") or 0))
    bounds = content.get("theta_bounds")
    # subclasses may fix mean and noise in their own __init__: fill the object
    # through the base initialiser with what the file says
    model = cls.__new__(cls)
    CalibrationModel.__init__(
        model,
        mean_fn,
        noise_obj,
        theta_names=content["theta_names"],
        independent_key=content.get("independent_key", "x"),
        dependent_key=content.get("dependent_key", "y"),
        theta_fitted=_floats(content.get("theta_fitted")),
        theta_guess=_floats(content.get("theta_guess")),
        theta_bounds=None
        if bounds is None
        else [
            (-math.inf if lo is None else lo, math.inf if hi is None else hi) for lo, hi in bounds
        ],
        cal_independent=_floats(content.get("cal_independent")),
        cal_dependent=_floats(content.get("cal_dependent")),
    )
    return model


def _describe_mean(name: Any, degree: Any) -> str:
    return f"{name!r}" + (f" (degree {degree})" if degree is not None else "")


def _builtin_mean(path: Path, name: Any, degree: Any) -> MeanFunction:
    from ..errors import ModelError

    try:
        return mean_function(str(name), int(degree) if degree is not None else 1)
    except ModelError:
        raise IncompatibleModelError(
            f"{str(path)!r} uses the custom mean function {name!r}; pass it as "
            f"CalibrationModel.load(path, mean=MeanFunction({name!r}, ...))."
        ) from None
