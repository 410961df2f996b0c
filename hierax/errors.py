"""Exception and warning types raised by hierax.

Every error message names what is wrong (the column, site, parameter or file)
and says how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HieraxError(Exception):
    """Base class of every error hierax raises on purpose."""


class DataError(HieraxError, ValueError):
    """The data given to a model are unusable (missing column, NaN, wrong support...)."""


class ModelError(HieraxError, ValueError):
    """The model function or specification cannot be used as written."""


class InitializationError(HieraxError, ValueError):
    """Initial values are invalid or give a non-finite log density."""


class SamplingError(HieraxError, RuntimeError):
    """Sampling could not run or produced unusable output."""


class FileFormatError(HieraxError, ValueError):
    """A file is not a hierax file, or of an incompatible version."""


class ConvergenceWarning(UserWarning):
    """The sampler output shows signs that the posterior was not explored well."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """Format a 'did you mean' hint, or an empty string when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


class CalibrationWarning(UserWarning):
    """A calibration fit or its data need attention: masked NaN/inf points, a
    parameter that ended on a bound, or an optimiser that did not converge."""


class IncompatibleModelError(FileFormatError):
    """A saved model holds another model type than the one asked for."""


class IncompatibleVersionError(FileFormatError):
    """A saved file was written with an incompatible major version of its format."""
