"""Building and fitting the model of a spec: its table, the code it names
(imported only for a spec the user wrote or trusts), a formula model or a
NumPyro function with its arguments, start values, and predictions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierax.calibration import CalibrationModel
from hierax.data import factorize, read_table
from hierax.errors import DataError, FileFormatError, close_matches
from hierax.frontends.model import Model
from hierax.frontends.nonlinear import latent, param
from hierax.interface.spec.schema import Spec, SpecError
from hierax.results.fit import Fit
from hierax.results.fit import fit as sample_model

__all__ = [
    "FunctionModel",
    "build_model",
    "fit_spec",
    "import_object",
    "named_code",
    "predict_frame",
    "read_data",
    "resolve_init",
]


def read_data(spec: Spec) -> pd.DataFrame:
    """The spec's table (CSV, TSV or Parquet)."""
    if not spec.data_file.exists():
        raise DataError(
            f"data file {str(spec.data_file)!r} named in [data] of {spec.source} does not exist."
        )
    try:
        return read_table(spec.data_file)
    except ImportError as error:
        raise DataError(
            f"reading {spec.data_file.name!r} needs a Parquet engine: pip install pyarrow "
            f"({error})."
        ) from None


def import_object(reference: str, where: str) -> Any:
    """The object named by ``"package.module:name"``."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise SpecError(f'{where} must be "module:name", got {reference!r}.')
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(
            f"cannot import module {module_name!r} named by {where}: {error}."
        ) from None
    if not hasattr(module, attribute):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise SpecError(
            f"module {module_name!r} has no {attribute!r} (named by {where})."
            f"{close_matches(attribute, names)}"
        )
    return getattr(module, attribute)


def named_code(spec: Spec) -> list[tuple[str, str]]:
    """The ``"module:name"`` references of a spec, as (where, reference) pairs."""
    found = []
    if spec.model.function is not None:
        found.append(("'function' in [model]", spec.model.function))
    found += [(f"{k!r} in [model.functions]", v) for k, v in spec.model.functions.items()]
    if isinstance(spec.sampler.init, str):
        found.append(("'init' in [sampler]", spec.sampler.init))
    return found


def _refuse_untrusted(spec: Spec, where: str, reference: str) -> None:
    if spec.read_from is None:
        return
    module = reference.partition(":")[0]
    raise FileFormatError(
        f"{spec.read_from} names code to run: {where} = {reference!r} would import module "
        f"{module!r}. A fit file is data, and hierax does not import modules named in it "
        "(a changed file could run any code). If you made this file, or trust whoever "
        "did, pass --trust-file to 'hierax predict' (spec_from_fit(..., trust=True) in "
        "Python)."
    )


def _import_named(spec: Spec, reference: str, where: str) -> Any:
    """:func:`import_object` for a spec the user wrote; refused for an untrusted fit file's."""
    _refuse_untrusted(spec, where, reference)
    return import_object(reference, where)


@dataclass(repr=False)
class FunctionModel:
    """A NumPyro model function with its arguments taken from the table."""

    function: Callable[..., Any]
    table: pd.DataFrame
    data: dict[str, Any]
    coords: dict[str, list[Any]]
    dims: dict[str, list[str]]

    def __repr__(self) -> str:
        name = f"{self.function.__module__}:{getattr(self.function, '__name__', '?')}"
        return (
            f"<hierax model function {name}; {len(self.table)} rows; arguments {list(self.data)}>"
        )

    def fit(self, init: Any = None, **kwargs: Any) -> Fit:
        """Sample with :func:`hierax.fit`."""
        return sample_model(
            self.function, self.data, coords=self.coords, dims=self.dims, init=init, **kwargs
        )


def _column(table: pd.DataFrame, name: str, where: str, source: str) -> pd.Series:
    columns = [str(c) for c in table.columns]
    if name not in table.columns:
        raise DataError(
            f"column {name!r} ({where} in {source}) is not in the data; its columns are "
            f"{columns}.{close_matches(name, columns)}"
        )
    return table[name]


def _function_model(spec: Spec, table: pd.DataFrame) -> FunctionModel:
    assert spec.model.function is not None
    function = _import_named(spec, spec.model.function, "'function' in [model]")
    if not callable(function):
        raise SpecError(f"{spec.model.function!r} in [model] of {spec.source} is not a function.")
    data: dict[str, Any] = {}
    coords: dict[str, list[Any]] = {}
    dims: dict[str, list[str]] = {}
    for name, entry in spec.model.data.items():
        where = f"argument {name!r} of [model.data]"
        if isinstance(entry, str):
            entry = {"column": entry}
        if not isinstance(entry, dict):
            data[name] = np.asarray(entry) if isinstance(entry, list) else entry
        elif "column" in entry:
            column = _column(table, entry["column"], where, spec.source)
            data[name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
            if column.dtype == object and np.isnan(data[name]).any():
                raise DataError(
                    f"column {entry['column']!r} ({where}) is not numeric; use "
                    f"{{ factor = {entry['column']!r} }} for a grouping column."
                )
            dims[name] = ["obs"]
        elif "factor" in entry:
            codes, levels = factorize(
                _column(table, entry["factor"], where, spec.source), entry["factor"]
            )
            data[name] = codes
            coords[str(entry.get("dim", entry["factor"]))] = levels
            dims[name] = ["obs"]
        elif "levels" in entry:
            _, levels = factorize(
                _column(table, entry["levels"], where, spec.source), entry["levels"]
            )
            data[name] = len(levels)
        else:
            data[name] = len(table)
    dims.update(spec.model.dims)
    return FunctionModel(function, table, data, coords, dims)


def _params(spec: Spec) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, entry in spec.model.params.items():
        if isinstance(entry, str):
            params[name] = entry
        elif "latent" in entry:
            params[name] = latent(entry["latent"])
        else:
            params[name] = param(
                entry.get("formula", "1"),
                entry.get("link", "identity"),
                lower=entry.get("lower"),
                upper=entry.get("upper"),
            )
    return params


def _formula_kwargs(spec: Spec) -> dict[str, Any]:
    model = spec.model
    kwargs: dict[str, Any] = {"priors": dict(model.priors)}
    for key in ("family", "link", "centered", "zero_sum", "dropna"):
        value = getattr(model, key)
        if value is not None:
            kwargs[key] = value
    if model.params:
        kwargs["params"] = _params(spec)
    if model.functions:
        kwargs["functions"] = {
            name: _import_named(spec, reference, f"{name!r} in [model.functions]")
            for name, reference in model.functions.items()
        }
    if model.calibration is not None:
        kwargs["measurement"] = CalibrationModel.load(model.calibration)
    return kwargs


def build_model(spec: Spec, table: pd.DataFrame | None = None) -> Any:
    """The model of a spec: ``hx.Model`` (linear or nonlinear) or a :class:`FunctionModel`.

    Parameters
    ----------
    spec : Spec
    table : DataFrame, optional
        The data (read from ``spec.data_file`` when omitted).

    Raises
    ------
    FileFormatError
        The spec was read back from a fit file that is not trusted (see
        :func:`spec_from_fit`) and names code to import.
    """
    for where, reference in named_code(spec):  # before anything is read or imported
        _refuse_untrusted(spec, where, reference)
    table = read_data(spec) if table is None else table
    if spec.model.function is not None:
        return _function_model(spec, table)
    assert spec.model.formula is not None
    return Model(spec.model.formula, table, **_formula_kwargs(spec))


def resolve_init(spec: Spec, table: pd.DataFrame) -> dict[str, Any] | None:
    """Initial values: the ``[sampler] init`` table, or its function called with the table."""
    init = spec.sampler.init
    if init is None:
        return None
    if isinstance(init, str):
        function = _import_named(spec, init, "'init' in [sampler]")
        try:
            values = function(table)
        except TypeError as error:
            raise SpecError(
                f"the init function {init!r} is called with the table as its one argument: {error}."
            ) from None
        if not isinstance(values, Mapping):
            raise SpecError(
                f"the init function {init!r} must return a dict of start values, "
                f"got {type(values).__name__}."
            )
        return dict(values)
    return {k: np.asarray(v, dtype=float) if isinstance(v, list) else v for k, v in init.items()}


def fit_spec(spec: Spec, *, model: Any = None, progress: bool | None = None, **kwargs: Any) -> Fit:
    """Build (unless ``model`` is given) and fit the spec's model.

    The spec is recorded in ``fit.info["spec"]`` (see :meth:`Spec.record`), so
    :func:`spec_from_fit` can rebuild the model from a saved fit.
    """
    model = build_model(spec) if model is None else model
    init = resolve_init(spec, model.table)
    options = {**spec.sampler.fit_kwargs(), **kwargs}
    result = model.fit(init=init, progress=progress, **options)
    result.info["spec"] = spec.record()
    if spec.title:
        result.info["title"] = spec.title
    return result


def predict_frame(
    fit: Fit,
    model: Any,
    new_table: pd.DataFrame,
    *,
    kind: str = "mean",
    seed: int = 0,
    allow_new_levels: bool = False,
) -> pd.DataFrame:
    """Posterior summary per row of ``new_table``: its columns plus mean, sd, q3%, q97%."""
    if not hasattr(model, "predict"):
        what = "a model function" if isinstance(model, FunctionModel) else "a nonlinear formula"
        raise SpecError(f"predict works for linear formula models; this fit's spec names {what}.")
    draws = model.predict(fit, new_table, kind=kind, seed=seed, allow_new_levels=allow_new_levels)
    values = np.asarray(draws).reshape(-1, len(new_table))
    result = new_table.reset_index(drop=True).copy()
    result["mean"] = values.mean(axis=0)
    result["sd"] = values.std(axis=0, ddof=1) if values.shape[0] > 1 else 0.0
    result["q3%"], result["q97%"] = np.quantile(values, [0.03, 0.97], axis=0)
    return result
