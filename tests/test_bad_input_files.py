"""Bad input and safety at the edges: files, the command line, saving and loading,
Ctrl-C and run options. Each test names the culprit it expects in the message."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import arviz as az
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

import hierax as hx
import hierax.interface.spec
from hierax.core import interrupt
from hierax.data import read_table
from hierax.errors import DataError, FileFormatError, ModelError
from hierax.inference.sampling import check_run_options
from hierax.interface.cli import main
from hierax.interface.spec import SpecError, build_model, load_spec, spec_from_fit
from hierax.results.fit import Fit

ROOT = Path(__file__).resolve().parents[1]
SPECS = Path(hx.__file__).parent / "examples" / "specs"
DATA = Path(hx.__file__).parent / "examples" / "data"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def small_fit(info: dict | None = None, draws: int = 50) -> Fit:
    """A Fit made without sampling (findings given, so nothing is diagnosed)."""
    rng = np.random.default_rng(0)
    idata = az.from_dict(
        posterior={"mu": rng.normal(size=(2, draws))},
        sample_stats={"diverging": np.zeros((2, draws), dtype=bool)},
    )
    return Fit(idata, findings=[], info=info or {})


def environment() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def wait_for_line(process: subprocess.Popen, prefix: str) -> list[str]:
    """Lines of the process's stdout up to the first that starts with ``prefix``."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return seen
    _, err = process.communicate(timeout=60)
    raise AssertionError(f"the process ended before {prefix!r}: {''.join(seen)}\n{err}")


def finish(process: subprocess.Popen, within: float) -> tuple[str, str, float]:
    """(stdout, stderr, seconds) of a process that must end within ``within`` seconds."""
    started = time.monotonic()
    try:
        out, err = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"still running {within} s after Ctrl-C:\n{err[-2000:]}") from None
    return out, err, time.monotonic() - started


# ---------------------------------------------------------------------- Ctrl-C
# The driver announces the moment NUTS starts (numpyro's MCMC.run), so that the
# Ctrl-C lands while the compiled sampler runs in XLA's threads, not before.
_ANNOUNCE_NUTS = """
import sys
import numpyro.infer
run = numpyro.infer.MCMC.run
def announced(self, *args, **kwargs):
    print("test: NUTS starts", flush=True)
    return run(self, *args, **kwargs)
numpyro.infer.MCMC.run = announced
from hierax.interface.cli import main
sys.exit(main())
"""


@pytest.mark.slow
def test_ctrl_c_while_nuts_runs_ends_the_command_promptly(tmp_path: Path) -> None:
    """Ctrl-C while the compiled NUTS program runs: exit 130 soon, nothing written.

    A program in flight cannot be cancelled; Python's shutdown used to wait for it
    (minutes) or crash (SIGSEGV) after printing "interrupted".
    """
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable, "-c", _ANNOUNCE_NUTS, "fit", str(SPECS / "crossed_naive.toml"),
            "--out", str(out), "--chains", "2", "--warmup", "100", "--draws", "2000000",
            "--no-progress",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(), cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for_line(process, "test: NUTS starts")
        time.sleep(3.0)  # compiled and running (or still compiling on a slow machine)
        process.send_signal(signal.SIGINT)
        _, err, _ = finish(process, within=60)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted while sampling" in err
    assert "Traceback" not in err
    assert not out.exists() or not list(out.iterdir())


_SAVE_LOOP = """
import sys, time
import arviz as az, numpy as np
from hierax.results.fit import Fit
rng = np.random.default_rng(0)
posterior = {"x": rng.normal(size=(4, 1000, 400))}
fit = Fit(az.from_dict(posterior=posterior), findings=[])
deadline = time.monotonic() + 90
try:
    index = 0
    while time.monotonic() < deadline:
        fit.save(sys.argv[1])
        print(f"saved {index}", flush=True)
        index += 1
except KeyboardInterrupt:
    print("KeyboardInterrupt reached the script", flush=True)
    sys.exit(130)
print("the script went on to its end", flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_during_fit_save_in_a_script_reaches_the_script(tmp_path: Path) -> None:
    """h5py's weak-reference callbacks swallowed the KeyboardInterrupt: the script went on."""
    target = tmp_path / "fit.nc"
    process = subprocess.Popen(
        [sys.executable, "-c", _SAVE_LOOP, str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(), cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for_line(process, "saved 0")
        time.sleep(0.3)  # inside the next save
        process.send_signal(signal.SIGINT)
        out, err, _ = finish(process, within=60)
    finally:
        process.kill()
    assert "KeyboardInterrupt reached the script" in out, (out, err[-2000:])
    assert process.returncode == 130
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]  # no temporary left
    assert hx.load(target).posterior["x"].shape == (4, 1000, 400)  # the last complete save


class _Swallowed:
    """Sends SIGINT from a ``__del__``: Python drops the KeyboardInterrupt raised there."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)


def test_a_swallowed_ctrl_c_during_save_raises_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "fit.nc"
    small_fit({"run": 1}).save(target)
    original = az.InferenceData.to_netcdf

    def interrupted_write(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        _Swallowed()  # collected at once: the Ctrl-C is lost inside __del__
        return original(self, filename, *args, **kwargs)

    monkeypatch.setattr(az.InferenceData, "to_netcdf", interrupted_write)
    hook = sys.unraisablehook
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)
    with pytest.raises(KeyboardInterrupt):
        small_fit({"run": 2}).save(target)
    monkeypatch.setattr(sys, "unraisablehook", hook)
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]
    monkeypatch.setattr(az.InferenceData, "to_netcdf", original)
    assert hx.load(target).info["run"] == 1  # the earlier, complete file


def test_stop_on_interrupt_blocks_nest_and_the_outer_one_raises() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupt.stop_on_interrupt():
        with interrupt.stop_on_interrupt():
            _Swallowed()  # its KeyboardInterrupt is lost; the request is recorded
        assert signal.getsignal(signal.SIGINT) is interrupt._request  # still the outer's
    assert signal.getsignal(signal.SIGINT) is previous


# ------------------------------------------------------ code named by a fit file
def tampered_fit(tmp_path: Path, module: str) -> Path:
    """A fit file whose recorded spec names ``module`` in [model.functions]."""
    text = textwrap.dedent(
        f"""
        [data]
        file = "{(DATA / "crossed.csv").as_posix()}"
        [model]
        formula = "logfc ~ f(a)"
        [model.params]
        a = "1"
        [model.functions]
        f = "{module}:s"
        """
    )
    record = {"file": None, "folder": str(tmp_path), "data": str(DATA / "crossed.csv")}
    path = tmp_path / "fit.nc"
    small_fit({"spec": {**record, "text": text}}).save(path)
    return path


@pytest.fixture
def booby_trapped_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(module name, marker file): importing the module writes the marker."""
    name = f"hierax_trap_{os.getpid()}_{time.monotonic_ns()}"
    marker = tmp_path / "imported"
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "def s(x):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    yield name, marker
    sys.modules.pop(name, None)


def test_predict_never_imports_code_named_by_a_fit_file(
    tmp_path: Path, booby_trapped_module: tuple[str, Path], capsys: pytest.CaptureFixture
) -> None:
    module, marker = booby_trapped_module
    fit_file = tampered_fit(tmp_path, module)
    target = tmp_path / "p.csv"
    arguments = ["predict", str(fit_file), str(DATA / "crossed.csv"), "--out", str(target)]
    assert main(arguments) == 2
    assert not marker.exists() and module not in sys.modules
    err = capsys.readouterr().err
    assert str(fit_file) in err and repr(module) in err and "--trust-file" in err
    # the same from Python: the spec can be read, its model not built
    spec = spec_from_fit(hx.load(fit_file), where=repr(str(fit_file)))
    with pytest.raises(FileFormatError, match=rf"{module}.*trust"):
        build_model(spec)
    assert not marker.exists()
    # trusted on request: the module is imported (predict then explains its limits)
    main([*arguments, "--trust-file"])
    assert marker.exists()


def test_predict_help_documents_trust_file(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--trust-file" in capsys.readouterr().out


# ----------------------------------------------------------- reading fit files
def test_a_netcdf_with_only_a_posterior_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "posterior.nc"
    draws = np.random.default_rng(1).normal(size=(4, 200))
    az.from_dict(posterior={"theta": draws}).to_netcdf(str(path))
    result = hx.load(path)
    assert result.divergences == 0
    assert result.summary().loc["theta", "mean"] == pytest.approx(draws.mean(), rel=1e-9)
    assert main(["summary", str(path)]) == 0
    assert "theta" in capsys.readouterr().out


@pytest.mark.parametrize(
    "raw",
    ["{not json", "[1, 2]", '"a string"', '{"max_tree_depth": "deep"}', '{"spec": 3}'],
    ids=["not-json", "a-list", "a-string", "wrong-type", "wrong-spec-type"],
)
def test_a_corrupt_hierax_info_names_the_file(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "tampered.nc"
    idata = small_fit().idata
    idata["posterior"].attrs["hierax_info"] = raw
    idata.to_netcdf(str(path))
    with pytest.raises(FileFormatError, match=r"hierax_info.*tampered\.nc"):
        hx.load(path)


def test_a_corrupt_recorded_spec_names_the_fit_file(tmp_path: Path) -> None:
    path = tmp_path / "fit.nc"
    small_fit({"spec": {"text": "[model\n", "folder": str(tmp_path)}}).save(path)
    with pytest.raises(FileFormatError, match=r"spec recorded in '.*fit\.nc' is corrupt"):
        spec_from_fit(hx.load(path), where=repr(str(path)))


# ------------------------------------------------- every file the CLI reads
def make(tmp_path: Path, kind: str, name: str) -> Path:
    path = tmp_path / name
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 20)
    elif kind == "folder":
        path.mkdir()
    elif kind == "unreadable":
        path.write_text("a,b\n1,2\n")
        path.chmod(0)
    return path


FILE_CASES = [
    # (what reads it, the file, what is wrong, expected error, pattern after the name)
    ("read_table", "data.csv", "binary", DataError, "cannot be read as CSV"),
    ("read_table", "data.tsv", "binary", DataError, "cannot be read as TSV"),
    ("read_table", "data.parquet", "binary", DataError, "cannot be read as Parquet"),
    ("read_table", "data.csv", "folder", DataError, "is a folder"),
    ("read_table", "data.csv", "missing", DataError, "does not exist"),
    ("read_table", "data.csv", "unreadable", DataError, "cannot be read"),
    ("load_spec", "model.toml", "binary", SpecError, "is not a UTF-8 text file"),
    ("load_spec", "model.toml", "folder", FileNotFoundError, "is a folder"),
    ("load_spec", "model.toml", "missing", FileNotFoundError, "does not exist"),
    ("load_spec", "model.toml", "unreadable", SpecError, "cannot be read"),
    ("load", "fit.nc", "binary", FileFormatError, "is not a NetCDF InferenceData file"),
    ("load", "fit.nc", "folder", FileFormatError, "is a folder"),
    ("load", "fit.nc", "missing", FileNotFoundError, "does not exist"),
    ("load", "fit.nc", "unreadable", FileFormatError, "cannot be read"),
]
READERS = {"read_table": read_table, "load_spec": load_spec, "load": hx.load}


@pytest.mark.parametrize(
    ("reader", "name", "kind", "error", "pattern"),
    FILE_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in FILE_CASES],
)
def test_every_file_error_names_the_file(
    tmp_path: Path, reader: str, name: str, kind: str, error: type, pattern: str
) -> None:
    if kind == "unreadable" and AS_ROOT:
        pytest.skip("root reads any file")
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = make(tmp_path, kind, name)
    with pytest.raises(error) as caught:
        READERS[reader](path)
    message = str(caught.value)
    assert str(path) in message and pattern in message, message


@pytest.mark.parametrize("what", ["spec", "data"])
def test_the_command_line_names_a_binary_file(
    tmp_path: Path, what: str, capsys: pytest.CaptureFixture
) -> None:
    binary = make(tmp_path, "binary", "table.csv" if what == "data" else "model.toml")
    spec = binary
    if what == "data":
        spec = tmp_path / "model.toml"
        spec.write_text('[data]\nfile = "table.csv"\n[model]\nformula = "y ~ 1"\n')
    assert main(["fit", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hierax: error: ") and str(binary) in err and "Traceback" not in err


# ------------------------------------------------------------- output folders
def test_an_output_folder_that_cannot_be_made_fails_before_sampling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def no_sampling(*args: object, **kwargs: object) -> None:
        raise AssertionError("sampling started")

    monkeypatch.setattr(hx.interface.spec, "fit_spec", no_sampling)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "out"
    assert main(["fit", str(SPECS / "crossed.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "output folder" in err and str(out) in err
    assert "sampling" not in err


def test_saving_into_a_file_as_folder_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError, match=r"cannot create or write into the folder of '.*a-file"):
        small_fit().save(blocker / "sub" / "fit.nc")


# -------------------------------------------------------- data as a dict
def test_read_table_takes_a_dict_of_columns() -> None:
    table = read_table({"x": [1.0, 2.0], "g": np.array(["a", "b"])})
    assert list(table.columns) == ["x", "g"] and len(table) == 2


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ({"x": 1.0}, r"\['x'\] hold\(s\) a single value"),
        ({"x": [1.0, 2.0], "y": [1.0]}, r"different lengths \{'x': 2, 'y': 1\}"),
        ({"x": []}, "has no rows"),
        (42, "got int"),
        ([1.0, 2.0], "got list"),
    ],
    ids=["scalar", "lengths", "empty", "int", "list"],
)
def test_read_table_names_what_is_wrong_with_other_input(source: object, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        read_table(source)  # type: ignore[arg-type]


def test_fit_predict_takes_a_dict_of_columns() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    model = hx.Model("y ~ x", pd.DataFrame({"x": x, "y": 1.0 + 2.0 * x + rng.normal(size=30)}))
    result = model.fit(chains=1, draws=100, warmup=100, seed=1, warn=False)
    draws = result.predict({"x": [0.0, 1.0]})
    assert np.asarray(draws).shape[-1] == 2
    with pytest.raises(DataError, match="dict of columns"):
        result.predict({"x": 0.0})


# ---------------------------------------------------------------- run options
BAD_RUN_OPTIONS = [
    ("draws", 50.5),
    ("draws", 0),
    ("chains", 0),
    ("chains", "4"),
    ("warmup", -1),
    ("seed", -1),
    ("seed", "1"),
    ("seed", 1.5),
    ("target_accept", 1.5),
    ("target_accept", 0.0),
    ("target_accept", float("nan")),
    ("max_tree_depth", 0),
    ("multistart", -2),
    ("draws", True),
    ("precondition", "fast"),
    ("chain_method", "threads"),
]


def normal_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture(scope="module")
def formula_model() -> hx.Model:
    rng = np.random.default_rng(2)
    return hx.Model("y ~ x", pd.DataFrame({"x": rng.normal(size=20), "y": rng.normal(size=20)}))


@pytest.mark.parametrize(("option", "value"), BAD_RUN_OPTIONS, ids=str)
@pytest.mark.parametrize("entry", ["hx.fit", "Model.fit"])
def test_bad_run_options_are_named_before_anything_is_built(
    entry: str, option: str, value: object, formula_model: hx.Model
) -> None:
    with pytest.raises(ModelError, match=rf"^{option} must be .*got {value!r}"):
        if entry == "hx.fit":
            hx.fit(normal_model, {"y": np.array([0.1, 0.2])}, **{option: value})  # type: ignore[arg-type]
        else:
            formula_model.fit(**{option: value})


def test_integral_run_options_are_accepted_as_ints() -> None:
    checked = check_run_options(
        {"draws": 50.0, "chains": np.int64(2), "seed": None, "target_accept": 1 / 2, "x": "y"}
    )
    assert checked == {"draws": 50, "chains": 2, "seed": None, "target_accept": 0.5, "x": "y"}
    assert type(checked["draws"]) is int and type(checked["chains"]) is int


@pytest.mark.parametrize(
    ("arguments", "pattern"),
    [(["--draws", "0"], r"draws must be a whole number >= 1, got 0"),
     (["--seed", "-3"], r"seed must be None or a whole number >= 0, got -3")],
)  # fmt: skip
def test_command_line_run_options_are_checked_first(
    arguments: list[str], pattern: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(
        hx.interface.spec, "build_model", lambda *a, **k: pytest.fail("model built")
    )
    assert main(["fit", str(SPECS / "crossed.toml"), *arguments]) == 2
    assert re.search(pattern, capsys.readouterr().err)


def test_a_negative_seed_in_a_spec_is_named(tmp_path: Path) -> None:
    spec = tmp_path / "model.toml"
    spec.write_text(f'[data]\nfile = "{(DATA / "crossed.csv").as_posix()}"\n'
                    '[model]\nformula = "logfc ~ 1"\n[sampler]\nseed = -1\n')  # fmt: skip
    with pytest.raises(
        SpecError, match=r"'seed' in \[sampler\] of .*model.toml must be at least 0"
    ):
        load_spec(spec)
