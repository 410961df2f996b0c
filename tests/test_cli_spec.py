"""``hierax fit/summary/predict/report/example``: outputs, one-line errors, Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import hierax as hx
import hierax.interface.spec
from hierax.interface import cli
from hierax.interface.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = Path(hx.__file__).parent / "examples" / "specs"
DATA = Path(hx.__file__).parent / "examples" / "data"
TINY = ["--quick", "--chains", "2", "--draws", "100", "--warmup", "100", "--seed", "1"]


def has_report() -> bool:
    return cli._report_module() is not None


@pytest.fixture(scope="module")
def crossed_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``hierax fit crossed.toml`` with tiny settings: (output folder, printed text)."""
    out = tmp_path_factory.mktemp("crossed") / "out"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["fit", str(SPECS / "crossed.toml"), "--out", str(out), *TINY])
    assert code == 0
    return out, stdout.getvalue()


def write_spec(folder: Path, body: str, data: str = "crossed.csv") -> Path:
    shutil.copyfile(DATA / "crossed.csv", folder / "crossed.csv")
    spec = folder / "model.toml"
    spec.write_text(f'[data]\nfile = "{data}"\n{body}')
    return spec


FORMULA = '[model]\nformula = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"\n'


# -------------------------------------------------------------------------- fit
def test_fit_writes_fit_summary_and_report(crossed_fit: tuple[Path, str]) -> None:
    out, printed = crossed_fit
    result = hx.load(out / "fit.nc")
    assert result.posterior.sizes == {"chain": 2, "draw": 100} | {
        k: v for k, v in result.posterior.sizes.items() if k not in ("chain", "draw")
    }
    assert result.info["spec"]["data"] == str(DATA / "crossed.csv")
    assert "formula = " in result.info["spec"]["text"]
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"Intercept", "sd_gene", "sigma"} <= set(summary.index)
    assert "hierax: sampling 2 chains x 100 draws (100 warmup)" in printed
    assert "sd_cell_line" in printed and "hierax diagnosis" in printed
    assert f"wrote {out / 'fit.nc'}, {out / 'summary.csv'}" in printed
    if has_report():
        assert (out / "report.html").stat().st_size > 1000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_quick_halves_the_spec_draws() -> None:
    args = cli.build_parser().parse_args(["fit", "x.toml", "--quick"])
    spec = cli._spec_with_overrides(hx.interface.spec.load_spec(SPECS / "crossed.toml"), args)
    assert (spec.sampler.draws, spec.sampler.warmup, spec.sampler.chains) == (500, 500, 4)
    args = cli.build_parser().parse_args(["fit", "x.toml", "--quick", "--draws", "7"])
    assert (
        cli._spec_with_overrides(
            hx.interface.spec.load_spec(SPECS / "crossed.toml"), args
        ).sampler.draws
        == 7
    )


def test_summary_prints_table_and_diagnosis(crossed_fit: tuple[Path, str], capsys) -> None:
    out, _ = crossed_fit
    assert main(["summary", str(out / "fit.nc")]) == 0
    printed = capsys.readouterr().out
    assert "2 chains x 100 draws" in printed and "genes x cell lines" in printed
    assert "Intercept" in printed and "r_hat" in printed and "hierax diagnosis" in printed
    assert main(["summary", str(out / "fit.nc"), "--var", "sigma"]) == 0
    table = capsys.readouterr().out.split("hierax diagnosis")[0]
    assert "sigma " in table and "Intercept" not in table


def test_predict_writes_rows_with_quantiles(
    crossed_fit: tuple[Path, str], tmp_path: Path, capsys
) -> None:
    out, _ = crossed_fit
    new = tmp_path / "new.csv"
    pd.DataFrame({"gene": [0, 2], "cell_line": [1, 9], "label": ["a", "b"]}).to_csv(
        new, index=False
    )
    for kind in ("mean", "response"):
        target = tmp_path / f"{kind}.csv"
        assert (
            main(["predict", str(out / "fit.nc"), str(new), "--out", str(target), "--kind", kind])
            == 0
        )
        table = pd.read_csv(target)
        assert list(table.columns) == ["gene", "cell_line", "label", "mean", "sd", "q3%", "q97%"]
        assert len(table) == 2
        assert (table["q3%"] < table["mean"]).all() and (table["mean"] < table["q97%"]).all()
    assert "wrote" in capsys.readouterr().out
    # the response draws add sigma: wider than the mean's
    mean, response = pd.read_csv(tmp_path / "mean.csv"), pd.read_csv(tmp_path / "response.csv")
    assert (response["sd"] > mean["sd"]).all()
    # the posterior mean of a row is close to the data of that cell
    data = pd.read_csv(DATA / "crossed.csv")
    cell = data[(data["gene"] == 0) & (data["cell_line"] == 1)]["logfc"].mean()
    assert abs(mean["mean"][0] - cell) < 0.1


def test_predict_needs_a_formula_spec(
    crossed_fit: tuple[Path, str], tmp_path: Path, capsys
) -> None:
    out, _ = crossed_fit
    result = hx.load(out / "fit.nc")
    naive = hx.interface.spec.load_spec(SPECS / "crossed_naive.toml")
    result.info["spec"] = naive.record()
    result.save(tmp_path / "naive.nc")
    new = DATA / "crossed.csv"
    code = main(["predict", str(tmp_path / "naive.nc"), str(new), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    assert "predict works for linear formula models; this fit's spec names a model function" in (
        capsys.readouterr().err
    )
    del result.info["spec"]
    result.save(tmp_path / "plain.nc")
    code = main(["predict", str(tmp_path / "plain.nc"), str(new), "--out", str(tmp_path / "p.csv")])
    assert code == 2
    assert "was not made from a spec file" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_report_command(crossed_fit: tuple[Path, str], tmp_path: Path, capsys) -> None:
    if not has_report():
        pytest.skip("hierax.report is not there yet")
    out, _ = crossed_fit
    assert main(["report", str(out / "fit.nc"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000
    assert "report.html" in capsys.readouterr().out


# ----------------------------------------------------------------------- errors
ERROR_CASES = {
    "missing spec": (
        lambda d: ["fit", str(d / "nope.toml")],
        r"spec file '.*nope.toml' does not exist",
    ),
    "missing data": (
        lambda d: ["fit", str(write_spec(d, FORMULA, data="gone.csv"))],
        r"data file '.*gone.csv' named in \[data\] of .*model.toml does not exist",
    ),
    "unknown key": (
        lambda d: ["fit", str(write_spec(d, FORMULA.replace("formula", "formulla")))],
        r"unknown key 'formulla' in \[model\] of .*Did you mean 'formula'\?",
    ),
    "unknown family": (
        lambda d: ["fit", str(write_spec(d, FORMULA + 'family = "gausian"\n'))],
        r"unknown family 'gausian'.*Did you mean 'gaussian'",
    ),
    "unknown distribution": (
        lambda d: [
            "fit",
            str(write_spec(d, FORMULA + '[model.priors]\nsigma = "HalfNormel(1)"\n')),
        ],
        r"unknown distribution 'HalfNormel' in the prior for sigma.*Did you mean 'HalfNormal'",
    ),
    "missing column": (
        lambda d: ["fit", str(write_spec(d, FORMULA.replace("(1 | gene)", "(1 | genes)")))],
        r"\['genes'\] used in the formula are not in the data.*Did you mean 'gene'",
    ),
    "missing column of a function": (
        lambda d: [
            "fit",
            str(
                write_spec(
                    d,
                    '[model]\nfunction = "hierax.examples.crossed:model_naive"\n'
                    '[model.data]\ngene = { factor = "genes" }\n',
                )
            ),
        ],
        r"column 'genes' \(argument 'gene' of \[model.data\].*Did you mean 'gene'",
    ),
    "invalid TOML": (
        lambda d: ["fit", str(write_spec(d, "[model\n"))],
        r"model.toml is not valid TOML: .*line 3",
    ),
    "wrong type": (
        lambda d: ["fit", str(write_spec(d, FORMULA + "[sampler]\ndraws = 'many'\n"))],
        r"'draws' in \[sampler\] of .* must be an integer, got 'many'",
    ),
    "summary of a missing fit": (
        lambda d: ["summary", str(d / "fit.nc")],
        r"no such file: '.*fit.nc'",
    ),
    "predict of a missing fit": (
        lambda d: ["predict", str(d / "fit.nc"), str(DATA / "crossed.csv"), "--out", "p.csv"],
        r"no such file: '.*fit.nc'",
    ),
    "report of a missing fit": (
        lambda d: ["report", str(d / "fit.nc")],
        r"no such file: '.*fit.nc'",
    ),
    "summary of a corrupt fit": (
        lambda d: ["summary", str(corrupt(d))],
        r"'.*bad.nc' is not a NetCDF InferenceData file",
    ),
    "predict of a corrupt fit": (
        lambda d: ["predict", str(corrupt(d)), str(DATA / "crossed.csv"), "--out", "p.csv"],
        r"'.*bad.nc' is not a NetCDF InferenceData file",
    ),
    "report of a corrupt fit": (
        lambda d: ["report", str(corrupt(d))],
        r"'.*bad.nc' is not a NetCDF InferenceData file",
    ),
    "unknown example": (
        lambda d: ["example", "crosed", "--out", str(d)],
        r"unknown example 'crosed'.*Did you mean 'crossed'",
    ),
}


def corrupt(folder: Path) -> Path:
    path = folder / "bad.nc"
    path.write_bytes(b"this is not a netcdf file\n" * 10)
    return path


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_cli_errors_are_one_line(case: str, tmp_path: Path, capsys) -> None:
    arguments, pattern = ERROR_CASES[case]
    code = main(arguments(tmp_path))
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.strip().splitlines()
    assert 1 <= len(lines) <= 2, captured.err
    assert lines[0].startswith("hierax: error: ")
    assert re.search(pattern, captured.err), captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "model-fit").exists()  # nothing written on an error


@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_shows_the_exception(position: str, tmp_path: Path) -> None:
    command = ["summary", str(tmp_path / "fit.nc")]
    argv = ["--debug", *command] if position == "before" else [*command, "--debug"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(argv)


def run_hierax(*arguments: str, **kwargs) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "hierax", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        **kwargs,
    )


def test_console_error_without_and_with_traceback(tmp_path: Path) -> None:
    process = run_hierax("fit", str(tmp_path / "nope.toml"))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert err.strip() == f"hierax: error: spec file '{tmp_path / 'nope.toml'}' does not exist."
    process = run_hierax("fit", str(tmp_path / "nope.toml"), "--debug")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" in err and "FileNotFoundError" in err


# ---------------------------------------------------------------------- Ctrl-C
def test_a_swallowed_ctrl_c_is_raised_again_by_check() -> None:
    """Python drops a KeyboardInterrupt raised in a garbage-collection callback (JAX
    registers one); under stop_on_interrupt the samplers' checks raise it again."""
    from hierax.core import interrupt

    class Dropper:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler raises here, and Python drops it

    reported: list[object] = []
    hook = sys.unraisablehook
    sys.unraisablehook = reported.append
    try:
        with interrupt.stop_on_interrupt():
            Dropper()  # collected at once: its __del__ runs
            with pytest.raises(KeyboardInterrupt):
                interrupt.check()
        interrupt.check()  # nothing pending once the block is left
    finally:
        sys.unraisablehook = hook
    assert reported == []  # not reported as "Exception ignored"
    assert signal.getsignal(signal.SIGINT) is not interrupt._request


def test_ctrl_c_during_sampling_stops_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = run_hierax(
        "fit", str(SPECS / "crossed.toml"), "--out", str(out),
        "--chains", "2", "--warmup", "100", "--draws", "1000000", "--no-progress",
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("hierax: sampling"):
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted while sampling; sampling was stopped and nothing was written" in err
    assert "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())


def test_ctrl_c_while_writing_keeps_complete_files(
    crossed_fit: tuple[Path, str], tmp_path: Path, monkeypatch, capsys
) -> None:
    saved = hx.load(crossed_fit[0] / "fit.nc")
    monkeypatch.setattr(hx.interface.spec, "fit_spec", lambda *a, **k: saved)

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_write_report", interrupt)
    out = tmp_path / "out"
    assert main(["fit", str(SPECS / "crossed.toml"), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted while writing report.html" in err
    assert "kept the complete file(s) fit.nc, summary.csv" in err
    assert sorted(p.name for p in out.iterdir()) == ["fit.nc", "summary.csv"]
    hx.load(out / "fit.nc")


def test_ctrl_c_while_writing_the_summary_leaves_no_temporary(
    crossed_fit: tuple[Path, str], tmp_path: Path, monkeypatch, capsys
) -> None:
    saved = hx.load(crossed_fit[0] / "fit.nc")
    monkeypatch.setattr(hx.interface.spec, "fit_spec", lambda *a, **k: saved)

    def interrupted_to_csv(self: pd.DataFrame, path: object, **kwargs: object) -> None:
        Path(str(path)).write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted_to_csv)
    out = tmp_path / "out"
    assert main(["fit", str(SPECS / "crossed.toml"), "--out", str(out)]) == 130
    assert "kept the complete file(s) fit.nc in" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["fit.nc"]


# --------------------------------------------------------------------- example
def test_example_copies_spec_and_data(tmp_path: Path, capsys) -> None:
    assert main(["example"]) == 0
    listing = capsys.readouterr().out
    for name in ("crossed", "crossed_naive", "calibration", "regression", "parallax", "binaries"):
        assert name in listing
    assert main(["example", "calibration", "--out", str(tmp_path)]) == 0
    assert "hierax fit" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "calibration.csv",
        "calibration.toml",
        "linear_calibration.json",
    ]
    spec = hx.interface.spec.load_spec(tmp_path / "calibration.toml")
    assert spec.data_file == tmp_path / "calibration.csv"
    assert spec.model.calibration == tmp_path / "linear_calibration.json"
    assert spec.output.folder == tmp_path / "calibration-fit"
    hx.interface.spec.build_model(spec)


# -------------------------------------------------------- every seed (slow)
SEEDS = ["calibration", "crossed", "crossed_naive", "regression", "parallax", "binaries"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SEEDS)
def test_every_seed_spec_fits_and_its_report_renders(name: str, tmp_path: Path, capsys) -> None:
    assert main(["example", name, "--out", str(tmp_path)]) == 0
    assert main(["fit", str(tmp_path / f"{name}.toml"), "--quick", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / f"{name}-fit"
    assert (out / "fit.nc").exists() and (out / "summary.csv").exists()
    if name == "crossed_naive":
        diagnosis = printed[printed.index("hierax diagnosis") :]
        assert "non_identified" in diagnosis
        assert "mu_alpha" in diagnosis and "mu_beta" in diagnosis
    if not has_report():
        pytest.skip("hierax.report is not there yet")
    page = out / "report.html"
    assert page.exists()
    browser = pytest.importorskip("browser")
    browser.require_browser()
    rendered = browser.render_report(page)
    assert rendered.images and not rendered.broken_images
    assert rendered.summary_rows > 0
