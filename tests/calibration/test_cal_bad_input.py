"""Bad input to calibration models (issue 16): degenerate calibration data, readouts
outside what a calibration produces, damaged calibration files, and the CLI's
errors for bad input files. Each check asserts the exception or warning type and
that the message names the culprit."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
import pytest

from hierax.calibration import CalibrationModel, MeanFunction
from hierax.errors import (
    CalibrationWarning,
    DataError,
    FileFormatError,
    IncompatibleModelError,
    IncompatibleVersionError,
)
from hierax.interface.cli import main

LINE = [0.1, 0.5, 0.05]  # intercept, slope, sigma


def _linear_data(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 10.0, n)
    return x, CalibrationModel("linear", "normal").simulate(x, LINE, seed=2)


@pytest.fixture(scope="module")
def linear_fit() -> CalibrationModel:
    cal = CalibrationModel("linear", "normal", independent_key="conc", dependent_key="absorbance")
    return cal.fit_mle(*_linear_data())


# ------------------------------------------------ case 7: degenerate calibration data
DEGENERATE = [
    pytest.param(
        "linear", {}, np.full(10, 2.0), np.linspace(0, 1, 10),
        r"'conc' has 1 distinct value\(s\) \(2\).*at least 2 distinct 'conc'",
        id="all-x-equal",
    ),
    pytest.param(
        "logistic", {}, np.repeat([1.0, 5.0], 10), np.tile([0.2, 1.8], 10),
        r"'conc' has 2 distinct.*\['I_x', 'I_y', 'Lmax', 's'\].*at least 4 distinct",
        id="logistic-two-levels",
    ),
    pytest.param(
        "polynomial", {"degree": 3}, np.repeat([0.0, 1.0, 2.0], 4), np.arange(12.0),
        r"'conc' has 3 distinct.*at least 4 distinct",
        id="cubic-three-levels",
    ),
    pytest.param(
        "linear", {"scale_degree": 2}, np.repeat([0.0, 1.0], 5), np.arange(10.0),
        r"'conc' has 2 distinct.*noise scale.*3 coefficients.*at least 3 distinct",
        id="scale-polynomial",
    ),
    pytest.param(
        "linear", {}, np.linspace(0, 1, 10), np.full(10, 0.7),
        r"all 10 readouts of the dependent variable 'absorbance' equal 0\.7.*at least 2 distinct",
        id="all-y-equal",
    ),
    pytest.param(
        "linear", {}, [0.0, 1.0], [0.2, 0.9],
        r"only 2 finite calibration point.*3 parameters and needs at least 3 points",
        id="too-few-points",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("mean", "options", "x", "y", "match"), DEGENERATE)
def test_degenerate_calibration_data_is_a_named_error(mean, options, x, y, match) -> None:
    cal = CalibrationModel(
        mean, "normal", independent_key="conc", dependent_key="absorbance", **options
    )
    with pytest.raises(DataError, match=match):
        cal.fit_mle(x, y)


def test_enough_distinct_levels_with_replicates_fit() -> None:
    # 4 levels for the 4 logistic parameters, replicates give the noise: allowed
    cal = CalibrationModel("logistic", "normal")
    x = np.repeat([0.0, 3.0, 6.0, 10.0], 8)
    y = cal.simulate(x, [5.0, 1.0, 2.0, 0.4, 0.05], seed=4)
    fitted = cal.fit_mle(x, y)
    assert fitted.mle is not None and np.all(np.isfinite(fitted.theta_fitted))


def test_non_finite_standard_errors_warn_with_the_parameter_names() -> None:
    # the curve does not depend on 'c': the likelihood is exactly flat along it, so
    # the fit of the line is fine but the curvature gives no standard errors
    flat_in_c = MeanFunction(
        "flat_in_c", lambda x, t: t[0] + t[1] * x + 0.0 * t[2], ("a", "b", "c")
    )
    cal = CalibrationModel(flat_in_c, "normal")
    x = np.linspace(0.0, 10.0, 30)
    y = cal.simulate(x, [0.1, 0.5, 1.0, 0.05], seed=3)
    with pytest.warns(
        CalibrationWarning, match=r"standard errors of \[.*'c'.*\] are not finite.*\['c'\]"
    ):
        fitted = cal.fit_mle(x, y, guess=[0.0, 1.0, 1.0, 0.1])
    assert fitted.mle is not None and fitted.mle.covariance_method == "unavailable"
    assert not np.isfinite(fitted.mle.standard_errors[2])
    assert abs(fitted.theta_dict["b"] - 0.5) < 0.05


def test_laplace_noise_gets_finite_standard_errors_without_a_warning() -> None:
    # the Laplace likelihood has no curvature in the location: the information comes
    # from the scores, which for a line with scale b is X'X / b**2 exactly
    x = np.linspace(0.0, 10.0, 200)
    cal = CalibrationModel("linear", "laplace")
    y = cal.simulate(x, [0.1, 0.5, 0.2], seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        fitted = cal.fit_mle(x, y)
    assert fitted.mle is not None and fitted.mle.covariance_method == "outer product of scores"
    design = np.column_stack([np.ones_like(x), x])
    scale = fitted.theta_dict["scale"]
    expected = scale * np.sqrt(np.diag(np.linalg.inv(design.T @ design)))
    np.testing.assert_allclose(fitted.mle.standard_errors[:2], expected, rtol=0.05)


# ------------------------------------ case 8: readouts outside what the model produces
def test_infer_far_outside_warns_and_flags_the_case(linear_fit: CalibrationModel) -> None:
    with pytest.warns(CalibrationWarning) as caught:
        result = linear_fit.infer_independent([100.0], lower=0, upper=10)
    message = " ".join(str(w.message) for w in caught)
    assert "readout(s) [100] of 'absorbance'" in message
    assert "'conc' in [0, 10]" in message and "no estimate" in message
    assert bool(result.out_of_range)
    assert "no estimate" in result.summary()


def test_infer_flags_only_the_case_outside(linear_fit: CalibrationModel) -> None:
    with pytest.warns(CalibrationWarning, match=r"\[-40\] of 'absorbance' of case\(s\) \[1\]"):
        result = linear_fit.infer_independent([[2.6, 2.55], [-40.0, np.nan]], 0.0, 10.0)
    np.testing.assert_array_equal(result.out_of_range, [False, True])


def test_readout_just_past_the_bound_is_a_normal_posterior(linear_fit: CalibrationModel) -> None:
    # one noise sd beyond the mean at the upper bound: the data say "near 10"
    at_bound = float(linear_fit.predict_mean(10.0)) + float(linear_fit.theta_dict["sigma"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        result = linear_fit.infer_independent([at_bound], 0.0, 10.0)
    assert not bool(result.out_of_range)


def test_infer_outside_with_a_curve_that_saturates() -> None:
    cal = CalibrationModel("logistic", "studentt").with_theta([5.0, 1.0, 2.0, 0.4, 0.05, 5.0])
    with pytest.warns(CalibrationWarning, match=r"readout\(s\) \[100\] .*'x' in \[0, 10\]"):
        result = cal.infer_independent([100.0], 0.0, 10.0)
    assert bool(result.out_of_range)


def test_predict_independent_extrapolation_warns(linear_fit: CalibrationModel) -> None:
    with pytest.warns(
        CalibrationWarning, match=r"extrapolates: the readout\(s\) \[100\].*'conc' range \[0, 10\]"
    ):
        x = linear_fit.predict_independent(100.0)
    assert float(x) > 100  # the answer is still given, with the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        inside = linear_fit.predict_independent([1.0, 2.5])
    assert np.all((np.asarray(inside) > 0) & (np.asarray(inside) < 10))


def test_predict_independent_beyond_an_asymptote_warns() -> None:
    cal = CalibrationModel("logistic", "normal").with_theta([5.0, 1.0, 2.0, 0.4, 0.05])
    with pytest.warns(CalibrationWarning, match=r"no 'x' gives the mean 'y' = \[2\.5\]"):
        x = cal.predict_independent([1.0, 2.5])
    assert np.isfinite(x[0]) and np.isnan(x[1])


def test_predict_independent_under_jit_is_not_checked(linear_fit: CalibrationModel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        x = jax.jit(linear_fit.predict_independent)(100.0)
    assert float(x) > 100


# ------------------------------------------------------------ damaged calibration files
@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    x = np.linspace(0.0, 4.0, 9)
    cal = CalibrationModel(
        "polynomial",
        "normal",
        degree=2,
        independent_key="conc",
        dependent_key="absorbance",
        theta_fitted=[0.1, 0.5, -0.02, 0.05],
        theta_bounds=[(None, None), (0.0, None), (None, None), (0.0, 1.0)],
        theta_guess=[0.0, 0.4, 0.0, 0.1],
        cal_independent=x,
        cal_dependent=0.1 + 0.5 * x,
    )
    return cal.save(tmp_path / "cal.json")


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        content = json.loads(path.read_text())
        change(content)
        path.write_text(json.dumps(content))

    return write


def _text(text: str | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return write


def _set(key: str, value: Any) -> Callable[[Path], None]:
    return _edit(lambda content: content.__setitem__(key, value))


def _drop(key: str) -> Callable[[Path], None]:
    return _edit(lambda content: content.pop(key))


def _to_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGED = [
    ("invalid-json", _text("{"), FileFormatError, "not a JSON file"),
    ("empty", _text(""), FileFormatError, "not a JSON file"),
    ("binary", _text(b"\x89PNG\r\n\x1a\n\x00\xff"), FileFormatError, "not a JSON file"),
    ("deep", _text("[" * 100_000), FileFormatError, "not a JSON file"),
    ("list", _text("[1, 2]"), FileFormatError, "holds a JSON list, not an object"),
    ("folder", _to_folder, FileFormatError, "is a folder"),
    ("missing-theta-names", _drop("theta_names"), FileFormatError, "lacks the key 'theta_names'"),
    ("missing-noise", _drop("noise"), FileFormatError, "lacks the key 'noise'"),
    ("missing-version", _drop("format_version"), FileFormatError, "'format_version'"),
    ("missing-fitted", _drop("theta_fitted"), FileFormatError, "lacks the key 'theta_fitted'"),
    ("names-short", _set("theta_names", ["a", "b"]), FileFormatError, "'theta_names' must be 4"),
    ("names-repeated", _set("theta_names", ["a", "a", "b", "c"]), FileFormatError, "'theta_names'"),
    ("names-numbers", _set("theta_names", [1, 2, 3, 4]), FileFormatError, "'theta_names'"),
    ("fitted-short", _set("theta_fitted", [0.1, 0.5]), FileFormatError, "'theta_fitted'.*4 entr"),
    ("fitted-text", _set("theta_fitted", "0.1 0.5"), FileFormatError, "'theta_fitted' must be"),
    ("fitted-string-entry", _set("theta_fitted", [0.1, "0.5", 0, 1]), FileFormatError,
     r"'theta_fitted' at \[1\] must be a number"),
    ("fitted-bool-entry", _set("theta_fitted", [0.1, True, 0, 1]), FileFormatError,
     r"'theta_fitted' at \[1\]"),
    ("guess-object", _set("theta_guess", {"a": 1}), FileFormatError, "'theta_guess'"),
    ("bounds-short", _set("theta_bounds", [[None, None]]), FileFormatError, "'theta_bounds'"),
    ("bounds-pair", _set("theta_bounds", [[0], [0, 1], [0, 1], [0, 1]]), FileFormatError,
     r"'theta_bounds' at \[0\] \(parameter 'c_0'\)"),
    ("bounds-reversed", _set("theta_bounds", [[1, 0], [0, 1], [0, 1], [0, 1]]), FileFormatError,
     "lower < upper"),
    ("bounds-text", _set("theta_bounds", [["a", 1], [0, 1], [0, 1], [0, 1]]), FileFormatError,
     r"'theta_bounds' at \[0\]"),
    ("data-lengths", _set("cal_dependent", [1.0, 2.0]), FileFormatError, "'cal_dependent'.*9 entr"),
    ("data-one-missing", _set("cal_dependent", None), FileFormatError, "'cal_dependent'"),
    ("data-text", _set("cal_independent", "1,2,3"), FileFormatError, "'cal_independent'"),
    ("degree-text", _set("degree", "two"), FileFormatError, "'degree'"),
    ("degree-negative", _set("degree", -1), FileFormatError, "'degree'"),
    ("degree-huge", _set("degree", 10**12), FileFormatError, "'degree'"),
    ("degree-null", _set("degree", None), FileFormatError, "'degree'"),
    ("scale-degree-text", _set("scale_degree", "1"), FileFormatError, "'scale_degree'"),
    ("key-number", _set("independent_key", 5), FileFormatError, "'independent_key'"),
    ("model-type-number", _set("model_type", 5), FileFormatError, "'model_type'"),
    ("mean-number", _set("mean_function", 5), FileFormatError, "'mean_function'"),
    ("unknown-mean", _set("mean_function", "logistc"), IncompatibleModelError,
     "'logistc' .*'mean_function'.*Did you mean 'logistic'"),
    ("unknown-noise", _set("noise", "studnett"), IncompatibleModelError,
     "'studnett' .*'noise'.*Did you mean 'studentt'"),
    ("version-list", _set("format_version", ["1"]), FileFormatError, "'format_version'"),
    ("version-major", _set("format_version", 3), IncompatibleVersionError, "version 3"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [pytest.param(damage, error, match, id=name) for name, damage, error, match in DAMAGED],
)
def test_damaged_file_names_the_file_and_key(saved: Path, damage, error, match) -> None:
    damage(saved)
    with pytest.raises(error, match=match) as info:
        CalibrationModel.load(saved)
    assert str(saved) in str(info.value)
    assert isinstance(info.value, FileFormatError)


def test_missing_file_is_both_a_format_and_a_not_found_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(FileFormatError, match="missing.json' does not exist") as info:
        CalibrationModel.load(path)
    assert isinstance(info.value, FileNotFoundError)


def test_the_untouched_file_still_loads(saved: Path) -> None:
    loaded = CalibrationModel.load(saved)
    assert loaded.theta_bounds == ((-np.inf, np.inf), (0.0, np.inf), (-np.inf, np.inf), (0.0, 1.0))
    assert loaded.cal_independent is not None and loaded.cal_independent.size == 9


def test_loading_never_imports_code_a_file_names(
    saved: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    module = tmp_path / "hierax_probe_module.py"
    module.write_text(f"open({str(marker)!r}, 'w').close()\ndef f(x, t):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for key in ("mean_function", "noise"):
        _set(key, "hierax_probe_module:f")(saved)
        with pytest.raises(IncompatibleModelError, match="never loaded from a file"):
            CalibrationModel.load(saved)
        _set(key, "hierax_probe_module")(saved)
        with pytest.raises(IncompatibleModelError, match=repr("hierax_probe_module")):
            CalibrationModel.load(saved)
        _set(key, "polynomial" if key == "mean_function" else "normal")(saved)
    assert not marker.exists() and "hierax_probe_module" not in sys.modules


def test_a_custom_noise_model_given_at_load_is_used(tmp_path: Path) -> None:
    from hierax.calibration import NormalNoise

    class WideNormal(NormalNoise):
        name = "wide_normal"  # type: ignore[assignment]

    cal = CalibrationModel("linear", WideNormal()).with_theta(LINE)
    path = cal.save(tmp_path / "wide.json")
    with pytest.raises(IncompatibleModelError, match="'wide_normal'.*YourNoiseModel"):
        CalibrationModel.load(path)
    assert isinstance(CalibrationModel.load(path, noise=WideNormal()).noise, WideNormal)


# ----------------------------------------------------------------------------- the CLI
def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_text("{"), "not a JSON file"),
        (_text("[]"), "JSON list"),
        (_set("theta_fitted", [1, "x", 2, 3]), "'theta_fitted' at [1]"),
        (_drop("cal_independent"), "'cal_independent'"),
        (_set("noise", "gauss"), "'gauss'"),
    ],
    ids=["invalid-json", "list", "non-numeric", "missing-key", "unknown-noise"],
)
def test_infer_command_names_the_damaged_file(
    saved: Path, capsys: pytest.CaptureFixture[str], damage, match: str
) -> None:
    damage(saved)
    assert main(["infer", str(saved), "--y", "0.5"]) == 2
    err = _one_line_error(capsys)
    assert str(saved) in err and match in err


def test_infer_command_prints_the_out_of_range_warning(
    saved: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["infer", str(saved), "--y", "100"]) == 0
    out = capsys.readouterr().out
    assert "warning: the readout(s) [100] of 'absorbance'" in out


@pytest.mark.parametrize(
    ("conc", "absorbance", "match"),
    [
        (["1", "2", "abc", "4"], [0.1, 0.2, 0.3, 0.4], "'conc' (given as --x) of {path} holds 1"),
        ([2.0, 2.0, 2.0, 2.0], [0.1, 0.2, 0.3, 0.4], "{path}: the independent variable 'conc'"),
        ([1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5], "{path}: all 4 readouts"),
    ],
    ids=["non-numeric", "x-all-equal", "y-all-equal"],
)
def test_calibrate_command_names_the_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], conc, absorbance, match: str
) -> None:
    path = tmp_path / "data.csv"
    pd.DataFrame({"conc": conc, "absorbance": absorbance}).to_csv(path, index=False)
    out = tmp_path / "cal.json"
    argv = ["calibrate", str(path), "--x", "conc", "--y", "absorbance", "--out", str(out)]
    assert main(argv) == 2
    assert match.format(path=path) in _one_line_error(capsys)
    assert not out.exists()


def test_calibrate_command_names_an_unreadable_data_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    argv = ["calibrate", str(path), "--x", "a", "--y", "b", "--out", str(tmp_path / "c.json")]
    assert main(argv) == 2
    assert str(path) in _one_line_error(capsys)


def test_calibrate_command_checks_the_output_before_fitting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["calibrate", str(tmp_path / "nowhere.csv"), "--x", "a", "--y", "b"]
    assert main([*argv, "--out", str(blocker / "cal.json")]) == 2
    assert "cannot create the folder" in _one_line_error(capsys)
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "is a folder" in _one_line_error(capsys)
