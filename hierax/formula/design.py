"""From a table and a parsed formula to arrays: the design of a formula model.

The linear structure stays visible: a fixed-effects matrix ``X`` (n, p) with
its term slices, and per group term an integer level index (n,) and the
term's covariate columns ``Z`` (n, k). Group effects are gathered by index,
never through a one-hot matrix, so a factor with 100k levels costs O(n k).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd

from ..data import factorize
from ..errors import DataError, ModelError, close_matches
from ..families import Family
from .terms import GroupTerm, ParsedFormula


@dataclass(frozen=True)
class FixedTerm:
    """A fixed-effects term: its variable name, columns of X and column labels."""

    name: str
    columns: slice
    labels: tuple[str, ...]


@dataclass
class GroupBlock:
    """One group term: levels, the level of each row and the term's covariates."""

    term: GroupTerm
    name: str
    levels: list[Any]
    index: np.ndarray  # (n,) int
    Z: np.ndarray  # (n, k)
    coef_names: tuple[str, ...]
    correlated: bool
    expr_matrix: Any  # formulae matrix, for new data

    @property
    def n_coef(self) -> int:
        return self.Z.shape[1]

    @property
    def dim(self) -> str:
        """The dimension of the level effects: the grouping factor's name (e.g. ``batch``)."""
        return _safe_name(self.term.name)


@dataclass
class Design:
    """Arrays of a formula model for one table."""

    parsed: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    fixed_terms: list[FixedTerm]
    intercept: bool
    groups: list[GroupBlock]
    offset: np.ndarray | None = None
    se: np.ndarray | None = None
    trials: np.ndarray | None = None
    fixed_matrix: Any = None
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


def _safe_name(text: str) -> str:
    """Variable names without characters NetCDF drops (':' in interactions)."""
    return text.replace(":", "_").replace(" ", "")


def column_labels(matrix: Any) -> list[str]:
    """Labels of every column of a formulae design matrix, e.g. ['Intercept', 'x', 'c[b]']."""
    labels: list[str] = []
    if matrix is None:
        return labels
    for name, term in matrix.terms.items():
        labels += list(getattr(term, "labels", None) or [name])
    return labels


def used_columns(parsed: ParsedFormula) -> list[str]:
    """Every table column the formula refers to, in a stable order."""
    columns: list[str] = [parsed.response]
    for extra in (parsed.se, parsed.trials, *parsed.offsets):
        if extra:
            columns.append(extra)
    fixed = parsed.fixed
    if fixed.strip() not in ("0", "1", "-1"):
        columns += sorted(fm.model_description(fixed).var_names)
    for term in parsed.groups:
        if term.expr.strip() not in ("0", "1"):
            columns += sorted(fm.model_description(term.expr).var_names)
        columns += list(term.factors)
    seen: list[str] = []
    for column in columns:
        if column not in seen:
            seen.append(column)
    return seen


def _check_columns(table: pd.DataFrame, columns: list[str], dropna: bool) -> pd.DataFrame:
    if table.shape[0] == 0:
        raise DataError("the data table is empty; a formula model needs at least one row.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        hints = "".join(close_matches(c, [str(x) for x in table.columns]) for c in missing)
        raise DataError(
            f"column(s) {missing} used in the formula are not in the data (columns: "
            f"{list(table.columns)}).{hints}"
        )
    bad_rows = np.zeros(len(table), dtype=bool)
    for column in columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values):
            bad = ~np.isfinite(values.to_numpy(dtype=float))
        else:
            bad = values.isna().to_numpy()
        if bad.any() and not dropna:
            rows = table.index[bad][:5].tolist()
            raise DataError(
                f"column {column!r} has {int(bad.sum())} missing or non-finite value(s) "
                f"(first rows {rows}); pass dropna=True to drop those rows, or fix the data."
            )
        bad_rows |= bad
    if bad_rows.any():
        warnings.warn(
            f"dropped {int(bad_rows.sum())} row(s) with missing values in the formula's columns "
            f"(dropna=True); {int((~bad_rows).sum())} remain.",
            UserWarning,
            stacklevel=4,
        )
        table = table.loc[~bad_rows]
        if table.shape[0] == 0:
            raise DataError("no rows left after dropping missing values.")
    return table


def _column(table: pd.DataFrame, name: str) -> np.ndarray:
    values = table[name]
    if not pd.api.types.is_numeric_dtype(values):
        raise DataError(f"column {name!r} must be numeric, but it has dtype {values.dtype}.")
    return values.to_numpy(dtype=float)


def _group_block(table: pd.DataFrame, term: GroupTerm) -> GroupBlock:
    for factor in term.factors:
        column = table[factor]
        if isinstance(column.dtype, pd.CategoricalDtype):
            unused = [c for c in column.cat.categories if c not in set(column)]
            if unused:
                warnings.warn(
                    f"grouping factor {factor!r} has unused level(s) {unused[:5]}; they are dropped.",
                    UserWarning,
                    stacklevel=5,
                )
    if len(term.factors) == 1:
        labels = table[term.factors[0]]
    else:
        labels = table[list(term.factors)].astype(str).agg(":".join, axis=1)
    index, levels = factorize(labels, ":".join(term.factors))
    if len(levels) < 2:
        raise DataError(
            f"grouping factor {':'.join(term.factors)!r} has only one level ({levels[0]!r}); a "
            "group term needs at least two levels. Remove the term or check the column."
        )
    expr = term.expr.strip()
    matrix = fm.design_matrices(expr if expr not in ("", "1") else "1", table).common
    Z = np.asarray(matrix.design_matrix, dtype=float)
    coef_names = tuple(column_labels(matrix))
    return GroupBlock(
        term=term,
        name=_safe_name(term.name),
        levels=levels,
        index=index,
        Z=Z,
        coef_names=coef_names,
        correlated=term.correlated,
        expr_matrix=matrix,
    )


def build_design(
    table: pd.DataFrame, parsed: ParsedFormula, family: Family, *, dropna: bool = False
) -> Design:
    """Validate the table and build the arrays of the formula model."""
    table = _check_columns(table, used_columns(parsed), dropna)
    y = _column(table, parsed.response)
    trials = _column(table, parsed.trials) if parsed.trials else None
    if family.name == "binomial" and trials is None:
        raise ModelError(
            f"the binomial family needs the number of trials: write "
            f"'{parsed.response} | trials(n) ~ ...' with a column n."
        )
    family.check_response(y, parsed.response, trials)
    se = _column(table, parsed.se) if parsed.se else None
    if se is not None and np.any(se <= 0):
        rows = np.flatnonzero(se <= 0)[:5].tolist()
        raise DataError(f"standard errors in column {parsed.se!r} must be positive (rows {rows}).")
    offset = None
    for name in parsed.offsets:
        values = _column(table, name)
        offset = values if offset is None else offset + values

    fixed_matrix = fm.design_matrices(parsed.fixed, table).common
    if fixed_matrix is None:  # "0 + (1 | g)": no fixed effects at all
        X = np.zeros((len(table), 0))
    else:
        X = np.asarray(fixed_matrix.design_matrix, dtype=float)
    fixed_terms: list[FixedTerm] = []
    intercept = False
    for name, columns in (fixed_matrix.slices if fixed_matrix is not None else {}).items():
        if name == "Intercept":
            intercept = True
            continue
        term = fixed_matrix.terms[name]
        labels = tuple(getattr(term, "labels", None) or [name])
        fixed_terms.append(FixedTerm(_safe_name(name), columns, labels))
    _check_collinear(X, fixed_matrix)

    groups = [_group_block(table, term) for term in parsed.groups]
    names = [g.name for g in groups]
    for name in set(names):
        if names.count(name) > 1:
            for count, group in enumerate(g for g in groups if g.name == name):
                if count:
                    group.name = f"{name}_{_safe_name('_'.join(group.coef_names)) or count}"
    return Design(
        parsed=parsed,
        y=y,
        X=X,
        fixed_terms=fixed_terms,
        intercept=intercept,
        groups=groups,
        offset=offset,
        se=se,
        trials=trials,
        fixed_matrix=fixed_matrix,
        rows=table.index.to_numpy(),
    )


def _check_collinear(X: np.ndarray, matrix: Any) -> None:
    if X.shape[1] == 0:
        return
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        labels = column_labels(matrix)
        # name the columns that are linear combinations of the ones before them
        culprits = []
        for j in range(1, X.shape[1]):
            if np.linalg.matrix_rank(X[:, : j + 1]) <= np.linalg.matrix_rank(X[:, :j]):
                culprits.append(labels[j] if j < len(labels) else str(j))
        raise ModelError(
            f"the fixed-effects columns are collinear (rank {rank} < {X.shape[1]} columns): "
            f"{culprits} can be written as combinations of earlier columns. Remove them from "
            "the formula."
        )


def new_data_design(design: Design, table: pd.DataFrame, allow_new_levels: bool) -> dict[str, Any]:
    """Arrays for prediction on new rows, coded like the training data.

    Unseen levels of a group factor raise (naming the factor and levels) unless
    ``allow_new_levels``; their index is then -1 (effects drawn from the population).
    """
    needed = [c for c in used_columns(design.parsed) if c not in (design.parsed.response,)]
    table = _check_columns(table, needed, dropna=False)
    try:
        X = (
            np.zeros((len(table), 0))
            if design.fixed_matrix is None
            else np.asarray(design.fixed_matrix.evaluate_new_data(table).design_matrix, dtype=float)
        )
    except ValueError as error:
        raise DataError(f"cannot code the new data like the training data: {error}") from None
    arrays: dict[str, Any] = {"X": X}
    for group in design.groups:
        if len(group.term.factors) == 1:
            labels = table[group.term.factors[0]]
        else:
            labels = table[list(group.term.factors)].astype(str).agg(":".join, axis=1)
        lookup = {level: i for i, level in enumerate(group.levels)}
        values = [v.item() if isinstance(v, np.generic) else v for v in labels]
        index = np.array([lookup.get(v, -1) for v in values], dtype=np.int64)
        unseen = sorted({v for v, i in zip(values, index, strict=True) if i < 0}, key=str)
        if unseen and not allow_new_levels:
            raise DataError(
                f"grouping factor {':'.join(group.term.factors)!r} has level(s) {unseen[:10]} "
                "not seen when fitting; pass allow_new_levels=True to draw their effects from "
                "the population distribution."
            )
        arrays[f"index_{group.name}"] = index
        arrays[f"Z_{group.name}"] = np.asarray(
            group.expr_matrix.evaluate_new_data(table).design_matrix, dtype=float
        )
    if design.parsed.offsets:
        arrays["offset"] = sum(_column(table, name) for name in design.parsed.offsets)
    if design.parsed.trials:
        arrays["trials"] = _column(table, design.parsed.trials)
    if design.parsed.se:
        arrays["se"] = _column(table, design.parsed.se)
    return arrays
