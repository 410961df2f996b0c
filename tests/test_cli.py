"""The ``hierax`` command line: ``hierax demo`` writes what the README promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

import hierax as hx
from hierax.interface.cli import main


def test_demo_writes_summary_fit_and_plots(tmp_path: Path, capsys) -> None:
    code = main(
        ["demo", "calibration", "binaries", "--quick", "--seed", "2", "--out", str(tmp_path)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for name, plots in [
        ("calibration", ["ridge.png", "pair.png", "trace.png", "predictive.png"]),
        ("binaries", ["forest.png", "pair.png", "trace.png", "predictive.png"]),
    ]:
        folder = tmp_path / name
        summary = pd.read_csv(folder / "summary.csv", index_col=0)
        assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(summary.columns)
        for plot in plots:
            assert (folder / plot).stat().st_size > 10_000, plot
        fit = hx.load(folder / "fit.nc")
        assert fit.posterior.sizes["draw"] == 500
        page = (folder / "report.html").read_text()
        assert 'id="summary"' in page and "data:image/png;base64," in page
        assert f"== {name}" in printed
    summary = pd.read_csv(tmp_path / "calibration" / "summary.csv", index_col=0)
    assert "intercept_batch[0]" in summary.index and "k" in summary.index
    assert "lnP[13]" in pd.read_csv(tmp_path / "binaries" / "summary.csv", index_col=0).index
    assert "convergence: no problems found" in printed


def test_unknown_demo_name_is_one_line_error(capsys) -> None:
    code = main(["demo", "calibraton"])
    assert code == 2
    err = capsys.readouterr().err
    assert "calibraton" in err and "calibration" in err
    assert "Traceback" not in err


def test_console_script_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hierax.interface.cli", "demo", "--help"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "--quick" in result.stdout and "--out" in result.stdout
