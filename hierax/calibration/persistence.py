"""Calibration models as versioned JSON, as calibr8 stores them.

The file holds the model type, the mean function and noise model, the
parameter names, the fitted values, bounds and guess, the calibration data,
the keys of x and y, the versions and a timestamp. Loading checks the model
type and the major version of the format before reading anything else, and
returns the constructor's arguments: :meth:`CalibrationModel.load` builds the
model (this module never imports it).
Non-finite numbers are written as ``null`` (JSON has no NaN/inf).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hierax.calibration.mean_functions import MEAN_FUNCTIONS, MeanFunction, mean_function
from hierax.calibration.noise import NOISE_MODELS, NoiseModel, noise_model
from hierax.core.files import atomic_write
from hierax.core.version import __version__
from hierax.errors import (
    FileFormatError,
    IncompatibleModelError,
    IncompatibleVersionError,
    close_matches,
)

if TYPE_CHECKING:
    from hierax.calibration.model import CalibrationModel

__all__ = [
    "FORMAT_VERSION",
    "CalibrationFileNotFoundError",
    "read_model",
    "save_model",
    "to_dict",
]

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


class CalibrationFileNotFoundError(FileFormatError, FileNotFoundError):
    """The calibration file does not exist or is a folder.

    Both a :class:`~hierax.errors.FileFormatError` (like every other unreadable
    calibration file) and a :class:`FileNotFoundError` (what Python raises for a
    missing file), so either ``except`` catches it.
    """


#: Every key a file of format 1.x holds (``hierax_version`` and ``created_at``
#: are for people and are not needed to load).
REQUIRED_KEYS = (
    "format",
    "format_version",
    "model_type",
    "mean_function",
    "degree",
    "noise",
    "scale_degree",
    "independent_key",
    "dependent_key",
    "theta_names",
    "theta_fitted",
    "theta_bounds",
    "theta_guess",
    "cal_independent",
    "cal_dependent",
)


class _Content:
    """The parsed JSON object of one file, with typed getters whose errors name the
    file and the key."""

    def __init__(self, path: Path, content: dict[str, Any]) -> None:
        self.path = path
        self.content = content

    def fail(self, key: str, expected: str, value: Any, where: str = "") -> FileFormatError:
        """The error for ``key`` (at ``where`` inside its value) not holding ``expected``."""
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return FileFormatError(
            f"{str(self.path)!r}: the key {key!r}{where} must be {expected}, but it holds {shown}; the "
            "file is damaged or was edited by hand. Save the model again with "
            "CalibrationModel.save."
        )

    def get(self, key: str) -> Any:
        if key not in self.content:
            return self.missing(key)
        return self.content[key]

    def missing(self, key: str) -> Any:
        raise FileFormatError(
            f"{str(self.path)!r} lacks the key {key!r} that every hierax calibration file of "
            f"format {_major(FORMAT_VERSION)}.x holds; the file is damaged or was edited by "
            "hand. Save the model again with CalibrationModel.save."
        )

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty string", value)
        return value

    def count(self, key: str, maximum: int) -> int | None:
        """An integer from 0 to ``maximum``, or null."""
        value = self.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
            raise self.fail(key, f"null or an integer from 0 to {maximum}", value)
        return value

    def names(self, key: str, expected: Sequence[str] | None = None) -> list[str]:
        """A list of distinct names (of the length of ``expected`` when given)."""
        value = self.get(key)
        if (
            not isinstance(value, list)
            or not all(isinstance(name, str) and name for name in value)
            or len(set(value)) != len(value)
        ):
            raise self.fail(key, "a list of distinct non-empty strings", value)
        if expected is not None and len(value) != len(expected):
            raise self.fail(
                key, f"{len(expected)} names, one per parameter {list(expected)}", value
            )
        return value

    def numbers(self, key: str, length: int | None = None) -> np.ndarray | None:
        """Null, or a list of numbers (null for a non-finite value) of ``length``."""
        value = self.get(key)
        if value is None:
            return None
        wanted = "null or a list of numbers" + (f" with {length} entries" if length else "")
        if not isinstance(value, list):
            raise self.fail(key, wanted, value)
        for position, item in enumerate(value):
            if item is not None and (isinstance(item, bool) or not isinstance(item, int | float)):
                raise self.fail(key, "a number or null", item, f" at [{position}]")
        if length is not None and len(value) != length:
            raise self.fail(key, wanted, value)
        return _floats(value)

    def bounds(self, key: str, names: Sequence[str]) -> list[tuple[float, float]] | None:
        """Null, or one ``[lower, upper]`` (null for infinite) per parameter."""
        value = self.get(key)
        if value is None:
            return None
        wanted = f"null or {len(names)} [lower, upper] pairs, one per parameter {list(names)}"
        if not isinstance(value, list) or len(value) != len(names):
            raise self.fail(key, wanted, value)
        pairs = []
        for position, (name, pair) in enumerate(zip(names, value, strict=True)):
            where = f" at [{position}] (parameter {name!r})"
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(key, "a [lower, upper] pair", pair, where)
            ends = []
            for end, infinite in zip(pair, (-math.inf, math.inf), strict=True):
                if end is None:
                    ends.append(infinite)
                elif isinstance(end, bool) or not isinstance(end, int | float) or math.isnan(end):
                    raise self.fail(key, "two numbers (null for no bound)", pair, where)
                else:
                    ends.append(float(end))
            if not ends[0] < ends[1]:
                raise self.fail(key, "a pair with lower < upper", pair, where)
            pairs.append((ends[0], ends[1]))
        return pairs


def _read_json(path: Path) -> Any:
    if not path.exists() or path.is_dir():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CalibrationFileNotFoundError(f"the calibration file {str(path)!r} {what}.")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise FileFormatError(
            f"{str(path)!r} is not a JSON file ({reason}); give a calibration written by "
            "CalibrationModel.save or 'hierax calibrate'."
        ) from None


def read_model(
    path: str | os.PathLike[str],
    *,
    model_type: str = "CalibrationModel",
    mean: str | MeanFunction | None = None,
    noise: str | NoiseModel | None = None,
) -> dict[str, Any]:
    """Read a file written by :func:`save_model` into the keyword arguments of
    ``CalibrationModel.__init__`` (``CalibrationModel.load`` builds the model).

    Every key is checked for its type and length before anything is built, so
    a damaged or hand-edited file gives an error that names the file and the
    key. Loading never imports code: the mean function and noise model are
    looked up among the built-in ones by name, and custom ones must be passed.

    Parameters
    ----------
    path : path
    model_type : str
        The class name the file's ``model_type`` must be.
    mean, noise : optional
        The mean function and noise model you expect; a custom MeanFunction or
        NoiseModel must be given here because code is not stored in the file.

    Raises
    ------
    CalibrationFileNotFoundError
        The file does not exist or is a folder (a FileFormatError and a
        FileNotFoundError).
    FileFormatError
        Not a JSON object of a hierax calibration file, or a key is missing or
        holds a value of the wrong type or length.
    IncompatibleVersionError
        Written with another major format version.
    IncompatibleModelError
        The file holds another model type, or a mean function or noise model
        that is not the expected one or not built in.
    """
    path = Path(path)
    content = _read_json(path)
    if not isinstance(content, dict) or content.get("format") != _FORMAT_NAME:
        found = (
            ""
            if isinstance(content, dict)
            else f"it holds a JSON {_json_type(content)}, not an object; "
        )
        raise FileFormatError(
            f'{str(path)!r} is not a hierax calibration file ({found}no "format": '
            f'"{_FORMAT_NAME}"); save calibration models with CalibrationModel.save.'
        )
    data = _Content(path, content)
    found_version = data.get("format_version")
    if not isinstance(found_version, str | int | float) or isinstance(found_version, bool):
        raise data.fail("format_version", 'a version string such as "1.0"', found_version)
    if _major(found_version) != _major(FORMAT_VERSION):
        raise IncompatibleVersionError(
            f"{str(path)!r} was written with calibration format version {found_version!r}; this "
            f"hierax ({__version__}) reads major version {_major(FORMAT_VERSION)} (format "
            f"{FORMAT_VERSION}). Refit the calibration, or load it with a matching hierax version."
        )
    stored_type = data.string("model_type")
    if stored_type != model_type:
        raise IncompatibleModelError(
            f"{str(path)!r} holds a {stored_type!r}, not a {model_type!r}; load it "
            f"with {stored_type}.load."
        )
    # a degree gives one parameter per coefficient: bound it by the names (with room
    # for a mismatch to be blamed on the names) before building anything that large
    max_degree = max(len(data.names("theta_names")), 64)
    mean_fn = _mean_of(data, mean, max_degree)
    noise_obj = _noise_of(data, noise, max_degree)
    names = data.names("theta_names", mean_fn.theta_names + noise_obj.theta_names)
    n_theta = len(names)
    x_data = data.numbers("cal_independent")
    y_data = data.numbers("cal_dependent", None if x_data is None else x_data.size)
    if (x_data is None) != (y_data is None):
        raise data.fail(
            "cal_dependent",
            "null exactly when 'cal_independent' is null",
            content["cal_dependent"],
        )
    return {
        "mean": mean_fn,
        "noise": noise_obj,
        "theta_names": names,
        "independent_key": data.string("independent_key"),
        "dependent_key": data.string("dependent_key"),
        "theta_fitted": data.numbers("theta_fitted", n_theta),
        "theta_guess": data.numbers("theta_guess", n_theta),
        "theta_bounds": data.bounds("theta_bounds", names),
        "cal_independent": x_data,
        "cal_dependent": y_data,
    }


def _json_type(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _mean_of(data: _Content, mean: str | MeanFunction | None, max_degree: int) -> MeanFunction:
    """The mean function the file names: the expected one, checked, or a built-in one."""
    stored = data.string("mean_function")
    degree = data.count("degree", max_degree)
    path = str(data.path)
    if isinstance(mean, MeanFunction):
        if mean.name != stored:
            raise IncompatibleModelError(
                f"{path!r} holds a {_describe_mean(stored, degree)} calibration, not a "
                f"{mean.name!r} one; pass the MeanFunction named {stored!r} or pick the matching "
                "file."
            )
        return mean
    if mean is None and stored not in MEAN_FUNCTIONS:
        raise IncompatibleModelError(
            f"{path!r} uses the custom mean function {stored!r} (key 'mean_function'), not a "
            f"built-in one ({list(MEAN_FUNCTIONS)}); code is never loaded from a file, so pass "
            f"it as CalibrationModel.load(path, mean=MeanFunction({stored!r}, ...))."
            f"{close_matches(stored, MEAN_FUNCTIONS)}"
        )
    if stored == "polynomial" and degree is None:
        raise data.fail("degree", "the polynomial's degree (an integer >= 0)", degree)
    if stored in MEAN_FUNCTIONS and stored != "polynomial" and degree is not None:
        raise data.fail("degree", f"null for the {stored!r} mean function", degree)
    if mean is not None:
        expected = mean_function(mean, degree if degree is not None else 1)
        if expected.name != stored or expected.degree != degree:
            raise IncompatibleModelError(
                f"{path!r} holds a {_describe_mean(stored, degree)} calibration, "
                f"not a {_describe_mean(expected.name, expected.degree)} one; load it without "
                "mean=... or pick the matching file."
            )
        return expected
    return mean_function(stored, degree if degree is not None else 1)


def _noise_of(data: _Content, noise: str | NoiseModel | None, max_degree: int) -> NoiseModel:
    """The noise model the file names: the expected one, checked, or a built-in one."""
    stored = data.string("noise")
    scale_degree = data.count("scale_degree", max_degree) or 0
    path = str(data.path)
    if isinstance(noise, NoiseModel):
        if noise.name != stored or (noise.scale_names and noise.scale_degree != scale_degree):
            raise IncompatibleModelError(
                f"{path!r} holds a calibration with {stored!r} noise (scale_degree "
                f"{scale_degree}), not {noise.name!r} (scale_degree {noise.scale_degree}); pass "
                "the matching NoiseModel or pick the matching file."
            )
        return noise
    if noise is not None:
        expected = noise_model(noise, scale_degree)
        if expected.name != stored:
            raise IncompatibleModelError(
                f"{path!r} holds a calibration with {stored!r} noise, not {expected.name!r}; "
                "load it without noise=... or pick the matching file."
            )
        return expected
    if stored not in NOISE_MODELS:
        raise IncompatibleModelError(
            f"{path!r} uses the custom noise model {stored!r} (key 'noise'), not a built-in one "
            f"({list(NOISE_MODELS)}); code is never loaded from a file, so pass it as "
            f"CalibrationModel.load(path, noise=YourNoiseModel(...)).{close_matches(stored, NOISE_MODELS)}"
        )
    return noise_model(stored, scale_degree)


def _describe_mean(name: Any, degree: Any) -> str:
    return f"{name!r}" + (f" (degree {degree})" if degree is not None else "")
