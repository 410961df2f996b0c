"""``hierax calibrate`` and ``hierax infer``: fit a calibration from a table, and
infer concentrations from readouts with a saved calibration.

Names of models, noise models and columns are checked here (not by argparse
``choices``) so that a typo gives one line that names it, exit code 2, and the
close matches.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hierax.errors import CalibrationWarning, DataError, HieraxError, close_matches

__all__ = ["add_calibration_commands", "calibrate_command", "infer_command"]


def _warn_lines(caught: list[warnings.WarningMessage]) -> None:
    for warning in caught:
        if issubclass(warning.category, CalibrationWarning):
            print(f"warning: {warning.message}")


def calibrate_command(args: argparse.Namespace) -> int:
    """Fit a calibration model to two columns of a table; write JSON and a PNG plot."""
    from hierax.calibration.mean_functions import mean_function
    from hierax.calibration.model import CalibrationModel
    from hierax.calibration.noise import noise_model
    from hierax.data import read_table
    from hierax.present.figures import save_figure, use_headless_backend

    # validate the names and the output before reading data, so mistakes fail fast
    mean = mean_function(args.model, args.degree)
    noise = noise_model(args.noise, args.scale_degree)
    out = _output_path(args.out)
    try:
        table = read_table(args.data)
    except HieraxError:
        raise
    except (ValueError, OSError) as read_error:  # pandas' parser errors are ValueErrors
        raise DataError(
            f"cannot read the data file {args.data!r} as a table ({read_error}); give a CSV, TSV or "
            "Parquet file."
        ) from None
    for role, column in (("--x", args.x), ("--y", args.y)):
        if column not in table.columns:
            raise DataError(
                f"column {column!r} (given as {role}) is not in {args.data}; its columns are "
                f"{list(map(str, table.columns))}.{close_matches(column, map(str, table.columns))}"
            )
    x = _numeric_column(table, args.x, "--x", args.data)
    y = _numeric_column(table, args.y, "--y", args.data)
    use_headless_backend()
    cal = CalibrationModel(mean, noise, independent_key=args.x, dependent_key=args.y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        try:
            fitted = cal.fit_mle(x, y, global_search=args.global_search, seed=args.seed)
        except DataError as data_error:
            raise DataError(f"{args.data}: {data_error}") from None
    _warn_lines(caught)
    fitted.save(out)
    plot_path = save_figure(fitted.plot_model(), out.with_suffix(".png"))
    assert fitted.mle is not None
    n_points = 0 if fitted.cal_independent is None else fitted.cal_independent.size
    print(f"{fitted.mean_function.name} + {fitted.noise.name} noise, {n_points} points")
    print(f"{'parameter':>12} {'estimate':>14} {'std. error':>12}")
    for name, value, error in zip(
        fitted.theta_names, fitted.mle.theta, fitted.mle.standard_errors, strict=True
    ):
        print(f"{name:>12} {value:>14.6g} {error:>12.3g}")
    print(
        f"log likelihood {fitted.mle.log_likelihood:.6g}; optimiser: {fitted.mle.method}, "
        f"{'converged' if fitted.mle.success else 'NOT converged: ' + fitted.mle.message}"
    )
    print(f"wrote {out} and {plot_path}")
    return 0


def infer_command(args: argparse.Namespace) -> int:
    """Print median, ETI and HDI of x given replicate readouts and a saved calibration."""
    from hierax.calibration.model import CalibrationModel

    cal = CalibrationModel.load(args.calibration)
    data_x = cal.cal_independent
    lower = args.lower if args.lower is not None else _data_limit(data_x, np.min, "--lower")
    upper = args.upper if args.upper is not None else _data_limit(data_x, np.max, "--upper")
    readouts = np.asarray(args.y, dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalibrationWarning)
        result = cal.infer_independent(
            readouts, lower, upper, steps=args.steps, ci_prob=args.ci_prob
        )
    _warn_lines(caught)
    percent = f"{args.ci_prob * 100:g} %"
    print(
        f"{cal.independent_key} from {readouts.size} readout(s) of {cal.dependent_key} "
        f"{readouts.tolist()}, uniform prior on [{lower:g}, {upper:g}]:"
    )
    print(f"  median        {float(result.median):.6g}")
    print(f"  {percent} ETI    [{float(result.eti_lower):.6g}, {float(result.eti_upper):.6g}]")
    pieces = " ∪ ".join(f"[{lo:.6g}, {hi:.6g}]" for lo, hi in result.hdi_intervals)
    print(f"  {percent} HDI    {pieces}" + ("  (multimodal)" if bool(result.multimodal) else ""))
    return 0


def _output_path(out: str) -> Path:
    """``--out`` as a path whose folder exists (created if needed), checked before fitting."""
    path = Path(out)
    if path.is_dir():
        raise HieraxError(f"--out {out!r} is a folder; give a file name such as {out}/cal.json.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise HieraxError(
            f"cannot create the folder {str(path.parent)!r} of --out {out!r} "
            f"({error.strerror or error}); choose another output path."
        ) from None
    return path


def _numeric_column(table: pd.DataFrame, column: str, role: str, source: str) -> np.ndarray:
    """The column as floats; a :class:`DataError` naming the file, column and first
    non-numeric row otherwise (empty cells become NaN and are masked by the fit)."""
    values = table[column]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"column {column!r} (given as {role}) of {source} holds {int(bad.sum())} non-numeric "
            f"value(s), the first {values.iloc[row]!r} in data row {row + 1}; the calibration "
            "needs numbers there."
        )
    return numbers.to_numpy(dtype=float)


def _data_limit(values: Any, reduce: Any, option: str) -> float:
    if values is None or np.size(values) == 0:
        raise DataError(f"the calibration file holds no calibration data; give {option}.")
    return float(reduce(values))


def add_calibration_commands(commands: Any) -> None:
    """Register ``calibrate`` and ``infer`` on the ``hierax`` sub-command parser."""
    calibrate = commands.add_parser(
        "calibrate",
        help="fit a calibration model to two columns of a table",
        description="Fit a calibration model (mean function + noise model) by maximum "
        "likelihood; print the estimates and write the model as JSON and its plot as PNG.",
    )
    calibrate.add_argument("data", help="CSV, TSV or Parquet table with the calibration data")
    calibrate.add_argument("--x", required=True, help="column of the independent variable")
    calibrate.add_argument("--y", required=True, help="column of the readouts")
    calibrate.add_argument(
        "--model",
        default="linear",
        help="mean function: linear, polynomial, logistic, asymmetric_logistic, "
        "xlog_asymmetric_logistic, exponential (default linear)",
    )
    calibrate.add_argument("--degree", type=int, default=1, help="degree of --model polynomial")
    calibrate.add_argument(
        "--noise",
        default="normal",
        help="noise model: normal, studentt, laplace, lognormal, poisson (default normal)",
    )
    calibrate.add_argument(
        "--scale-degree",
        type=int,
        default=0,
        help="the noise scale is a polynomial of the mean of this degree (default 0: constant)",
    )
    calibrate.add_argument(
        "--global", dest="global_search", action="store_true", help="global search first"
    )
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the global search")
    calibrate.add_argument(
        "--out", default="calibration.json", help="output JSON; the PNG plot goes beside it"
    )
    calibrate.set_defaults(handler=calibrate_command)

    infer = commands.add_parser(
        "infer",
        help="infer x from readouts with a saved calibration",
        description="Posterior of the independent variable given replicate readouts under a "
        "uniform prior: median, equal-tailed and highest-density intervals.",
    )
    infer.add_argument("calibration", help="calibration JSON written by 'hierax calibrate'")
    infer.add_argument("--y", nargs="+", type=float, required=True, help="replicate readouts")
    infer.add_argument(
        "--lower", type=float, default=None, help="prior lower bound (default: data min)"
    )
    infer.add_argument(
        "--upper", type=float, default=None, help="prior upper bound (default: data max)"
    )
    infer.add_argument("--steps", type=int, default=2000, help="grid points (default 2000)")
    infer.add_argument("--ci-prob", type=float, default=0.95, help="interval probability")
    infer.set_defaults(handler=infer_command)
