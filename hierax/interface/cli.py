"""The ``hierax`` command line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import tomllib
import traceback
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pandas as pd

from hierax.core import interrupt
from hierax.core.files import atomic_write, check_output_folder
from hierax.errors import ConvergenceWarning, HieraxError, ModelError, close_matches
from hierax.interface.calibration_cli import add_calibration_commands

if TYPE_CHECKING:
    from hierax.interface.spec import Spec
    from hierax.results.fit import Fit

#: Exceptions reported as one ``hierax: error: ...`` line (exit 2) unless ``--debug``.
USER_ERRORS: tuple[type[BaseException], ...] = (
    HieraxError,
    KeyError,
    OSError,
    tomllib.TOMLDecodeError,
    ValueError,
)
SUMMARY_COLUMNS = ["mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat"]
#: Exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def _demo(args: argparse.Namespace) -> int:
    from hierax import examples
    from hierax.diagnostics.convergence import format_findings
    from hierax.present.figures import use_headless_backend

    use_headless_backend()
    warnings.filterwarnings("ignore", module="arviz.plots")
    names = args.names or list(examples.ALL_NAMES if args.all else examples.NAMES)
    for name in names:
        if name not in examples.ALL_NAMES:
            examples.get(name)  # raises with close matches
    out = check_output_folder(Path(args.out))  # fails now, not after the first fit
    total_started = time.perf_counter()
    for name in names:
        module = examples.get(name)
        started = time.perf_counter()
        print(f"== {name}: {module.TITLE}", flush=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            result = module.fit(seed=args.seed, quick=args.quick, progress=args.progress)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        result.summary().to_csv(folder / "summary.csv")
        result.save(folder / "fit.nc")
        figures = module.figures(result, folder)
        result.report(folder)
        elapsed = time.perf_counter() - started
        table = result.summary(var_names=module.HYPERPARAMETERS, round_to=4)
        columns = ["mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "r_hat"]
        print(table[columns].to_string())
        problems = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        if result.findings:
            print("problems found:\n" + format_findings(result.findings))
        elif not problems:
            print("convergence: no problems found")
        print(
            f"{result.divergences} divergences; {elapsed:.1f} s; wrote {folder}/summary.csv, "
            f"fit.nc, report.html and {len(figures)} plots\n",
            flush=True,
        )
        if name == "crossed" and not args.quick:
            print("== crossed (naive): the forum's original non-identifiable model", flush=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                naive = module.fit(seed=args.seed, quick=True, progress=args.progress, naive=True)
            naive_folder = out / "crossed_naive"
            naive_folder.mkdir(parents=True, exist_ok=True)
            naive.summary().to_csv(naive_folder / "summary.csv")
            naive.save(naive_folder / "fit.nc")
            print(
                naive.summary(["mu_alpha", "mu_beta"], round_to=3)[
                    ["mean", "sd", "r_hat"]
                ].to_string()
            )
            naive.report(naive_folder)
            print(str(naive.diagnose()) + "\n", flush=True)
    print(f"done in {time.perf_counter() - total_started:.1f} s; results in {out}/")
    return 0


# ----------------------------------------------------------------- atomic writes
def _write_csv(table: pd.DataFrame, path: Path, index: bool = True) -> Path:
    return atomic_write(path, lambda temporary: table.to_csv(temporary, index=index))


def _report_module() -> Any:
    """``hierax.report``, or None where this installation has none."""
    try:
        from hierax.present import report
    except ImportError:
        return None
    return report


def _write_report(result: Fit, out: Path, title: str | None = None) -> Path | None:
    report = _report_module()
    if report is None:
        return None
    if title:
        return Path(report.write_report(result, out, title=title))
    return Path(report.write_report(result, out))


# --------------------------------------------------------------------- printing
def _shown_variables(result: Fit) -> list[str]:
    """Variables printed after a fit: the spec's ``[output] show``, else small ones."""
    from hierax.interface.spec import SpecError, spec_from_fit

    try:
        show = spec_from_fit(result).output.show
    except SpecError:
        show = None
    known = [name for name in show or [] if name in result.posterior]
    if known:
        return known
    names = [
        name
        for name, variable in result.posterior.data_vars.items()
        if variable.size // max(variable.shape[0] * variable.shape[1], 1) <= 4
        and not str(name).startswith(("z_", "L_cor_"))
        and name != "mu"
    ]
    return [str(n) for n in names] or [str(n) for n in list(result.posterior.data_vars)[:10]]


def _check_variables(result: Fit, names: Sequence[str]) -> None:
    known = [str(n) for n in result.posterior.data_vars]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ModelError(
            f"no posterior variable(s) {unknown}; variables: {known}."
            f"{''.join(close_matches(n, known) for n in unknown)}"
        )


def _print_summary(result: Fit, names: Sequence[str]) -> None:
    table = result.summary(var_names=list(names), round_to=4)
    print(table[[c for c in SUMMARY_COLUMNS if c in table.columns]].to_string())
    print(result.diagnose(), flush=True)


# ------------------------------------------------------------------------- fit
def _spec_with_overrides(spec: Spec, args: argparse.Namespace) -> Spec:
    """The spec with the command line's sampler options, checked (ModelError names the option)."""
    from hierax.inference.sampling import check_run_options

    sampler = spec.sampler
    draws, warmup = sampler.draws, sampler.warmup
    if args.quick:
        draws, warmup = max(draws // 2, 1), warmup // 2
    overrides = {
        "draws": args.draws if args.draws is not None else draws,
        "warmup": args.warmup if args.warmup is not None else warmup,
        "chains": args.chains,
        "seed": args.seed,
    }
    checked = check_run_options({k: v for k, v in overrides.items() if v is not None})
    return spec.with_sampler(**checked)


def _interrupted(stage: str, written: Sequence[Path], out: Path) -> int:
    if written:
        kept = ", ".join(p.name for p in written)
        print(
            f"hierax: interrupted while {stage}; kept the complete file(s) {kept} in {out}/ "
            "(no partial files).",
            file=sys.stderr,
        )
    else:
        print(
            f"hierax: interrupted while {stage}; sampling was stopped and nothing was written "
            f"to {out}/.",
            file=sys.stderr,
        )
    return INTERRUPTED


def _remove_if_empty(folder: Path) -> None:
    """Remove a folder this command created when nothing was written into it."""
    try:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def _fit_command(args: argparse.Namespace) -> int:
    """``hierax fit spec.toml``: sample, write fit.nc, summary.csv and report.html."""
    from hierax.interface.spec import build_model, fit_spec, load_spec

    spec = _spec_with_overrides(load_spec(args.spec), args)
    out = Path(args.out) if args.out else spec.output.folder
    model = build_model(spec)  # every data and model error comes before sampling
    created = not out.exists()
    check_output_folder(out)  # a folder that cannot be written fails now, not after sampling
    sampler = spec.sampler
    print(f"== {spec.title or spec.source}\n{model!r}")
    print(
        f"hierax: sampling {sampler.chains} chains x {sampler.draws} draws "
        f"({sampler.warmup} warmup); Ctrl-C stops cleanly",
        flush=True,
    )
    written: list[Path] = []
    stage = "sampling"
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(), interrupt.stop_on_interrupt():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the diagnosis says it all
            result = fit_spec(spec, model=model, progress=args.progress)
            interrupt.check()  # a Ctrl-C that Python swallowed during the fit
        elapsed = time.perf_counter() - started
        stage = "writing fit.nc"
        written.append(result.save(out / "fit.nc"))
        stage = "writing summary.csv"
        written.append(_write_csv(result.summary(), out / "summary.csv"))
        stage = "printing the summary"
        print(f"{result.divergences} divergences; {elapsed:.1f} s")
        _print_summary(result, _shown_variables(result))
        if spec.output.report and not args.no_report:
            stage = "writing report.html"
            page = _write_report(result, out, spec.title)
            if page is not None:
                written.append(page)
    except KeyboardInterrupt:
        if created and not written:
            _remove_if_empty(out)
        return _interrupted(stage, written, out)
    except BaseException:
        if created and not written:
            _remove_if_empty(out)
        raise
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


# ---------------------------------------------------- summary, predict, report
def _summary_command(args: argparse.Namespace) -> int:
    """``hierax summary fit.nc``: the summary table and the diagnosis."""
    from hierax.results.fit import load

    result = load(args.fit)
    names = args.var or _shown_variables(result)
    _check_variables(result, names)
    posterior = result.posterior
    title = result.info.get("title")
    print(
        (f"== {title}\n" if title else "")
        + f"{args.fit}: {posterior.sizes['chain']} chains x {posterior.sizes['draw']} draws; "
        f"{result.divergences} divergences"
    )
    _print_summary(result, names)
    return 0


def _predict_command(args: argparse.Namespace) -> int:
    """``hierax predict fit.nc new.csv --out pred.csv``."""
    from hierax.data import read_table
    from hierax.interface.spec import SpecError, build_model, predict_frame, spec_from_fit
    from hierax.results.fit import load

    result = load(args.fit)
    spec = spec_from_fit(result, where=repr(str(args.fit)), trust=args.trust_file)
    if spec.model.function is not None:  # known without importing anything
        raise SpecError(
            "predict works for linear formula models; this fit's spec names a model function."
        )
    new_table = read_table(args.new)
    model = build_model(spec)
    frame = predict_frame(
        result,
        model,
        new_table,
        kind=args.kind,
        seed=args.seed,
        allow_new_levels=args.allow_new_levels,
    )
    path = _write_csv(frame, Path(args.out), index=False)
    print(f"wrote {path}: {len(frame)} rows, posterior {args.kind} (mean, sd, q3%, q97%)")
    return 0


def _report_command(args: argparse.Namespace) -> int:
    """``hierax report fit.nc``: write report.html beside it (or into --out)."""
    from hierax.results.fit import load

    result = load(args.fit)
    if _report_module() is None:
        raise HieraxError("this installation of hierax has no report module (hierax.report).")
    out = Path(args.out) if args.out else Path(args.fit).parent
    page = _write_report(result, out, result.info.get("title"))
    print(f"wrote {page}")
    return 0


# --------------------------------------------------------------------- example
def _example_specs() -> dict[str, Path]:
    folder = Path(str(resources.files("hierax.examples").joinpath("specs")))
    return {path.stem: path for path in sorted(folder.glob("*.toml"))}


def _example_command(args: argparse.Namespace) -> int:
    """``hierax example NAME --out DIR``: copy a seed spec and its files into DIR."""
    from hierax.interface.spec import load_spec

    specs = _example_specs()
    if args.name is None:
        for name, path in specs.items():
            print(f"{name:15} {load_spec(path).title or ''}")
        return 0
    if args.name not in specs:
        raise KeyError(
            f"unknown example {args.name!r}; choose from {list(specs)}."
            f"{close_matches(args.name, specs)}"
        )
    source = specs[args.name]
    spec = load_spec(source)
    raw = tomllib.loads(spec.text)
    text = spec.text
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    copies = [(raw["data"]["file"], spec.data_file)]
    if spec.model.calibration is not None:
        copies.append((raw["model"]["calibration"], spec.model.calibration))
    written = []
    for original, path in copies:
        written.append(Path(shutil.copyfile(path, out / path.name)))
        text = text.replace(f'"{original}"', f'"{path.name}"')
    target = out / source.name
    written.append(atomic_write(target, lambda temporary: temporary.write_text(text)))
    print(f"wrote {', '.join(str(p) for p in written)}\nrun it with: hierax fit {target}")
    return 0


# ---------------------------------------------------------------------- parser
def _add_fit_parser(commands: Any) -> None:
    fit = commands.add_parser(
        "fit",
        help="fit the model of a TOML spec file",
        description="Fit the model described by a TOML spec (data, formula or model function, "
        "family, priors, sampler settings, output folder); write fit.nc, summary.csv and "
        "report.html into the output folder. 'hierax example crossed --out DIR' writes a spec "
        "to start from.",
    )
    fit.add_argument("spec", help="the spec file (.toml)")
    fit.add_argument("--out", help="output folder (default: [output] folder of the spec)")
    fit.add_argument("--quick", action="store_true", help="half the spec's warmup and draws")
    fit.add_argument("--draws", type=int, help="draws per chain (overrides the spec)")
    fit.add_argument("--warmup", type=int, help="warmup iterations per chain")
    fit.add_argument("--chains", type=int, help="number of chains")
    fit.add_argument("--seed", type=int, help="random seed")
    fit.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on a terminal)",
    )
    fit.add_argument("--no-report", action="store_true", help="do not write report.html")
    fit.set_defaults(handler=_fit_command)


def _add_result_parsers(commands: Any) -> None:
    summary = commands.add_parser(
        "summary",
        help="summary table and diagnosis of a saved fit",
        description="Print the posterior summary (the spec's [output] show variables, or the "
        "small ones) and hierax's diagnosis of a fit saved as .nc.",
    )
    summary.add_argument("fit", help="fit.nc written by 'hierax fit' or Fit.save")
    summary.add_argument("--var", nargs="+", help="variables to show")
    summary.set_defaults(handler=_summary_command)

    predict = commands.add_parser(
        "predict",
        help="predict new rows with a saved formula fit",
        description="Rebuild the model from the spec recorded in fit.nc and write, per row of "
        "the new table, its columns plus the posterior mean, sd and 3 %%/97 %% quantiles.",
    )
    predict.add_argument("fit", help="fit.nc written by 'hierax fit'")
    predict.add_argument("new", help="CSV, TSV or Parquet table of new rows")
    predict.add_argument("--out", required=True, help="output CSV")
    predict.add_argument(
        "--kind",
        choices=["mean", "response"],
        default="mean",
        help="the mean (default) or new responses",
    )
    predict.add_argument(
        "--allow-new-levels", action="store_true", help="new group levels get population draws"
    )
    predict.add_argument("--seed", type=int, default=0, help="seed of response draws")
    predict.add_argument(
        "--trust-file",
        action="store_true",
        help="allow importing the Python modules that the spec recorded in fit.nc names "
        "(model function, [model.functions], init). A fit file is data: without this flag "
        "hierax refuses to import code named in it, since a changed file could run any code. "
        "Pass it only for files you made or whose author you trust.",
    )
    predict.set_defaults(handler=_predict_command)

    report = commands.add_parser(
        "report",
        help="write the HTML report of a saved fit",
        description="Write report.html for a fit saved as .nc.",
    )
    report.add_argument("fit", help="fit.nc")
    report.add_argument("--out", help="output folder (default: the folder of fit.nc)")
    report.set_defaults(handler=_report_command)

    example = commands.add_parser(
        "example",
        help="copy a seed workflow's spec file and data into a folder",
        description="Copy the spec (TOML) of a seed workflow and its data into --out, ready "
        "for 'hierax fit'. Without NAME, list the examples.",
    )
    example.add_argument("name", nargs="?", help="crossed, crossed_naive, regression, ...")
    example.add_argument("--out", default=".", help="folder to write into (default .)")
    example.set_defaults(handler=_example_command)


def _add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the seed workflows on their embedded data",
        description="Fit the seed workflows (calibration, crossed, regression, parallax, "
        "binaries) and write summary.csv, fit.nc and plots for each.",
    )
    demo.add_argument(
        "names",
        nargs="*",
        help="workflows to run (default: the five seeds calibration, crossed, regression, "
        "parallax, binaries; also crossed_formula, regression_formula, calibration_nl, "
        "parallax_nl, calibration_cal)",
    )
    demo.add_argument("--out", default="hierax-demo", help="output folder (default ./hierax-demo)")
    demo.add_argument("--quick", action="store_true", help="fewer draws (500 warmup + 500)")
    demo.add_argument(
        "--all",
        action="store_true",
        help="also run the formula, nonlinear and calibration versions",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on a terminal)",
    )
    demo.set_defaults(handler=_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hierax", description="Hierarchical Bayesian models on JAX."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_fit_parser(commands)
    _add_result_parsers(commands)
    _add_demo_parser(commands)
    add_calibration_commands(commands)  # `hierax calibrate` and `hierax infer`
    for sub in commands.choices.values():  # --debug also after the command
        sub.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks on errors",
        )
    return parser


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error) or type(error).__name__


def _exit_now(code: int) -> NoReturn:
    """End the process at once, without Python's shutdown.

    After Ctrl-C, sampling may still run in XLA's threads (a compiled program in
    flight cannot be cancelled); Python's shutdown would wait for it, or crash
    tearing JAX down under it. Every file was written atomically, and the
    temporary files of an interrupted write are already removed.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hierax`` command; returns its exit code.

    Run as the command (``argv`` None), a command stopped by Ctrl-C ends the
    process at once with exit code 130 (see :func:`_exit_now`); called with
    ``argv`` (from Python), it returns 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from hierax.core.runtime import enable_compilation_cache

    enable_compilation_cache()  # a repeated command skips XLA compilation
    try:
        code = int(args.handler(args))
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"hierax: error: {_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not args.debug:
            print("hierax: interrupted; files already written are complete.", file=sys.stderr)
        elif argv is not None:
            raise
        else:
            traceback.print_exc()
        code = INTERRUPTED
    if code == INTERRUPTED and argv is None:
        _exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
