"""Spec files: a whole fit (data, model, priors, sampler, output) in one TOML file.

``hierax fit model.toml`` reads such a file; :func:`load_spec` validates it into a
:class:`Spec`, :func:`build_model` builds the model and :func:`fit_spec` samples it.

Schema (every table and key is checked: an unknown key is an error that names it
with close matches, and every value's type is checked with its key named;
relative paths are resolved against the folder of the TOML file)::

    title = "genes x cell lines"        # optional; shown in the output and the report

    [data]
    file = "crossed.csv"                # CSV, TSV or Parquet (Parquet needs pyarrow)

    [model]                             # either a formula ...
    formula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"
    family = "gaussian"                 # gaussian, student_t, bernoulli, binomial, poisson, ...
    link = "identity"                   # linear formula models only; default: the family's
    centered = "auto"                   # "auto", true, false, or a table per group term
    zero_sum = false                    # linear formula models only: bool or table per group
    dropna = false                      # drop rows with missing values (with a warning)
    calibration = "calibration.json"    # a saved CalibrationModel as the observation model

    [model.params]                      # nonlinear formula: one entry per parameter
    intercept = "1 + (1 | batch)"       # a sub-formula
    k = { formula = "1", lower = 0, upper = 1 }   # bounded (or link = "log")
    r = { latent = "TruncatedNormal(mu_r, exp(ln_std_r), low=0)" }

    [model.priors]                      # parameter or class ("b", "sd", "cor")
    sigma = "HalfNormal(1)"             # a distribution ...
    sd_intercept_batch = 0.1            # ... or a number, which fixes the value

    [model.functions]                   # extra JAX functions for a nonlinear expression
    kepler = "mypackage.orbits:kepler"

    [sampler]
    chains = 4
    draws = 1000
    warmup = 1000
    seed = 1                            # default: random (recorded in the fit)
    target_accept = 0.95                # default 0.95 for formula models, 0.8 for functions
    max_tree_depth = 10
    dense_mass = false
    multistart = 0
    init = "mypackage.starts:initial_values"   # a function called with the table,
                                               # or a table of start values

    [output]
    folder = "crossed-fit"              # default: "<spec name>-fit" beside the spec
    show = ["Intercept", "sd_gene"]     # variables printed after the fit
    report = true                       # write report.html

A model that no formula can express is a NumPyro function named as
``"module:function"``; ``[model.data]`` then maps each of its arguments to the
table, and ``[model.dims]`` names dims of sites or arguments::

    [model]
    function = "hierax.examples.crossed:model_naive"

    [model.data]
    logfc = "logfc"                     # a column, as a float array (dim "obs")
    gene = { factor = "gene" }          # integer codes; the levels become coords of dim "gene"
    n_genes = { levels = "gene" }       # the number of levels of a column
    n = { rows = true }                 # the number of rows
    scale = 2.5                         # a literal number, bool or array

Formula, family, priors and the other formula keys do not apply to a function.
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._files import unreadable_reason
from .data import factorize, read_table
from .errors import DataError, FileFormatError, ModelError, close_matches
from .fit import Fit

__all__ = [
    "FunctionModel",
    "ModelSpec",
    "OutputSpec",
    "SamplerSpec",
    "Spec",
    "SpecError",
    "build_model",
    "fit_spec",
    "load_spec",
    "parse_spec",
    "predict_frame",
    "read_data",
    "spec_from_fit",
]


class SpecError(ModelError):
    """A spec file cannot be used as written (unknown key, wrong type, missing table)."""


# ------------------------------------------------------------------------ schema
_Types = tuple[type, ...]

_SCHEMA: dict[str, dict[str, _Types]] = {
    "": {"title": (str,), "data": (dict,), "model": (dict,), "sampler": (dict,), "output": (dict,)},
    "data": {"file": (str,)},
    "model": {
        "formula": (str,),
        "function": (str,),
        "family": (str,),
        "link": (str,),
        "calibration": (str,),
        "centered": (str, bool, dict),
        "zero_sum": (bool, dict),
        "dropna": (bool,),
        "params": (dict,),
        "priors": (dict,),
        "functions": (dict,),
        "data": (dict,),
        "dims": (dict,),
    },
    "model.params.*": {
        "formula": (str,),
        "link": (str,),
        "lower": (float,),
        "upper": (float,),
        "latent": (str,),
    },
    "model.data.*": {
        "column": (str,),
        "factor": (str,),
        "dim": (str,),
        "levels": (str,),
        "rows": (bool,),
    },
    "sampler": {
        "chains": (int,),
        "draws": (int,),
        "warmup": (int,),
        "seed": (int,),
        "target_accept": (float,),
        "max_tree_depth": (int,),
        "dense_mass": (bool,),
        "multistart": (int,),
        "init": (str, dict),
    },
    "output": {"folder": (str,), "show": (list,), "report": (bool,)},
}

_FORMULA_ONLY = (
    "family",
    "link",
    "calibration",
    "centered",
    "zero_sum",
    "dropna",
    "params",
    "priors",
    "functions",
)
_FUNCTION_ONLY = ("data", "dims")

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


def _section(name: str) -> str:
    return "the top level" if not name else f"[{name}]"


def _describe(value: Any) -> str:
    for kind in (bool, int, float, str, dict, list):
        if isinstance(value, kind):
            return _TYPE_NAMES[kind]
    return type(value).__name__


def _matches(value: Any, types: _Types) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _check_value(value: Any, types: _Types, where: str, source: str) -> Any:
    if not _matches(value, types):
        expected = " or ".join(_TYPE_NAMES[t] for t in types)
        raise SpecError(
            f"{where} of {source} must be {expected}, got {value!r} ({_describe(value)})."
        )
    if isinstance(value, int) and not isinstance(value, bool) and types == (float,):
        return float(value)
    return value


def _check_table(
    table: Mapping[str, Any], name: str, source: str, label: str | None = None
) -> dict[str, Any]:
    """Check every key of one table against the schema; return the table with checked values.

    ``label`` names the table in messages (default: ``[name]``).
    """
    schema = _SCHEMA[name]
    label = label or _section(name)
    checked: dict[str, Any] = {}
    for key, value in table.items():
        if key not in schema:
            raise SpecError(
                f"unknown key {key!r} {'at' if not name else 'in'} {label} of {source}; "
                f"allowed: {sorted(schema)}."
                f"{close_matches(key, schema)}"
            )
        where = f"{key!r} in {label}"
        checked[key] = _check_value(value, schema[key], where, source)
    return checked


# ----------------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class ModelSpec:
    """The ``[model]`` table: a formula (with params, priors ...) or a model function."""

    formula: str | None = None
    function: str | None = None
    family: str | None = None
    link: str | None = None
    calibration: Path | None = None
    centered: Any = None
    zero_sum: Any = None
    dropna: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    priors: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, list[str]] = field(default_factory=dict)

    @property
    def nonlinear(self) -> bool:
        """True for a nonlinear formula (``params``) or a calibration observation model."""
        return bool(self.params) or self.calibration is not None


@dataclass(frozen=True)
class SamplerSpec:
    """The ``[sampler]`` table: options of :func:`hierax.fit`."""

    chains: int = 4
    draws: int = 1000
    warmup: int = 1000
    seed: int | None = None
    target_accept: float | None = None
    max_tree_depth: int = 10
    dense_mass: bool = False
    multistart: int = 0
    init: str | dict[str, Any] | None = None

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``fit`` (``init`` excluded; see :func:`resolve_init`)."""
        kwargs: dict[str, Any] = {
            "chains": self.chains,
            "draws": self.draws,
            "warmup": self.warmup,
            "seed": self.seed,
            "max_tree_depth": self.max_tree_depth,
            "dense_mass": self.dense_mass,
            "multistart": self.multistart,
        }
        if self.target_accept is not None:
            kwargs["target_accept"] = self.target_accept
        return kwargs


@dataclass(frozen=True)
class OutputSpec:
    """The ``[output]`` table."""

    folder: Path
    show: list[str] | None = None
    report: bool = True


@dataclass(frozen=True)
class Spec:
    """A validated spec file.

    Attributes
    ----------
    path : Path or None
        The TOML file (None for a spec parsed from text).
    folder : Path
        Relative paths of the spec are resolved against this folder.
    text : str
        The TOML text, stored in ``fit.info["spec"]`` so the model can be rebuilt.
    title : str or None
    data_file : Path
        Absolute path of the table.
    model, sampler, output
        The ``[model]``, ``[sampler]`` and ``[output]`` tables.
    read_from : str or None
        The data file this spec was read back from (a fit file, see
        :func:`spec_from_fit`) when that file is not trusted: code the spec names
        (``function``, ``[model.functions]``, ``init``) is then not imported.
        None for a spec the user wrote (a spec file or text).
    """

    path: Path | None
    folder: Path
    text: str
    title: str | None
    data_file: Path
    model: ModelSpec
    sampler: SamplerSpec
    output: OutputSpec
    read_from: str | None = None

    @property
    def source(self) -> str:
        """How the spec is named in messages."""
        return str(self.path) if self.path is not None else "the spec"

    def with_sampler(self, **changes: Any) -> Spec:
        """A copy with some sampler settings replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, sampler=dataclasses.replace(self.sampler, **changes))

    def record(self) -> dict[str, Any]:
        """What ``fit.info["spec"]`` keeps: enough to rebuild the model later."""
        return {
            "file": str(self.path) if self.path is not None else None,
            "folder": str(self.folder),
            "data": str(self.data_file),
            "text": self.text,
        }


# --------------------------------------------------------------------------- parsing
def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    SpecError
        The TOML cannot be parsed, or a table, key or value is not valid.
    """
    path = Path(path)
    reason = unreadable_reason(path)
    if reason in ("does not exist", "is a folder, not a file"):
        raise FileNotFoundError(f"spec file {str(path)!r} {reason}.")
    if reason is not None:
        raise SpecError(f"spec file {str(path)!r} {reason}.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"spec file {str(path)!r} is not a UTF-8 text file (byte {error.start}: "
            f"{error.reason}); a spec is a TOML text file, see 'hierax example crossed'."
        ) from None
    except OSError as error:
        raise SpecError(
            f"spec file {str(path)!r} cannot be read ({error.strerror or error})."
        ) from None
    return parse_spec(text, path.resolve().parent, path=path.resolve())


def parse_spec(text: str, folder: str | Path, path: str | Path | None = None) -> Spec:
    """Validate the TOML ``text`` of a spec whose relative paths start at ``folder``."""
    folder = Path(folder)
    source = str(path) if path is not None else "the spec"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source} is not valid TOML: {error}.") from None
    top = _check_table(raw, "", source)
    for required in ("data", "model"):
        if required not in top:
            raise SpecError(f"{source} has no [{required}] table; see 'hierax example crossed'.")
    data = _check_table(top["data"], "data", source)
    if "file" not in data:
        raise SpecError(f'[data] of {source} needs file = "table.csv" (CSV, TSV or Parquet).')
    stem = Path(path).stem if path is not None else "hierax"
    return Spec(
        path=Path(path) if path is not None else None,
        folder=folder,
        text=text,
        title=top.get("title"),
        data_file=_resolve(folder, data["file"]),
        model=_model_spec(top["model"], folder, source),
        sampler=_sampler_spec(top.get("sampler", {}), source),
        output=_output_spec(top.get("output", {}), folder, stem, source),
    )


def _resolve(folder: Path, name: str) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else (folder / path).resolve()


def _model_spec(table: Mapping[str, Any], folder: Path, source: str) -> ModelSpec:
    model = _check_table(table, "model", source)
    if ("formula" in model) == ("function" in model):
        raise SpecError(
            f'[model] of {source} needs exactly one of formula = "y ~ ..." or '
            'function = "module:function".'
        )
    wrong = _FORMULA_ONLY if "function" in model else _FUNCTION_ONLY
    misplaced = [key for key in wrong if key in model]
    if misplaced:
        kind = "a model function" if "function" in model else "a formula"
        raise SpecError(f"[model] of {source}: {misplaced} do not apply to {kind}.")
    params = {k: _param_entry(k, v, source) for k, v in model.get("params", {}).items()}
    nonlinear = bool(params) or "calibration" in model
    for key in ("link", "zero_sum"):
        if nonlinear and key in model:
            raise SpecError(
                f"{key!r} in [model] of {source} applies to linear formulas only, not to a "
                "nonlinear formula (params) or a calibration observation model."
            )
    if not nonlinear and "functions" in model:
        raise SpecError(
            f"[model.functions] of {source} applies to nonlinear formulas ([model.params]) only."
        )
    if nonlinear and "centered" in model and not isinstance(model["centered"], dict):
        raise SpecError(
            f"'centered' in [model] of {source} must be a table per group term for a nonlinear "
            "formula, e.g. centered = { intercept_batch = true }."
        )
    if isinstance(model.get("centered"), str) and model["centered"] != "auto":
        raise SpecError(
            f"'centered' in [model] of {source} must be \"auto\", true, false or a table, "
            f"got {model['centered']!r}."
        )
    return ModelSpec(
        formula=model.get("formula"),
        function=model.get("function"),
        family=model.get("family"),
        link=model.get("link"),
        calibration=_resolve(folder, model["calibration"]) if "calibration" in model else None,
        centered=_bool_table(model.get("centered"), "centered", source),
        zero_sum=_bool_table(model.get("zero_sum"), "zero_sum", source),
        dropna=model.get("dropna"),
        params=params,
        priors={k: _prior_entry(k, v, source) for k, v in model.get("priors", {}).items()},
        functions={
            k: _check_value(v, (str,), f"{k!r} in [model.functions]", source)
            for k, v in model.get("functions", {}).items()
        },
        data={k: _data_entry(k, v, source) for k, v in model.get("data", {}).items()},
        dims={
            k: _string_list(v, f"{k!r} in [model.dims]", source)
            for k, v in model.get("dims", {}).items()
        },
    )


def _bool_table(value: Any, key: str, source: str) -> Any:
    if isinstance(value, dict):
        for name, flag in value.items():
            _check_value(flag, (bool,), f"{name!r} in [model.{key}]", source)
    return value


def _string_list(value: Any, where: str, source: str) -> list[str]:
    _check_value(value, (list,), where, source)
    for item in value:
        _check_value(item, (str,), f"each entry of {where}", source)
    return list(value)


def _param_entry(name: str, value: Any, source: str) -> str | dict[str, Any]:
    where = f"parameter {name!r} in [model.params]"
    _check_value(value, (str, dict), where, source)
    if isinstance(value, str):
        return value
    entry = _check_table(value, "model.params.*", source, where)
    if "latent" in entry and len(entry) > 1:
        raise SpecError(
            f'{where} of {source}: a latent parameter takes only latent = "Dist(...)", '
            f"not {sorted(set(entry) - {'latent'})}."
        )
    return entry


def _prior_entry(name: str, value: Any, source: str) -> str | float:
    return _check_value(value, (str, float), f"prior {name!r} in [model.priors]", source)


def _data_entry(name: str, value: Any, source: str) -> Any:
    where = f"argument {name!r} in [model.data]"
    _check_value(value, (str, float, bool, list, dict), where, source)
    if not isinstance(value, dict):
        return value
    entry = _check_table(value, "model.data.*", source, where)
    kinds = [k for k in ("column", "factor", "levels", "rows") if k in entry]
    if len(kinds) != 1 or ("dim" in entry and kinds != ["factor"]):
        raise SpecError(
            f'{where} of {source} must be one of {{ column = "col" }}, '
            '{ factor = "col" } (optionally with dim = "name"), { levels = "col" } or '
            "{ rows = true }."
        )
    return entry


def _positive(value: int, key: str, source: str, minimum: int = 1) -> int:
    if value < minimum:
        raise SpecError(
            f"{key!r} in [sampler] of {source} must be at least {minimum}, got {value}."
        )
    return value


def _sampler_spec(table: Mapping[str, Any], source: str) -> SamplerSpec:
    sampler = _check_table(table, "sampler", source)
    for key, minimum in (
        ("chains", 1),
        ("draws", 1),
        ("warmup", 0),
        ("max_tree_depth", 1),
        ("multistart", 0),
        ("seed", 0),
    ):
        if key in sampler:
            _positive(sampler[key], key, source, minimum)
    accept = sampler.get("target_accept")
    if accept is not None and not 0.0 < accept < 1.0:
        raise SpecError(
            f"'target_accept' in [sampler] of {source} must be in (0, 1), got {accept}."
        )
    init = sampler.get("init")
    if isinstance(init, str) and ":" not in init:
        raise SpecError(
            f"'init' in [sampler] of {source} must be \"module:function\" or a table of values, "
            f"got {init!r}."
        )
    return SamplerSpec(**sampler)


def _output_spec(table: Mapping[str, Any], folder: Path, stem: str, source: str) -> OutputSpec:
    output = _check_table(table, "output", source)
    show = output.get("show")
    return OutputSpec(
        folder=_resolve(folder, output.get("folder", f"{stem}-fit")),
        show=None if show is None else _string_list(show, "'show' in [output]", source),
        report=output.get("report", True),
    )


# ------------------------------------------------------------------------- building
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
        from .fit import fit as _fit

        return _fit(
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
    from .nonlinear import latent, param

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
        from .calibration import CalibrationModel

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
    from .model import Model

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


def spec_from_fit(fit: Fit, where: str = "this fit", *, trust: bool = False) -> Spec:
    """The spec recorded in a fit made by ``hierax fit`` (or :func:`fit_spec`).

    Parameters
    ----------
    fit : Fit
    where : str
        How the fit is named in messages (e.g. its file name, quoted).
    trust : bool
        A fit file is data: by default, building the model of the returned spec
        (:func:`build_model`) refuses to import the code it names (a model
        ``function``, ``[model.functions]``, an ``init`` function) with a
        :class:`~hierax.errors.FileFormatError`. ``trust=True`` allows it, for a
        file you made or whose author you trust (``hierax predict --trust-file``).

    Raises
    ------
    SpecError
        No spec is recorded in the fit.
    FileFormatError
        The recorded spec is not what ``hierax fit`` writes (a changed file).
    """
    record = fit.info.get("spec")
    if not isinstance(record, Mapping) or "text" not in record:
        raise SpecError(
            f"{where} was not made from a spec file (no spec recorded in it); only fits made by "
            "'hierax fit spec.toml' can be rebuilt."
        )
    for key in ("text", "folder", "file", "data"):
        value = record.get(key)
        if value is None and key in ("file", "data"):
            continue
        if not isinstance(value, str):
            raise FileFormatError(
                f"the spec recorded in {where} is corrupt: {key!r} must be a string, got {value!r}."
            )
    try:
        spec = parse_spec(record["text"], record["folder"], record.get("file"))
    except SpecError as error:
        raise FileFormatError(f"the spec recorded in {where} is corrupt: {error}") from None
    return dataclasses.replace(
        spec,
        data_file=Path(record.get("data") or spec.data_file),
        read_from=None if trust else where,
    )


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
