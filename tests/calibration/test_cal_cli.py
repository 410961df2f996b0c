"""``hierax calibrate`` and ``hierax infer`` on a small table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hierax.calibration import CalibrationModel
from hierax.interface.cli import main

TRUTH = [5.0, 1.0, 2.0, 0.4, 0.04, 5.0]  # logistic + StudentT


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    cal = CalibrationModel("logistic", "studentt")
    conc = np.repeat(np.linspace(0.0, 10.0, 30), 2)
    absorbance = cal.simulate(conc, TRUTH, seed=3)
    path = tmp_path / "data.csv"
    pd.DataFrame({"conc": conc, "absorbance": absorbance, "note": "x"}).to_csv(path, index=False)
    return path


def test_calibrate_writes_json_and_png_then_infer_prints_intervals(
    table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.json"
    code = main(
        [
            "calibrate",
            str(table),
            "--x",
            "conc",
            "--y",
            "absorbance",
            "--model",
            "logistic",
            "--noise",
            "studentt",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert out.exists() and out.with_suffix(".png").stat().st_size > 10_000
    for name in ("I_x", "I_y", "Lmax", "s", "scale", "df"):
        assert re.search(rf"^\s*{name}\s+-?\d", printed, re.MULTILINE), name
    assert "wrote" in printed and "cal.png" in printed
    cal = CalibrationModel.load(out)
    assert cal.independent_key == "conc" and cal.dependent_key == "absorbance"
    assert cal.theta_fitted is not None and abs(cal.theta_fitted[0] - 5.0) < 0.5

    code = main(["infer", str(out), "--y", "0.52", "0.55", "0.51"])
    assert code == 0
    printed = capsys.readouterr().out
    median = float(re.search(r"median\s+(\S+)", printed).group(1))
    eti = re.search(r"95 % ETI\s+\[(\S+), (\S+)\]", printed)
    hdi = re.search(r"95 % HDI\s+\[(\S+), (\S+)\]", printed)
    assert eti and hdi
    assert float(eti.group(1)) < median < float(eti.group(2))
    assert float(hdi.group(1)) < median < float(hdi.group(2))
    expected = float(cal.predict_independent(0.5267))
    assert abs(median - expected) < 0.5


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--model", "logistc", "'logistic'"),
        ("--noise", "studnett", "'studentt'"),
        ("--x", "concentration", "'conc'"),
    ],
)
def test_unknown_names_are_one_line_errors(
    table: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    expected: str,
) -> None:
    args = {"--x": "conc", "--y": "absorbance", "--model": "logistic", "--noise": "studentt"}
    args[option] = value
    argv = ["calibrate", str(table), "--out", str(tmp_path / "cal.json")]
    for key, item in args.items():
        argv += [key, item]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert repr(value) in err and expected in err
    assert not (tmp_path / "cal.json").exists()


def test_infer_with_a_missing_or_foreign_file(tmp_path: Path, capsys) -> None:
    assert main(["infer", str(tmp_path / "nope.json"), "--y", "0.5"]) == 2
    assert "nope.json" in _one_line_error(capsys)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"model_type": "LinearCalibration"}')
    assert main(["infer", str(foreign), "--y", "0.5"]) == 2
    assert "not a hierax calibration file" in _one_line_error(capsys)
