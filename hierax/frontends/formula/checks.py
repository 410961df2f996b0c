"""Evaluating formula expressions with ``formulae`` and checking what comes out.

* Expressions are evaluated in a fixed namespace (:data:`ENVIRONMENT`):
  formulae's own transforms (``I()``, ``scale()``, ``center()``, ``C()``...)
  plus elementwise NumPy functions, also as ``np.<name>``. Nothing is taken
  from the caller's frame, so a formula read from a file can only call these.
* Column types formulae cannot use (datetimes, complex numbers) are refused
  naming the column; a transform that gives NaN or inf (``log(x)`` with
  ``x <= 0``) is refused naming the term and the column.
* A categorical fixed effect with very many levels is refused before formulae
  builds its dense one-hot columns, with the advice to write it as a group term.
* Collinearity is checked on the p x p Gram matrix (time linear in the rows),
  with an exact QR only when the Gram matrix says a column is close to the
  span of the ones before it.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Sequence
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd
import scipy.linalg
from formulae.environment import Environment

from hierax.errors import DataError, ModelError

#: Elementwise NumPy functions a formula may call, bare (``log(x)``) or as ``np.log(x)``.
ELEMENTWISE = (
    "abs",
    "arccos",
    "arcsin",
    "arctan",
    "cbrt",
    "ceil",
    "clip",
    "cos",
    "cosh",
    "exp",
    "exp2",
    "expm1",
    "floor",
    "log",
    "log10",
    "log1p",
    "log2",
    "maximum",
    "minimum",
    "power",
    "round",
    "sign",
    "sin",
    "sinh",
    "sqrt",
    "square",
    "tan",
    "tanh",
)
_BARE = ("abs", "exp", "expm1", "log", "log10", "log1p", "log2", "sqrt")
_NUMPY = types.SimpleNamespace(**{name: getattr(np, name) for name in ELEMENTWISE})
#: The namespace formula expressions are evaluated in (formulae adds its transforms).
ENVIRONMENT = Environment(
    [{"np": _NUMPY, "numpy": _NUMPY, **{name: getattr(np, name) for name in _BARE}}]
)
_TRANSFORMS = "I(), {...}, scale(), center(), C(), poly(), bs()"

#: A categorical fixed-effects term with more columns than this is refused. Each
#: level gets its own coefficient with an independent prior (no pooling) and a
#: dense n x levels block in X; fit time grows about with the cube of the levels
#: (a small gaussian fit, one chain of 100 + 100 draws on a shared 2-core machine:
#: 100 levels 15 s, 300 levels 185 s), while a group term ``(1 | c)`` pools the
#: levels, is gathered by index and fits 100k levels.
MAX_FIXED_LEVELS = 100
#: Dense fixed-effects designs larger than this many entries (2 GiB in float64)
#: are refused before they are built.
MAX_DESIGN_ENTRIES = 2**28


def _shown(formula: str, expr: str) -> str:
    return f"{expr!r}" if expr.strip() == formula.strip() else f"{expr!r} of formula {formula!r}"


def evaluate(expr: str, table: pd.DataFrame, formula: str) -> Any:
    """``formulae``'s common-effects matrix of ``expr`` on ``table``, errors named.

    Raises
    ------
    ModelError
        An unknown function or name, or a term formulae cannot build.
    """
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fm.design_matrices(expr, table, na_action="pass", env=ENVIRONMENT).common
    except MemoryError:
        raise ModelError(
            f"the design of {_shown(formula, expr)} does not fit in memory ({len(table)} rows); "
            "write categorical predictors with many levels as group terms, e.g. (1 | c)."
        ) from None
    except (KeyError, AttributeError) as error:
        if isinstance(error, KeyError):
            name = str(error.args[0]) if error.args else ""
        else:  # np.<name> that is not offered
            name = f"np.{getattr(error, 'name', None) or error}"
        raise ModelError(
            f"unknown function or name {name!r} in {_shown(formula, expr)}. A formula can use "
            f"the table's columns, the transforms {_TRANSFORMS}, and the functions "
            f"{list(_BARE)} (also as np.<name>, with {list(ELEMENTWISE)})."
        ) from None
    except RecursionError:
        raise ModelError(f"{_shown(formula, expr)} is nested too deeply.") from None
    except Exception as error:  # formulae raises ValueError, TypeError, ...
        detail = " ".join(str(error).split()) or type(error).__name__
        raise ModelError(f"formulae cannot build {_shown(formula, expr)}: {detail}") from None


def check_finite_terms(
    matrix: Any, values: np.ndarray, table: pd.DataFrame, formula: str, what: str
) -> None:
    """Raise a :class:`DataError` naming the term and its columns where ``values`` is not finite.

    ``values`` is the evaluated design (n, p) of ``matrix`` (formulae's
    matrix, whose ``slices`` map term names to columns).
    """
    bad = ~np.isfinite(values)
    if matrix is None or not bad.any():
        return
    for name, columns in matrix.slices.items():
        rows = np.flatnonzero(bad[:, columns].any(axis=1))
        if rows.size == 0:
            continue
        used = sorted(c for c in matrix.terms[name].var_names if c and c in table.columns)
        shown = "; ".join(f"column {c!r} there is {table[c].iloc[rows[:5]].tolist()}" for c in used)
        hint = (
            " log(), log10(), log2() and sqrt() need positive (or non-negative) values."
            if any(f in name for f in ("log", "sqrt"))
            else ""
        )
        raise DataError(
            f"term {name!r} in the {what} of formula {formula!r} is NaN or infinite in "
            f"{rows.size} row(s) (first rows {table.index[rows[:5]].tolist()}; {shown}).{hint} "
            f"Fix column(s) {used} or use another transform."
        )


def check_value_types(table: pd.DataFrame, columns: Sequence[str]) -> None:
    """Refuse datetime, timedelta, period, interval and complex columns, naming the column."""
    for column in columns:
        dtype = table[column].dtype
        if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
            raise DataError(
                f"column {column!r} holds dates/times (dtype {dtype}), which a formula cannot "
                "use as numbers. Convert it first, e.g. days since a date: "
                f"table[{column!r}] = (table[{column!r}] - pd.Timestamp('2020-01-01')).dt.days, "
                "or use it as a grouping factor."
            )
        if pd.api.types.is_timedelta64_dtype(dtype):
            raise DataError(
                f"column {column!r} holds durations (dtype {dtype}); convert it to numbers first, "
                f"e.g. table[{column!r}].dt.total_seconds() / 86400 for days."
            )
        if isinstance(dtype, pd.IntervalDtype):
            raise DataError(
                f"column {column!r} holds intervals (dtype {dtype}); use their midpoints or "
                "convert them to strings (categories)."
            )
        if pd.api.types.is_complex_dtype(dtype):
            raise DataError(
                f"column {column!r} holds complex numbers (dtype {dtype}); split it into real "
                "columns first, e.g. np.real and np.imag (or np.abs and np.angle)."
            )


def check_trials(trials: np.ndarray, column: str, index: pd.Index) -> None:
    """Binomial trials must be non-negative integers; name the column, rows and values."""
    bad = (trials < 0) | ~np.equal(np.mod(trials, 1), 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"the number of trials in column {column!r} must be a non-negative integer, but "
            f"{rows.size} row(s) are not (first rows {index[rows[:5]].tolist()}, values "
            f"{trials[rows[:5]].tolist()}). Fix the column."
        )


def _term_levels(term: Any, table: pd.DataFrame) -> tuple[int, list[str]]:
    """An upper bound of a fixed term's columns and its categorical columns."""
    size = 1
    categorical: list[str] = []
    for component in getattr(term, "components", []):
        names = [n for n in component.var_names if n in table.columns]
        call = getattr(component, "call", None)
        is_factor_call = call is not None and getattr(call, "callee", "") in ("C", "T", "S")
        for name in names:
            column = table[name]
            numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(
                column
            )
            if is_factor_call or not numeric:
                size *= max(int(column.nunique()), 1)
                categorical.append(name)
    return size, categorical


def check_levels(expr: str, table: pd.DataFrame, formula: str, where: str) -> None:
    """Refuse a categorical term with more than :data:`MAX_FIXED_LEVELS` columns, and any
    dense design over :data:`MAX_DESIGN_ENTRIES` entries, before formulae builds it."""
    if expr.strip() in ("0", "1", "-1"):
        return
    total = 0
    for term in fm.model_description(expr).terms:
        size, categorical = _term_levels(term, table)
        total += size
        if categorical and size > MAX_FIXED_LEVELS:
            joined = ":".join(categorical)
            numeric = [n for n in term.var_names if n and n not in categorical]
            slope = " + ".join(numeric) if numeric else "1"
            raise ModelError(
                f"the term {term.name!r} in the {where} of formula {formula!r} has {size} "
                f"levels (categorical column(s) {categorical}); at most {MAX_FIXED_LEVELS} are "
                f"allowed there, each with its own coefficient. Write it as a group term "
                f"instead, e.g. ({slope} | {joined}): its levels are partially pooled and "
                "gathered by index, which scales to many levels."
            )
    if total * len(table) > MAX_DESIGN_ENTRIES:
        raise ModelError(
            f"the {where} of formula {formula!r} would have about {total} columns for "
            f"{len(table)} rows (more than {MAX_DESIGN_ENTRIES} numbers); write categorical "
            "predictors with many levels as group terms, e.g. (1 | c)."
        )


def _dependent_columns(X: np.ndarray) -> list[int]:
    """Columns of X (n, p) that lie in the span of the columns before them.

    Screened on the Gram matrix X'X (p x p, accumulated in time linear in n):
    with unit-norm columns, the squared diagonal of its Cholesky factor is the
    squared sine of each column's angle to the span of the earlier ones. Only
    when one is small (or the factorization fails) is the exact answer taken
    from the R factor of a QR of X, whose diagonal is that sine itself, since
    the Gram matrix cannot resolve angles below about sqrt(machine epsilon).
    """
    n, p = X.shape
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))  # (p,)
    zero = norms == 0
    scale = np.where(zero, 1.0, norms)
    gram = (X.T @ X) / scale[:, None] / scale[None, :]  # (p, p), unit diagonal
    if not zero.any():
        try:
            cholesky = np.linalg.cholesky(gram)
            if np.min(np.abs(np.diag(cholesky))) > 1e-4:
                return []
        except np.linalg.LinAlgError:
            pass
    r = scipy.linalg.qr(X / scale, mode="r", check_finite=False)[0]
    sines = np.abs(np.diag(r[: min(n, p), :p]))
    tolerance = max(n, p) * np.finfo(float).eps * np.sqrt(p)
    dependent = [j for j in range(min(n, p)) if zero[j] or sines[j] <= tolerance]
    return dependent + list(range(n, p))  # more columns than rows: the rest are dependent


def check_collinear(X: np.ndarray, labels: list[str], formula: str) -> None:
    """Raise a :class:`ModelError` naming fixed-effects columns that are combinations
    of earlier ones (in time linear in the rows)."""
    if X.shape[1] == 0:
        return
    dependent = _dependent_columns(X)
    if dependent:
        culprits = [labels[j] if j < len(labels) else str(j) for j in dependent]
        rank = X.shape[1] - len(dependent)
        raise ModelError(
            f"the fixed-effects columns of formula {formula!r} are collinear (rank {rank} < "
            f"{X.shape[1]} columns): {culprits} can be written as combinations of earlier "
            "columns. Remove them from the formula."
        )
