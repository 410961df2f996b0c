"""Reading tables and validating the data handed to a model.

This module knows about columns, missing values and factor levels; it knows
nothing about priors or sampling.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierax.core.files import unreadable_reason
from hierax.errors import DataError, close_matches

__all__ = ["read_table", "factorize", "validate_model_data"]


def read_table(source: str | Path | pd.DataFrame | Mapping[str, Any]) -> pd.DataFrame:
    """Read a CSV or Parquet file, or take a DataFrame or a dict of columns.

    Parameters
    ----------
    source : str, Path, DataFrame or dict
        A ``.csv``, ``.tsv``, ``.parquet``/``.pq`` file, a DataFrame, or a dict
        mapping column names to equally long lists or arrays.

    Returns
    -------
    DataFrame
        The table; a DataFrame argument is returned as is (never modified).

    Raises
    ------
    DataError
        The file does not exist, is a folder, cannot be read or is not a table of
        its type (the message names it), has no rows, or ``source`` is of
        another type.
    """
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, Mapping):
        return _table_from_columns(source)
    if not isinstance(source, str | PathLike):
        raise DataError(
            "the data must be a pandas DataFrame, a dict of columns (name -> list or array) "
            f"or the path of a CSV, TSV or Parquet file, got {type(source).__name__}."
        )
    path = Path(source)
    reason = unreadable_reason(path)
    if reason is not None:
        raise DataError(f"data file {str(path)!r} {reason}.")
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise DataError(
            f"cannot read {str(path)!r}: unknown file type {suffix!r}; use .csv, .tsv or .parquet."
        )
    kind, reader = _READERS[suffix]
    try:
        table = reader(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file {str(path)!r} is empty.") from None
    except ImportError:
        raise  # no Parquet engine: the caller says which package to install
    except (ValueError, OSError, pd.errors.ParserError) as error:  # also Arrow's errors
        raise DataError(
            f"data file {str(path)!r} cannot be read as {kind} ({type(error).__name__}: "
            f"{_first_line(error)}); is it really a {kind} file?"
        ) from None
    if table.empty:
        raise DataError(f"data file {str(path)!r} has no rows.")
    return table


def _read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


#: Table readers by file suffix: (what the file should be, reader).
_READERS: dict[str, tuple[str, Callable[[Path], pd.DataFrame]]] = {
    ".parquet": ("Parquet", _read_parquet),
    ".pq": ("Parquet", _read_parquet),
    ".tsv": ("TSV (tab-separated text)", _read_tsv),
    ".tab": ("TSV (tab-separated text)", _read_tsv),
    ".csv": ("CSV (comma-separated text)", _read_csv),
}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _table_from_columns(columns: Mapping[str, Any]) -> pd.DataFrame:
    """A DataFrame from a dict of columns, with a message naming the column at fault."""
    lengths = {str(name): _column_length(value) for name, value in columns.items()}
    scalars = [name for name, length in lengths.items() if length is None]
    if scalars:
        raise DataError(
            f"a dict of columns must map each column name to a list or array; {scalars} "
            "hold(s) a single value: wrap it in a list (e.g. {'x': [1.0]})."
        )
    if len(set(lengths.values())) > 1:
        raise DataError(
            f"the columns of the dict have different lengths {lengths}; every column needs "
            "one value per row."
        )
    try:
        table = pd.DataFrame(dict(columns))
    except (ValueError, TypeError) as error:
        raise DataError(f"cannot make a table from the dict of columns: {error}.") from None
    if table.empty:
        raise DataError("the dict of columns has no rows.")
    return table


def _column_length(value: Any) -> int | None:
    if isinstance(value, str | bytes) or np.ndim(value) == 0:
        return None
    return len(value)


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
