"""Reading spec files: TOML text into a validated :class:`~hierax.interface.spec.Spec`,
from a file (:func:`load_spec`) or back from a fit that recorded it
(:func:`spec_from_fit`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hierax.core.files import unreadable_reason
from hierax.errors import FileFormatError
from hierax.interface.spec.schema import (
    FORMULA_ONLY,
    FUNCTION_ONLY,
    ModelSpec,
    OutputSpec,
    SamplerSpec,
    Spec,
    SpecError,
    check_table,
    check_value,
)

if TYPE_CHECKING:
    from hierax.results.fit import Fit

__all__ = ["load_spec", "parse_spec", "spec_from_fit"]


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
    top = check_table(raw, "", source)
    for required in ("data", "model"):
        if required not in top:
            raise SpecError(f"{source} has no [{required}] table; see 'hierax example crossed'.")
    data = check_table(top["data"], "data", source)
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
    model = check_table(table, "model", source)
    if ("formula" in model) == ("function" in model):
        raise SpecError(
            f'[model] of {source} needs exactly one of formula = "y ~ ..." or '
            'function = "module:function".'
        )
    wrong = FORMULA_ONLY if "function" in model else FUNCTION_ONLY
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
            k: check_value(v, (str,), f"{k!r} in [model.functions]", source)
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
            check_value(flag, (bool,), f"{name!r} in [model.{key}]", source)
    return value


def _string_list(value: Any, where: str, source: str) -> list[str]:
    check_value(value, (list,), where, source)
    for item in value:
        check_value(item, (str,), f"each entry of {where}", source)
    return list(value)


def _param_entry(name: str, value: Any, source: str) -> str | dict[str, Any]:
    where = f"parameter {name!r} in [model.params]"
    check_value(value, (str, dict), where, source)
    if isinstance(value, str):
        return value
    entry = check_table(value, "model.params.*", source, where)
    if "latent" in entry and len(entry) > 1:
        raise SpecError(
            f'{where} of {source}: a latent parameter takes only latent = "Dist(...)", '
            f"not {sorted(set(entry) - {'latent'})}."
        )
    return entry


def _prior_entry(name: str, value: Any, source: str) -> str | float:
    return check_value(value, (str, float), f"prior {name!r} in [model.priors]", source)


def _data_entry(name: str, value: Any, source: str) -> Any:
    where = f"argument {name!r} in [model.data]"
    check_value(value, (str, float, bool, list, dict), where, source)
    if not isinstance(value, dict):
        return value
    entry = check_table(value, "model.data.*", source, where)
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
    sampler = check_table(table, "sampler", source)
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
    output = check_table(table, "output", source)
    show = output.get("show")
    return OutputSpec(
        folder=_resolve(folder, output.get("folder", f"{stem}-fit")),
        show=None if show is None else _string_list(show, "'show' in [output]", source),
        report=output.get("report", True),
    )


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
