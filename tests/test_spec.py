"""Spec files: schema validation with messages that name the key, and the seed specs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import hierax as hx
from hierax.examples import crossed
from hierax.frontends.nonlinear import NonlinearModel
from hierax.interface.spec import (
    FunctionModel,
    SpecError,
    build_model,
    load_spec,
    parse_spec,
    read_data,
    resolve_init,
    spec_from_fit,
)

SPECS = Path(hx.__file__).parent / "examples" / "specs"
SEED_SPECS = ["binaries", "calibration", "crossed", "crossed_naive", "parallax", "regression"]
DATA = Path(hx.__file__).parent / "examples" / "data"

BASE = f"""
[data]
file = "{DATA / "crossed.csv"}"

[model]
formula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"
"""


def parse(text: str, folder: Path | None = None) -> object:
    return parse_spec(text, folder or DATA, path=Path("/specs/test.toml"))


# ------------------------------------------------------------------ schema errors
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[model.priors]\nsigma = 1\n[sampler]\ndraw = 10", "unknown key 'draw' in \\[sampler\\]"),
        ("[sampler]\ndraw = 10", "Did you mean 'draws'"),
        ("[output]\nfolders = 'x'", "unknown key 'folders' in \\[output\\].*'folder'"),
        (
            "[sampler]\nchains = 'four'",
            "'chains' in \\[sampler\\] of .* must be an integer, got 'four'",
        ),
        (
            "[sampler]\nchains = true",
            "'chains' in \\[sampler\\] of .* must be an integer, got True",
        ),
        ("[sampler]\nchains = 0", "'chains' in \\[sampler\\] of .* at least 1, got 0"),
        ("[sampler]\ntarget_accept = 1.5", "target_accept.* in \\(0, 1\\)"),
        ("[sampler]\ninit = 'values'", "'init' in \\[sampler\\] of .* must be \"module:function\""),
        ("[output]\nshow = 'sigma'", "'show' in \\[output\\] of .* must be an array"),
        ("[output]\nshow = [1]", "each entry of 'show' in \\[output\\] of .* must be a string"),
        (
            "[model.priors]\nsigma = true",
            "prior 'sigma' in \\[model.priors\\] of .* must be a string",
        ),
    ],
)
def test_schema_errors_name_the_key(extra: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse(BASE + extra)


def test_unknown_top_level_key() -> None:
    with pytest.raises(SpecError, match="unknown key 'tittle' at the top level.*'title'"):
        parse("tittle = 'x'\n" + BASE)


def test_unknown_model_key_has_close_match() -> None:
    text = BASE.replace("formula =", "formulla =")
    with pytest.raises(SpecError) as caught:
        parse(text)
    assert "unknown key 'formulla' in [model] of /specs/test.toml" in str(caught.value)
    assert "Did you mean 'formula'?" in str(caught.value)
    assert isinstance(caught.value, hx.ModelError)


def test_missing_tables_and_keys() -> None:
    with pytest.raises(SpecError, match=r"no \[model\] table"):
        parse(BASE.split("[model]")[0])
    with pytest.raises(SpecError, match=r"\[data\] of .* needs file"):
        parse("[data]\n[model]\nformula = 'y ~ 1'")
    with pytest.raises(SpecError, match="exactly one of formula"):
        parse(BASE + 'function = "hierax.examples.crossed:model"')
    with pytest.raises(SpecError, match="not valid TOML.*line"):
        parse("[data\nfile = 'x.csv'")


def test_keys_of_the_wrong_kind_of_model() -> None:
    with pytest.raises(SpecError, match=r"\['data'\] do not apply to a formula"):
        parse(BASE + "[model.data]\ny = 'logfc'")
    function = BASE.replace(
        'formula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"',
        'function = "hierax.examples.crossed:model_naive"\nfamily = "gaussian"',
    )
    with pytest.raises(SpecError, match=r"\['family'\] do not apply to a model function"):
        parse(function)
    with pytest.raises(SpecError, match="'link' in \\[model\\].*linear formulas only"):
        parse(BASE + 'link = "log"\n[model.params]\nk = "1"')
    with pytest.raises(SpecError, match=r"\[model.functions\] .* nonlinear formulas"):
        parse(BASE + '[model.functions]\nkepler = "x:y"')
    with pytest.raises(SpecError, match="'centered'.*table per group term"):
        parse(BASE + 'centered = true\n[model.params]\nk = "1"')
    with pytest.raises(SpecError, match="'centered'.*\"auto\", true, false"):
        parse(BASE + 'centered = "yes"')


def test_param_and_data_entries_are_checked() -> None:
    with pytest.raises(SpecError, match="unknown key 'lowr' in parameter 'k'.*'lower'"):
        parse(BASE + '[model.params]\nk = { formula = "1", lowr = 0 }')
    with pytest.raises(SpecError, match="latent parameter takes only latent"):
        parse(BASE + '[model.params]\nr = { latent = "Normal(0, 1)", formula = "1" }')
    function = BASE.replace(
        'formula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"',
        'function = "hierax.examples.crossed:model_naive"',
    )
    with pytest.raises(SpecError, match="unknown key 'factr' in argument 'gene'.*'factor'"):
        parse(function + '[model.data]\ngene = { factr = "gene" }')
    with pytest.raises(SpecError, match="must be one of"):
        parse(function + '[model.data]\ngene = { factor = "gene", levels = "gene" }')


def test_paths_resolve_against_the_spec_folder(tmp_path: Path) -> None:
    spec_file = tmp_path / "sub" / "model.toml"
    spec_file.parent.mkdir()
    spec_file.write_text(
        '[data]\nfile = "../table.csv"\n[model]\nformula = "y ~ 1"\n[output]\nfolder = "out"'
    )
    spec = load_spec(spec_file)
    assert spec.data_file == (tmp_path / "table.csv").resolve()
    assert spec.output.folder == (tmp_path / "sub" / "out").resolve()
    spec_file.write_text('[data]\nfile = "t.csv"\n[model]\nformula = "y ~ 1"')
    assert load_spec(spec_file).output.folder == spec_file.parent / "model-fit"


def test_missing_spec_and_data_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="spec file .*nope.toml' does not exist"):
        load_spec(tmp_path / "nope.toml")
    spec_file = tmp_path / "model.toml"
    spec_file.write_text('[data]\nfile = "missing.csv"\n[model]\nformula = "y ~ 1"')
    with pytest.raises(hx.DataError, match="data file .*missing.csv' named in \\[data\\]"):
        read_data(load_spec(spec_file))


def test_integer_numbers_are_accepted_as_floats() -> None:
    spec = parse(BASE + "[sampler]\ntarget_accept = 1e-1\n[model.priors]\nsigma = 2")
    assert spec.sampler.target_accept == 0.1
    assert spec.model.priors["sigma"] == 2.0


# ------------------------------------------------------------------- seed specs
@pytest.mark.parametrize("name", SEED_SPECS)
def test_seed_spec_loads_and_builds(name: str) -> None:
    spec = load_spec(SPECS / f"{name}.toml")
    assert spec.data_file.exists() and spec.data_file.parent == DATA
    assert spec.title
    model = build_model(spec)
    expected = {
        "crossed": hx.Model,
        "regression": hx.Model,
        "crossed_naive": FunctionModel,
    }.get(name, NonlinearModel)
    assert isinstance(model, expected)
    init = resolve_init(spec, model.table)
    if name in ("parallax", "binaries"):
        assert init is not None and init
    assert spec.output.show


def test_calibration_spec_matches_the_python_example() -> None:
    from hierax.examples import calibration_cal

    model = build_model(load_spec(SPECS / "calibration.toml"))
    assert model.measurement.theta_names == calibration_cal.LINEAR_CALIBRATION.theta_names
    assert model.priors.loc["sd_intercept_batch", "prior"] == "fixed at 0.1"


def test_naive_function_model_arguments_match_the_example() -> None:
    model = build_model(load_spec(SPECS / "crossed_naive.toml"))
    setup = crossed.setup(naive=True)
    assert model.function is crossed.model_naive
    for key, value in setup["data"].items():
        np.testing.assert_array_equal(model.data[key], value)
    assert model.coords == setup["coords"]
    assert model.dims["gene"] == ["obs"] and model.dims["logfc"] == ["obs"]


def test_function_model_literals_rows_and_dims(tmp_path: Path) -> None:
    text = f"""
[data]
file = "{DATA / "crossed.csv"}"
[model]
function = "hierax.examples.crossed:model_naive"
[model.data]
gene = {{ factor = "gene", dim = "g" }}
n = {{ rows = true }}
scale = 2.5
weights = [1, 2]
[model.dims]
alpha_g = ["g"]
"""
    model = build_model(parse(text))
    assert model.data["n"] == 90 and model.data["scale"] == 2.5
    np.testing.assert_array_equal(model.data["weights"], [1, 2])
    assert model.coords == {"g": [0, 1, 2]} and model.dims["alpha_g"] == ["g"]


def test_function_model_errors() -> None:
    function = BASE.replace(
        'formula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"',
        'function = "hierax.examples.crossed:model_naiv"',
    )
    with pytest.raises(SpecError, match="has no 'model_naiv'.*Did you mean 'model_naive'"):
        build_model(parse(function))
    with pytest.raises(SpecError, match="cannot import module 'no_such_module'"):
        build_model(parse(function.replace("hierax.examples.crossed", "no_such_module")))
    good = function.replace("model_naiv", "model_naive")
    with pytest.raises(hx.DataError, match="column 'genes'.*Did you mean 'gene'"):
        build_model(parse(good + '[model.data]\ngene = { factor = "genes" }'))


def test_formula_errors_come_from_the_model() -> None:
    with pytest.raises(hx.ModelError, match="unknown family 'gausian'.*'gaussian'"):
        build_model(parse(BASE + 'family = "gausian"'))
    with pytest.raises(hx.ModelError, match="unknown distribution 'HalfNormel'"):
        build_model(parse(BASE + '[model.priors]\nsigma = "HalfNormel(1)"'))
    with pytest.raises(hx.DataError, match="'genes'.*not in the data.*Did you mean 'gene'"):
        build_model(parse(BASE.replace("(1 | gene)", "(1 | genes)")))


def test_nonlinear_params_from_tables() -> None:
    text = f"""
[data]
file = "{DATA / "calibration.csv"}"
[model]
formula = "readout ~ intercept + slope * S0 * (1 - exp(-k * time))"
[model.params]
intercept = "1 + (1 | batch)"
slope = "1"
S0 = "1"
k = {{ formula = "1", lower = 0, upper = 1 }}
[model.priors]
intercept = "Normal(0.3, 0.2)"
slope = "Normal(0.5, 0.5)"
S0 = "LogNormal(log(5), 0.05)"
k_Intercept = "Normal(-2.5, 1)"
sigma = "LogNormal(log(0.1), 0.1)"
"""
    model = build_model(parse(text))
    assert model.params["k"].lower == 0.0 and model.params["k"].upper == 1.0
    assert "k_Intercept" in model.priors.index


def test_init_from_a_table_of_values() -> None:
    spec = parse(BASE + "[sampler]\ninit = { Intercept = -1.0, r_gene = [0.1, 0.2, 0.3] }")
    init = resolve_init(spec, pd.DataFrame())
    assert init is not None
    assert init["Intercept"] == -1.0
    np.testing.assert_array_equal(init["r_gene"], [0.1, 0.2, 0.3])


def test_init_function_must_return_a_dict() -> None:
    spec = parse(BASE + '[sampler]\ninit = "builtins:len"')
    with pytest.raises(SpecError, match="must return a dict"):
        resolve_init(spec, pd.DataFrame())
    spec = parse(BASE + '[sampler]\ninit = "hierax.examples.crossed:load_data"')
    with pytest.raises(SpecError, match="called with the table as its one argument"):
        resolve_init(spec, pd.DataFrame())


def test_parquet_data(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    crossed.load_data().to_parquet(tmp_path / "crossed.parquet")
    spec_file = tmp_path / "crossed.toml"
    spec_file.write_text(BASE.replace(str(DATA / "crossed.csv"), "crossed.parquet"))
    model = build_model(load_spec(spec_file))
    assert model.design.n == 90


def test_spec_round_trips_through_fit_info(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "crossed.toml")
    record = spec.record()
    assert record["data"] == str(DATA / "crossed.csv")
    rebuilt = spec_from_fit(SimpleNamespace(info={"spec": record}))  # type: ignore[arg-type]
    assert rebuilt.model == spec.model and rebuilt.data_file == spec.data_file
    with pytest.raises(SpecError, match="not made from a spec file"):
        spec_from_fit(SimpleNamespace(info={}))  # type: ignore[arg-type]


def test_sampler_overrides_ignore_none() -> None:
    spec = load_spec(SPECS / "crossed.toml").with_sampler(draws=10, chains=None)
    assert spec.sampler.draws == 10 and spec.sampler.chains == 4
    kwargs = spec.sampler.fit_kwargs()
    assert kwargs["draws"] == 10 and "target_accept" not in kwargs


def test_parquet_without_an_engine_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "table.parquet").write_bytes(b"PAR1")
    spec_file = tmp_path / "model.toml"
    spec_file.write_text('[data]\nfile = "table.parquet"\n[model]\nformula = "y ~ 1"')

    def missing_engine(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", missing_engine)
    with pytest.raises(hx.DataError, match="needs a Parquet engine: pip install pyarrow"):
        read_data(load_spec(spec_file))


def test_functions_of_a_nonlinear_expression() -> None:
    text = f"""
[data]
file = "{DATA / "calibration.csv"}"
[model]
formula = "readout ~ a + b * decay(time)"
[model.params]
a = "1"
b = "1"
[model.functions]
decay = "jax.numpy:log1p"
[model.priors]
a = "Normal(0, 1)"
b = "Normal(0, 1)"
"""
    model = build_model(parse(text))
    import jax.numpy as jnp

    assert model.functions["decay"] is jnp.log1p
    with pytest.raises(SpecError, match="cannot import module 'nowhere'"):
        build_model(parse(text.replace("jax.numpy:log1p", "nowhere:f")))
