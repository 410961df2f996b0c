"""Simulation-based calibration of every hierax inference path (issue 16).

Run by hand, never as a test (the slow test ``tests/test_sbc.py`` runs a
small study)::

    python -m bench.sbc                      # every path and control, N = 200
    python -m bench.sbc --paths independence latent --n 50
    python -m bench.sbc --table              # only rebuild the table from the JSON files

Each path simulates N datasets from the prior of a small model (30-36 rows),
fits each with 2 chains x 400 draws after 300 warmup iterations, and ranks
every true scalar parameter (sampled and integrated-out ones alike) among 99
thinned posterior draws; ranks are tested for uniformity with a chi-square on
20 bins, Bonferroni over the parameters at 1 % (:meth:`hierax.results.sbc_result.SBCResult.passed`).
The path each fit took is read from ``fit.info["method"]`` and
``fit.info["marginalized"]`` and must be the intended one.

Results go to ``bench/results/sbc/``: one JSON per path (ranks, per-fit
records, per-parameter statistics), a rank-histogram PNG per path, and
``results.md`` / ``results.json`` with the table of all paths.

The simulations run in chunks of 20 (each its own seed and process), saved to
``bench/results/sbc/chunks/`` (git-ignored): a stopped study resumes where it
was, and several ``python -m bench.sbc`` processes started side by side share
the chunks (each claims one with a ``.claim`` file; delete those of a killed
process before resuming).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Compilation dominates these small fits, and NUTS compiles its program anew for each
# dataset (the data and the preconditioner are constants of it). XLA's optimization
# level 0 compiles about 3x faster (8 s against 23 s per NUTS fit on 2 loaded cores)
# and changes nothing but the speed of the generated code.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import hierax as hx  # noqa: E402
from hierax.results.sbc import sbc  # noqa: E402
from hierax.results.sbc_result import SBCResult  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "sbc"
FIT_OPTIONS = {"chains": 2, "draws": 400, "warmup": 300}
ALPHA = 0.01

# ------------------------------------------------------------------ templates


def _grouped_table() -> pd.DataFrame:
    """6 groups x 6 rows, one standardized predictor; y is replaced by simulations."""
    rng = np.random.default_rng(16)
    return pd.DataFrame(
        {
            "g": np.repeat([f"g{i}" for i in range(6)], 6),
            "x": np.round(rng.normal(size=36), 3),
            "y": 0.0,
        }
    )


GAUSSIAN_PRIORS = {
    "Intercept": "Normal(0, 1)",
    "b_x": "Normal(0, 1)",
    "sd_g": "HalfNormal(1)",
    "sigma": "LogNormal(-0.7, 0.3)",
}
GAUSSIAN_FORMULA = "y ~ x + (1 | g)"


def gaussian_model(table: pd.DataFrame, **overrides: Any) -> Any:
    """The varying-intercept regression of paths 1-3 (non-centered group effects)."""
    return hx.Model(
        GAUSSIAN_FORMULA, table, priors={**GAUSSIAN_PRIORS, **overrides}, centered=False
    )


def _stars_table() -> pd.DataFrame:
    """30 stars with parallax errors 0.05-0.2 (distances near 1, parallaxes near 1)."""
    return pd.DataFrame(
        {"parallax": 1.0, "parallax_error": np.round(np.linspace(0.05, 0.2, 30), 4)}
    )


def latent_model(table: pd.DataFrame) -> Any:
    """A star cluster: per-star distances ``r`` integrated by quadrature."""
    return hx.Model(
        "parallax | se(parallax_error) ~ 1 / r",
        table,
        params={
            "r": hx.latent("TruncatedNormal(mu_r, exp(ln_std_r), low=0)"),
            "mu_r": "1",
            "ln_std_r": "1",
        },
        priors={"mu_r": "TruncatedNormal(1, 0.2, low=0.5)", "ln_std_r": "Uniform(-3, -1.5)"},
    )


def _decay_table() -> pd.DataFrame:
    """3 batches x 10 times on [0, 4]."""
    return pd.DataFrame(
        {
            "batch": np.repeat(["b1", "b2", "b3"], 10),
            "t": np.tile(np.round(np.linspace(0.0, 4.0, 10), 3), 3),
            "y": 0.0,
        }
    )


def decay_model(table: pd.DataFrame) -> Any:
    """``y ~ a + b exp(-k t)``: a (with a batch effect) and b enter affinely."""
    return hx.Model(
        "y ~ a + b * exp(-k * t)",
        table,
        params={"a": "1 + (1 | batch)", "b": "1", "k": "1"},
        priors={
            "a": "Normal(0, 1)",
            "sd_a_batch": "HalfNormal(0.5)",
            "b": "Normal(2, 0.5)",
            "k": "LogNormal(0, 0.3)",
            "sigma": "LogNormal(-1.6, 0.3)",
        },
    )


def _herds_table() -> pd.DataFrame:
    """8 herds x 5 periods, 10 animals each, one standardized predictor."""
    rng = np.random.default_rng(18)
    return pd.DataFrame(
        {
            "g": np.repeat([f"h{i}" for i in range(8)], 5),
            "x": np.round(rng.normal(size=40), 3),
            "n": 10,
            "y": 0,
        }
    )


def binomial_model(table: pd.DataFrame) -> Any:
    """A binomial GLMM: each herd's effect integrated out per level by quadrature."""
    return hx.Model(
        "y | trials(n) ~ x + (1 | g)",
        table,
        family="binomial",
        priors={"Intercept": "Normal(0, 1)", "b_x": "Normal(0, 1)", "sd_g": "HalfNormal(1)"},
    )


# ---------------------------------------------------------------------- paths


@dataclass
class Path_:
    """One row of the study."""

    name: str
    description: str
    build: Callable[[pd.DataFrame], Any]
    table: Callable[[], pd.DataFrame]
    fit_options: dict[str, Any]
    # the fit.info["method"] every fit must report, or one of "a|b": a collapsed model
    # is sampled by the independence sampler where its checks (Pareto k, acceptance)
    # pass, else by NUTS; the table counts both
    method: str
    marginalized: list[str] = field(default_factory=list)  # ... and fit.info["marginalized"]
    fit_model: Callable[[pd.DataFrame], Any] | None = None
    expect_pass: bool = True
    n: int | None = None  # a smaller N for a control
    patch: Callable[[], contextlib.AbstractContextManager[Any]] | None = None


def _shrunk(draws: np.ndarray) -> np.ndarray:
    """Every posterior shrunk towards its mean by 0.7: too narrow by 30 %."""
    mean = np.nanmean(draws, axis=1, keepdims=True)
    return mean + 0.7 * (draws - mean)


@contextlib.contextmanager
def wrong_conditional_draw() -> Iterator[list[int]]:
    """Shrink the exact conditional draws of a collapsed formula fit towards their mean.

    Only the integrated-out coefficients (Intercept, b_x, z_g, r_g) are
    corrupted; the sampled sd_g and sigma stay right. Yields a list that
    counts the calls, so the control cannot silently be a no-op.
    """
    from hierax.inference.marginal import linear as formula

    original = formula.draw_marginalized
    calls: list[int] = []

    def corrupted(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        calls.append(1)
        drawn = original(*args, **kwargs)
        out = {}
        for name, value in drawn.items():  # (chain, draw, ...)
            mean = value.mean(axis=(0, 1), keepdims=True)
            out[name] = mean + 0.7 * (value - mean)
        return out

    formula.draw_marginalized = corrupted
    try:
        yield calls
    finally:
        formula.draw_marginalized = original


COLLAPSED = ["Intercept", "b_x", "z_g"]
PATHS = [
    Path_(
        "nuts",
        f"`{GAUSSIAN_FORMULA}`, 36 rows, `marginalize=False`",
        gaussian_model,
        _grouped_table,
        {**FIT_OPTIONS, "marginalize": False},
        method="nuts",
    ),
    Path_(
        "collapsed-nuts",
        f"`{GAUSSIAN_FORMULA}`, 36 rows, `draw_method='nuts'`",
        gaussian_model,
        _grouped_table,
        {**FIT_OPTIONS, "draw_method": "nuts"},
        method="nuts",
        marginalized=COLLAPSED,
    ),
    Path_(
        "independence",
        f"`{GAUSSIAN_FORMULA}`, 36 rows, default fit",
        gaussian_model,
        _grouped_table,
        dict(FIT_OPTIONS),
        method="independence_mh|nuts",
        marginalized=COLLAPSED,
    ),
    Path_(
        "latent",
        "`parallax | se(parallax_error) ~ 1 / r`, latent `r ~ TruncatedNormal(mu_r, "
        "exp(ln_std_r), low=0)`, 30 stars",
        latent_model,
        _stars_table,
        dict(FIT_OPTIONS),
        method="independence_mh|nuts",
        marginalized=["r"],
    ),
    Path_(
        "nonlinear",
        "`y ~ a + b * exp(-k * t)`, `a ~ 1 + (1 | batch)`, 30 rows",
        decay_model,
        _decay_table,
        dict(FIT_OPTIONS),
        method="independence_mh|nuts",
        marginalized=["a", "b"],
    ),
    Path_(
        "glmm",
        "`y | trials(n) ~ x + (1 | g)`, binomial, 8 herds x 5 rows of 10 trials",
        binomial_model,
        _herds_table,
        dict(FIT_OPTIONS),
        method="independence_mh|nuts",
        marginalized=["z_g"],
    ),
    Path_(
        "control-wrong-conditional-draw",
        "independence path, conditional draws of the coefficients shrunk by 0.7",
        gaussian_model,
        _grouped_table,
        dict(FIT_OPTIONS),
        method="independence_mh|nuts",
        marginalized=COLLAPSED,
        expect_pass=False,
        patch=wrong_conditional_draw,
    ),
    Path_(
        "control-wrong-prior",
        "independence path, simulated with `sd_g ~ HalfNormal(1)`, fitted with HalfNormal(0.3)",
        gaussian_model,
        _grouped_table,
        dict(FIT_OPTIONS),
        method="independence_mh|nuts",
        marginalized=COLLAPSED,
        fit_model=lambda table: gaussian_model(table, sd_g="HalfNormal(0.3)"),
        expect_pass=False,
    ),
]
#: Derived from the independence path's fits, no fits of its own.
SHRUNK = "control-shrunk-posterior"


# ------------------------------------------------------------------------ run


def _path_check(result: SBCResult, path: Path_) -> tuple[bool, str]:
    """Did every successful fit take the intended path? Returns (ok, what was seen)."""
    ok = result.fits[result.fits["error"] == ""]
    methods = ok["method"].value_counts()
    seen = ", ".join(f"{m} x{c}" for m, c in methods.items())
    right_method = set(methods.index) <= set(path.method.split("|"))
    marginalized = {tuple(sorted(m.split(","))) if m else () for m in ok["marginalized"]}
    wanted = tuple(sorted(path.marginalized))
    right_sites = all(set(wanted) <= set(m) for m in marginalized) and (
        bool(wanted) or marginalized <= {()}
    )
    sites = "; ".join(",".join(m) or "none" for m in sorted(marginalized))
    return right_method and right_sites, f"{seen}; marginalized: {sites}"


def _chunk_file(out: Path, name: str, chunk: int) -> Path:
    return out / "chunks" / f"{name}-{chunk:03d}.pkl"


def run_chunk(path: Path_, chunk: int, size: int, seed: int, out: Path) -> None:
    """Simulate and fit one chunk of a path (its own seed) and save it."""
    patch = path.patch() if path.patch is not None else contextlib.nullcontext([1])
    with patch as calls:
        result = sbc(
            path.build,
            path.table(),
            n_simulations=size,
            seed=seed * 1000 + chunk,
            fit_options=path.fit_options,
            fit_model=path.fit_model,
            label=path.name,
            progress=True,
        )
    if not calls:
        raise RuntimeError(f"the negative control {path.name} never called its corruption")
    file = _chunk_file(out, path.name, chunk)
    temporary = file.with_suffix(".tmp")
    temporary.write_bytes(pickle.dumps(result))
    temporary.replace(file)


def _claim(out: Path, name: str, chunk: int) -> bool:
    """Atomically claim a chunk for this process (several processes share the work)."""
    if _chunk_file(out, name, chunk).exists():
        return False
    try:
        os.close(
            os.open(_chunk_file(out, name, chunk).with_suffix(".claim"), os.O_CREAT | os.O_EXCL)
        )
    except FileExistsError:
        return False
    return True


def run_all(paths: list[Path_], n: int, chunk_size: int, seed: int, out: Path) -> None:
    """Chunks of every path in turn (chunk 0 of each path, then chunk 1...).

    Each chunk runs in a process of its own: every fit compiles programs of its
    own (the data are constants of them), and a long-lived process keeps them all
    (3.5 GB after 60 fits).
    """
    (out / "chunks").mkdir(parents=True, exist_ok=True)
    chunks = {p.name: -(-min(n, p.n or n) // chunk_size) for p in paths}
    for chunk in range(max(chunks.values())):
        for path in paths:
            if chunk < chunks[path.name] and _claim(out, path.name, chunk):
                started = time.perf_counter()
                size = min(chunk_size, min(n, path.n or n) - chunk * chunk_size)
                command = [sys.executable, "-m", "bench.sbc", "--one-chunk", path.name]
                command += [str(chunk), "--chunk", str(size), "--seed", str(seed)]
                command += ["--out", str(out)]
                subprocess.run(command, check=True)
                print(
                    f"{path.name} chunk {chunk}: {time.perf_counter() - started:.0f} s", flush=True
                )


def collect(out: Path, names: list[str] | None = None) -> None:
    """Combine each path's chunks into its JSON and plot (partial studies too).

    ``names`` limits it to these paths (the others keep the JSON they have).
    """
    for path in PATHS:
        if names is not None and path.name not in names:
            continue
        files = sorted((out / "chunks").glob(f"{path.name}-*.pkl"))
        if not files:
            continue
        result = SBCResult.combine([pickle.loads(f.read_bytes()) for f in files])
        _write(result, path, out)
        if path.name == "independence":
            control = Path_(
                SHRUNK,
                "independence path's fits, every posterior draw shrunk by 0.7 towards its mean",
                path.build,
                path.table,
                path.fit_options,
                path.method,
                path.marginalized,
                expect_pass=False,
            )
            _write(result.with_draws(_shrunk, label=SHRUNK), control, out)


def _write(result: SBCResult, path: Path_, out: Path) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    path_ok, seen = _path_check(result, path)
    record = {
        "path": path.name,
        "model": path.description,
        "fit_options": {k: v for k, v in path.fit_options.items()},
        "expect_pass": path.expect_pass,
        "path_ok": path_ok,
        "seen": seen,
        **result.to_dict(ALPHA),
    }
    record["as_expected"] = bool(record["passed"] == path.expect_pass and path_ok)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{path.name}.json").write_text(json.dumps(record, indent=1, default=_plain))
    figure = result.plot(columns=6)
    figure.savefig(out / f"{path.name}.png", dpi=70)
    summary = result.summary()
    print(
        f"{path.name}: passed={record['passed']} (expected {path.expect_pass}), "
        f"min p {record['min_p_value']:.3g} ({record['weakest_parameter']}), "
        f"failed fits {record['failed_fits']}, {seen}, {result.wall_seconds:.0f} s\n"
        f"{summary.sort_values('p_value').head(5).to_string()}",
        flush=True,
    )
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


ORDER = [p.name for p in PATHS[:3]] + [SHRUNK] + [p.name for p in PATHS[3:]]


def write_table(out: Path) -> str:
    """results.md and results.json from the per-path JSON files present."""
    records = []
    for name in ORDER:
        file = out / f"{name}.json"
        if file.exists():
            records.append(json.loads(file.read_text()))
    lines = [
        "| path | model | N | parameters | min p (parameter) | passed | expected | "
        "failed fits | fits with warnings | method seen (as intended?) | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        model = r["model"].replace("|", "\\|")
        lines.append(
            f"| {r['path']} | {model} | {r['n_simulations']} | {r['n_parameters']} | "
            f"{r['min_p_value']:.2g} ({r['weakest_parameter']}) | "
            f"{'yes' if r['passed'] else '**no**'} | {'pass' if r['expect_pass'] else 'fail'} | "
            f"{r['failed_fits']} | {r['fits_with_problems']} | {r['seen'].replace('|', '/')} "
            f"({'yes' if r['path_ok'] else '**no**'}) | {r['wall_seconds'] / 60:.0f} min |"
        )
    table = "\n".join(lines)
    header = (
        "# Simulation-based calibration of hierax's inference paths\n\n"
        f"`python -m bench.sbc` ({platform.processor() or platform.machine()}, "
        f"hierax {hx.__version__}). Fits: 2 chains x 400 draws after 300 warmup; ranks "
        "among 99 thinned draws; chi-square on 20 bins; passed = every p >= 0.01 / "
        "parameters (Bonferroni). `expected`: what a correct study shows (the controls "
        "must fail).\n\n"
    )
    (out / "results.md").write_text(header + table + "\n")
    summary = [{k: r[k] for k in r if k not in ("ranks", "fits", "summary")} for r in records]
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=_plain))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [p.name for p in PATHS]
    parser.add_argument("--paths", nargs="*", choices=names, default=names)
    parser.add_argument("--n", type=int, default=200, help="simulations per path (controls: 100)")
    parser.add_argument("--chunk", type=int, default=20, help="simulations per saved chunk")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="only rebuild the table")
    parser.add_argument("--one-chunk", nargs=2, metavar=("PATH", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_chunk:  # a worker's subprocess
        name, chunk = args.one_chunk
        path = next(p for p in PATHS if p.name == name)
        run_chunk(path, int(chunk), args.chunk, args.seed, args.out)
        return 0
    if not args.table:
        chosen = [p for p in PATHS if p.name in args.paths]
        run_all(chosen, args.n, args.chunk, args.seed, args.out)
    collect(args.out, None if args.table else list(args.paths))
    print(write_table(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
