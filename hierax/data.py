"""Reading tables and validating the data handed to a model.

This module knows about columns, missing values and factor levels; it knows
nothing about priors or sampling.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError, close_matches

__all__ = ["read_table", "factorize", "validate_model_data"]


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a CSV or Parquet file (or pass a DataFrame through unchanged).

    Parameters
    ----------
    source : str, Path or DataFrame
        A ``.csv``, ``.tsv``, ``.parquet``/``.pq`` file, or a DataFrame.

    Returns
    -------
    DataFrame
        The table; a DataFrame argument is returned as is (never modified).
    """
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        table = pd.read_parquet(path)
    elif suffix in (".tsv", ".tab"):
        table = pd.read_csv(path, sep="\t")
    elif suffix == ".csv":
        try:
            table = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"data file {str(path)!r} is empty.") from None
    else:
        raise DataError(
            f"cannot read {str(path)!r}: unknown file type {suffix!r}; use .csv, .tsv or .parquet."
        )
    if table.empty:
        raise DataError(f"data file {str(path)!r} has no rows.")
    return table


def factorize(values: Any, name: str = "group") -> tuple[np.ndarray, list[Any]]:
    """Turn a grouping column into integer codes and its sorted levels.

    Parameters
    ----------
    values : array-like
        The grouping column (strings, integers or categoricals).
    name : str
        Column name, used in error messages.

    Returns
    -------
    codes : ndarray of int
        ``levels[codes[i]]`` is the level of row ``i``.
    levels : list
        The distinct levels in sorted order (categorical order for categoricals):
        use them as the coordinate values of the group dimension.
    """
    series = pd.Series(values)
    if series.isna().any():
        rows = np.flatnonzero(series.isna().to_numpy())[:5].tolist()
        raise DataError(
            f"grouping column {name!r} has {int(series.isna().sum())} missing value(s) "
            f"(first rows {rows}); drop or fill those rows."
        )
    if isinstance(series.dtype, pd.CategoricalDtype):
        categorical = series.cat.remove_unused_categories()
        return categorical.cat.codes.to_numpy().astype(np.int64), list(categorical.cat.categories)
    codes, levels = pd.factorize(series, sort=True)
    return codes.astype(np.int64), [_plain(level) for level in levels]


def _plain(value: Any) -> Any:
    """numpy scalars → Python scalars, so levels serialise cleanly as coords."""
    return value.item() if isinstance(value, np.generic) else value


def _as_checkable_array(value: Any) -> np.ndarray | None:
    if isinstance(value, pd.DataFrame):
        return None
    if isinstance(value, pd.Series | np.ndarray) or hasattr(value, "__jax_array__"):
        return np.asarray(value)
    if type(value).__module__.startswith("jax"):
        return np.asarray(value)
    if isinstance(value, list | tuple) and value:
        array = np.asarray(value)
        return array if array.dtype.kind in "biufcUSO" else None
    return None


def validate_model_data(model_fn: Callable[..., Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """Check the keyword data for a model function before anything is traced.

    Raises :class:`~hierax.errors.DataError` naming the argument when a
    required argument is missing, an unknown argument is given, an array is
    empty, not numeric, or holds NaN/inf.

    Returns
    -------
    dict
        The data with pandas objects converted to numpy arrays (the caller's
        mapping is not modified).
    """
    if not isinstance(data, Mapping):
        raise DataError(
            f"data must be a dict of keyword arguments for {_fn_name(model_fn)}, "
            f"got {type(data).__name__}."
        )
    signature = inspect.signature(model_fn)
    parameters = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not accepts_any:
        unknown = [key for key in data if key not in parameters]
        if unknown:
            hints = "".join(close_matches(key, parameters) for key in unknown)
            raise DataError(
                f"{_fn_name(model_fn)} has no argument(s) {unknown}; its arguments are "
                f"{list(parameters)}.{hints}"
            )
    missing = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in data
    ]
    if missing:
        hints = "".join(close_matches(name, data) for name in missing)
        raise DataError(
            f"{_fn_name(model_fn)} needs the data argument(s) {missing}, which are not in data "
            f"(given: {sorted(data)}).{hints}"
        )

    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        array = _as_checkable_array(value)
        if array is None:
            cleaned[key] = value
            continue
        if array.ndim > 0 and array.shape[0] == 0:
            raise DataError(f"data argument {key!r} is empty; the model needs at least one row.")
        if array.dtype == object or array.dtype.kind in "USO":
            raise DataError(
                f"data argument {key!r} holds non-numeric values (dtype {array.dtype}); "
                "encode categories as integer codes with hierax.factorize() and pass the "
                "levels as coords."
            )
        if array.dtype.kind == "b":
            cleaned[key] = array
            continue
        bad = ~np.isfinite(array)
        if bad.any():
            positions = [int(i) for i in np.flatnonzero(bad.reshape(-1))[:5]]
            raise DataError(
                f"data argument {key!r} has {int(bad.sum())} NaN/inf value(s) (first flat "
                f"positions {positions}); remove those rows or impute them before fitting."
            )
        cleaned[key] = array
    return cleaned


def _fn_name(model_fn: Callable[..., Any]) -> str:
    return f"model function {getattr(model_fn, '__name__', repr(model_fn))!r}"
