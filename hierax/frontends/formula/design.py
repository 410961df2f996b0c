"""From a table and a parsed formula to arrays: the design of a formula model.

The linear structure stays visible: a fixed-effects matrix ``X`` (n, p) with
its term slices, and per group term an integer level index (n,) and the
term's covariate columns ``Z`` (n, k). Group effects are gathered by index,
never through a one-hot matrix, so a factor with 100k levels costs O(n k).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd

from hierax.data import factorize
from hierax.errors import DataError, ModelError, close_matches
from hierax.frontends.formula.checks import (
    check_collinear,
    check_finite_terms,
    check_levels,
    check_trials,
    check_value_types,
    evaluate,
)
from hierax.frontends.formula.terms import GroupTerm, ParsedFormula
from hierax.models import description as desc
from hierax.models.families import Family

FixedTerm = desc.FixedTerm


@dataclass(frozen=True)
class GroupOptions:
    """Per-term choices: centered or non-centered, and zero-sum coding."""

    centered: bool
    zero_sum: bool = False


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

    def describe(self, options: GroupOptions) -> desc.GroupTerm:
        """This term in the model description, coded as ``options`` say."""
        return desc.GroupTerm(
            name=self.name,
            dim=self.dim,
            levels=tuple(self.levels),
            index=self.index,
            Z=self.Z,
            coef_names=tuple(self.coef_names),
            correlated=self.correlated,
            centered=options.centered,
            zero_sum=options.zero_sum,
        )


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

    def predictor(
        self,
        options: Mapping[str, GroupOptions],
        *,
        x_key: str = "X",
        intercept_name: str = "Intercept",
        prefix: str = "",
        per_level: Mapping[str, str] | None = None,
    ) -> desc.LinearPredictor:
        """The linear predictor of this design in the model description."""
        return desc.LinearPredictor(
            X=self.X,
            fixed_terms=tuple(self.fixed_terms),
            intercept=self.intercept,
            groups=tuple(g.describe(options[g.name]) for g in self.groups),
            offset=self.offset,
            x_key=x_key,
            intercept_name=intercept_name,
            prefix=prefix,
            per_level=dict(per_level or {}),
        )


def _safe_name(text: str) -> str:
    """Variable names NetCDF accepts: ':' (interactions) -> '_', '/' (as in ``I(x/2)``,
    HDF5's group separator) -> '_div_', no spaces."""
    return text.replace(":", "_").replace(" ", "").replace("/", "_div_")


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
    columns += _expression_columns(parsed.fixed)
    for term in parsed.groups:
        columns += _expression_columns(term.expr)
        columns += list(term.factors)
    seen: list[str] = []
    for column in columns:
        if column not in seen:
            seen.append(column)
    return seen


def _expression_columns(expr: str) -> list[str]:
    """The variables an expression names (formulae reports a literal such as 2 in
    ``I(x**2)`` as an empty name, and callees like ``np.log`` not at all)."""
    if expr.strip() in ("", "0", "1", "-1"):
        return []
    return sorted(name for name in fm.model_description(expr).var_names if name)


def _value_columns(parsed: ParsedFormula) -> list[str]:
    """The columns used as numbers or predictors (not the grouping factors)."""
    factors = {factor for term in parsed.groups for factor in term.factors}
    values = [c for c in used_columns(parsed) if c not in factors]
    return values + [c for c in _expression_columns(parsed.fixed) if c in factors]


def _check_columns(
    table: pd.DataFrame, columns: list[str], dropna: bool, value_columns: list[str] | None = None
) -> pd.DataFrame:
    if table.shape[0] == 0:
        raise DataError("the data table is empty; a formula model needs at least one row.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        hints = "".join(close_matches(c, [str(x) for x in table.columns]) for c in missing)
        raise DataError(
            f"column(s) {missing} used in the formula are not in the data (columns: "
            f"{list(table.columns)}).{hints}"
        )
    check_value_types(table, columns if value_columns is None else value_columns)
    bad_rows = np.zeros(len(table), dtype=bool)
    for column in columns:
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_complex_dtype(values):
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


def _group_block(table: pd.DataFrame, term: GroupTerm, formula: str) -> GroupBlock:
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
    if expr not in ("", "1"):
        check_levels(expr, table, formula, f"group term ({expr} | {':'.join(term.factors)})")
    matrix = evaluate(expr if expr not in ("", "1") else "1", table, formula)
    if matrix is None:  # "(0 | g)"
        raise ModelError(
            f"the group term ({expr} | {':'.join(term.factors)}) of formula {formula!r} has "
            "no columns; remove it."
        )
    Z = np.asarray(matrix.design_matrix, dtype=float)
    check_finite_terms(matrix, Z, table, formula, f"group term of {term.name!r}")
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
    formula = parsed.text or f"{parsed.response} ~ {parsed.fixed}"
    table = _check_columns(table, used_columns(parsed), dropna, _value_columns(parsed))
    y = _column(table, parsed.response)
    trials = _column(table, parsed.trials) if parsed.trials else None
    if family.name == "binomial" and trials is None:
        raise ModelError(
            f"the binomial family needs the number of trials: write "
            f"'{parsed.response} | trials(n) ~ ...' with a column n."
        )
    if trials is not None:
        if family.name != "binomial":
            raise ModelError(
                f"trials({parsed.trials}) in {formula!r} is for the binomial family, but the "
                f"family is {family.name}; remove it or use family='binomial'."
            )
        check_trials(trials, str(parsed.trials), table.index)
        # whole numbers (checked): NumPyro's binomial draws (prior and posterior
        # predictive) need an integer count
        trials = trials.astype(np.int64)
    family.check_response(y, parsed.response, trials)
    se = _column(table, parsed.se) if parsed.se else None
    if se is not None and np.any(se <= 0):
        rows = np.flatnonzero(se <= 0)[:5].tolist()
        raise DataError(f"standard errors in column {parsed.se!r} must be positive (rows {rows}).")
    offset = None
    for name in parsed.offsets:
        values = _column(table, name)
        offset = values if offset is None else offset + values

    check_levels(parsed.fixed, table, formula, "fixed effects")
    fixed_matrix = evaluate(parsed.fixed, table, formula)
    if fixed_matrix is None:  # "0 + (1 | g)": no fixed effects at all
        X = np.zeros((len(table), 0))
    else:
        X = np.asarray(fixed_matrix.design_matrix, dtype=float)
        check_finite_terms(fixed_matrix, X, table, formula, "fixed effects")
    fixed_terms: list[FixedTerm] = []
    intercept = False
    for name, columns in (fixed_matrix.slices if fixed_matrix is not None else {}).items():
        if name == "Intercept":
            intercept = True
            continue
        term = fixed_matrix.terms[name]
        labels = tuple(getattr(term, "labels", None) or [name])
        fixed_terms.append(FixedTerm(_safe_name(name), columns, labels))
    check_collinear(X, column_labels(fixed_matrix), formula)

    groups = [_group_block(table, term, formula) for term in parsed.groups]
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


def new_data_design(design: Design, table: pd.DataFrame, allow_new_levels: bool) -> dict[str, Any]:
    """Arrays for prediction on new rows, coded like the training data.

    Unseen levels of a group factor raise (naming the factor and levels) unless
    ``allow_new_levels``; their index is then -1 (effects drawn from the population).
    """
    parsed = design.parsed
    needed = [c for c in used_columns(parsed) if c not in (parsed.response,)]
    values = [c for c in _value_columns(parsed) if c != parsed.response]
    table = _check_columns(table, needed, dropna=False, value_columns=values)
    formula = parsed.text
    X = (
        np.zeros((len(table), 0))
        if design.fixed_matrix is None
        else _new_values(design.fixed_matrix, table, formula, "fixed effects")
    )
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
        arrays[f"Z_{group.name}"] = _new_values(
            group.expr_matrix, table, formula, f"group term of {group.term.name!r}"
        )
    if parsed.offsets:
        arrays["offset"] = sum(_column(table, name) for name in parsed.offsets)
    if parsed.trials:
        arrays["trials"] = _column(table, parsed.trials)
        check_trials(arrays["trials"], parsed.trials, table.index)
    if parsed.se:
        arrays["se"] = _column(table, parsed.se)
    return arrays


def _new_values(matrix: Any, table: pd.DataFrame, formula: str, what: str) -> np.ndarray:
    """A training design matrix evaluated on new rows (stateful transforms such as
    ``scale(x)`` keep the training mean and sd), checked to be finite."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            new = matrix.evaluate_new_data(table)
    except (ValueError, KeyError, TypeError) as error:
        detail = " ".join(str(error).split())
        raise DataError(
            f"cannot code the new data like the training data for the {what} of {formula!r}: "
            f"{detail}"
        ) from None
    values = np.asarray(new.design_matrix, dtype=float)
    check_finite_terms(new, values, table, formula, what)
    return values
