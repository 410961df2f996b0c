"""The tables and keys of a spec file: the schema every key and value is checked
against, and the validated :class:`Spec` with its ``[model]``, ``[sampler]`` and
``[output]`` tables (see :mod:`hierax.interface.spec` for the file format).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hierax.errors import ModelError, close_matches

__all__ = [
    "FORMULA_ONLY",
    "FUNCTION_ONLY",
    "ModelSpec",
    "OutputSpec",
    "SamplerSpec",
    "Spec",
    "SpecError",
    "check_table",
    "check_value",
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

FORMULA_ONLY = (
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
FUNCTION_ONLY = ("data", "dims")

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


def check_value(value: Any, types: _Types, where: str, source: str) -> Any:
    if not _matches(value, types):
        expected = " or ".join(_TYPE_NAMES[t] for t in types)
        raise SpecError(
            f"{where} of {source} must be {expected}, got {value!r} ({_describe(value)})."
        )
    if isinstance(value, int) and not isinstance(value, bool) and types == (float,):
        return float(value)
    return value


def check_table(
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
        checked[key] = check_value(value, schema[key], where, source)
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
