"""Benchmark of hierax against its peers (issue #7). Run by hand, never as a test.

    python bench/run.py --models crossed regression --tools hierax hierax-plain numpyro \\
        pymc nutpie stan --chains 4 --warmup 1000 --draws 1000 --seed 0 --out bench/results/

Every (model, tool) pair runs in its own subprocess (a fresh interpreter: no
JIT cache, compile times as a user sees them, and a hung sampler can be
killed). Each writes ``runs/<model>__<tool>.json`` (timings, status) and
``draws/<model>__<tool>.npz`` (the common reported parameters); the parent
then computes every diagnostic with ArviZ on those draws and writes
``results.json`` and ``results.md``. See bench/README.md for the metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import metrics  # noqa: E402
from bench.models import MODELS  # noqa: E402
from bench.tools import HIERAX, PEERS, TOOLS  # noqa: E402

SETTING_KEYS = ("chains", "warmup", "draws", "seed", "target_accept", "caches")


# ------------------------------------------------------------------ worker
def worker(model: str, tool: str, settings: dict[str, Any], out: Path) -> int:
    import numpy as np

    from bench import models as registry
    from bench import tools

    record: dict[str, Any] = {"model": model, "tool": tool, "settings": settings}
    started = time.time()
    try:
        mod = registry.get(model)
        table = mod.load()
        result = tools.run_tool(tool, mod, table, settings)
        raw = result.pop("raw")
        if not raw:
            raise RuntimeError("no reported parameter found in the tool's draws")
        (out / "draws").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "draws" / f"{model}__{tool}.npz", **raw)
        record.update(result, status="ok", reported=sorted(raw))
    except tools.NotAvailable as error:
        record.update(status="not available", reason=str(error))
    except Exception as error:  # noqa: BLE001 - recorded, the benchmark goes on
        record.update(
            status="error",
            reason=f"{type(error).__name__}: {str(error)[:500]}",
            traceback=traceback.format_exc()[-3000:],
        )
    record["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    record["git"] = environment()["git"]  # the hierax code this run used
    record["process_s"] = time.time() - started
    _write_run(out, model, tool, record)
    return 0


def _run_path(out: Path, model: str, tool: str) -> Path:
    return out / "runs" / f"{model}__{tool}.json"


def _write_run(out: Path, model: str, tool: str, record: dict[str, Any]) -> None:
    path = _run_path(out, model, tool)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


# ------------------------------------------------------------------ parent
def launch(model: str, tool: str, settings: dict[str, Any], out: Path, timeout: float) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        model,
        tool,
        "--settings",
        json.dumps(settings),
        "--out",
        str(out),
    ]
    started = time.time()
    env = dict(os.environ)
    scratch = None
    if settings.get("caches", "cold") == "cold":
        # fresh, empty compile caches for this run only (Stan's is emptied in the worker)
        scratch = Path(tempfile.mkdtemp(prefix=f"bench-{model}-{tool}-"))
        env["PYTENSOR_FLAGS"] = f"compiledir={scratch / 'pytensor'}"
        env["HIERAX_COMPILATION_CACHE"] = str(scratch / "jax")
    else:
        env.setdefault(
            "BENCH_JAX_CACHE", str(Path.home() / ".cache" / "hierax-bench" / "jax-numpyro")
        )
    try:
        _launch(command, env, model, tool, settings, out, timeout, started, logs)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _launch(
    command: list[str],
    env: dict[str, str],
    model: str,
    tool: str,
    settings: dict[str, Any],
    out: Path,
    timeout: float,
    started: float,
    logs: Path,
) -> None:
    with open(logs / f"{model}__{tool}.log", "w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
            env=env,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the worker and its own children only
            process.wait()
            _write_run(
                out,
                model,
                tool,
                {
                    "model": model,
                    "tool": tool,
                    "settings": settings,
                    "status": "timeout",
                    "reason": f"killed after {timeout:.0f} s",
                    "process_s": time.time() - started,
                },
            )
            return
    if process.returncode != 0 and not _run_path(out, model, tool).exists():
        _write_run(
            out,
            model,
            tool,
            {
                "model": model,
                "tool": tool,
                "settings": settings,
                "status": "error",
                "reason": f"worker exited with {process.returncode}; see logs/{model}__{tool}.log",
                "process_s": time.time() - started,
            },
        )


def load_run(out: Path, model: str, tool: str) -> dict[str, Any] | None:
    path = _run_path(out, model, tool)
    return json.loads(path.read_text()) if path.exists() else None


def aggregate(out: Path, models: list[str], tools: list[str]) -> dict[str, Any]:
    import numpy as np

    results: dict[str, Any] = {"models": {}}
    for model in models:
        runs: dict[str, Any] = {}
        per: dict[str, dict[str, dict[str, float]]] = {}
        for tool in tools:
            run = load_run(out, model, tool)
            if run is None:
                continue
            entry = {k: v for k, v in run.items() if k not in ("traceback",)}
            if run["status"] == "ok":
                with np.load(out / "draws" / f"{model}__{tool}.npz") as data:
                    draws = {k: data[k] for k in data.files}
                per[tool] = metrics.element_stats(draws)
                entry.update(metrics.summarize(run, per[tool], run["settings"]))
                entry["converged"] = metrics.converged(entry, run)
            runs[tool] = entry
        # reference for agreement: NumPyro if it converged without divergences,
        # else the converged peer with the most min bulk ESS, else the converged
        # tool (hierax included) with the most, else the tool with the most
        ok = [t for t in runs if runs[t]["status"] == "ok"]
        ref = None
        if "numpyro" in ok and runs["numpyro"]["converged"] and runs["numpyro"]["divergences"] == 0:
            ref = "numpyro"
        elif ok:
            converged = [t for t in ok if runs[t]["converged"]]
            pool = [t for t in converged if t in PEERS] or converged or ok
            ref = max(pool, key=lambda t: np.nan_to_num(runs[t]["min_ess_bulk"], nan=-1))
        for tool in ok:
            if tool != ref:
                runs[tool]["agreement"] = metrics.agreement(per[tool], per[ref])
        # hierax against every converged peer as well (JSON only)
        for tool in (t for t in ok if t in HIERAX):
            runs[tool]["agreement_vs_peers"] = {
                peer: metrics.agreement(per[tool], per[peer])
                for peer in ok
                if peer in PEERS and runs[peer]["converged"]
            }
        ratios = {}
        peers = [t for t in ok if t in PEERS]
        peers_conv = [t for t in peers if runs[t]["converged"]] or peers
        if peers_conv:
            best_ess = max(
                peers_conv, key=lambda t: np.nan_to_num(runs[t]["ess_bulk_per_s"], nan=-1)
            )
            best_tta = min(peers_conv, key=lambda t: runs[t]["time_to_answer_s"])
            for tool in (t for t in ok if t in HIERAX):
                ratios[tool] = {
                    "best_peer_ess_per_s": best_ess,
                    "ess_per_s_ratio": runs[tool]["ess_bulk_per_s"]
                    / runs[best_ess]["ess_bulk_per_s"],
                    "best_peer_time_to_answer": best_tta,
                    "time_to_answer_ratio": runs[tool]["time_to_answer_s"]
                    / runs[best_tta]["time_to_answer_s"],
                    "peers_considered": peers_conv,
                }
        results["models"][model] = {"reference": ref, "runs": runs, "ratios": ratios}
    return results


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for package in (
        "hierax",
        "jax",
        "jaxlib",
        "numpyro",
        "arviz",
        "pymc",
        "pytensor",
        "nutpie",
        "numba",
        "pystan",
        "httpstan",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    git = {}
    for key, cmd in (
        ("commit", ["git", "rev-parse", "HEAD"]),
        ("hierax_dirty_files", ["git", "status", "--porcelain", "--", "hierax"]),
    ):
        try:
            text = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20).stdout
            git[key] = text.strip() if key == "commit" else len(text.splitlines())
        except (OSError, subprocess.SubprocessError):
            git[key] = None
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": versions,
        "git": git,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------- markdown
def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "∞"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    s = results["settings"]
    lines = [
        "# hierax benchmark (issue #7)",
        "",
        f"{s['chains']} chains x {s['warmup']} warmup + {s['draws']} draws, seed {s['seed']}, "
        f"target_accept {s['target_accept'] or 'tool default'}, {s.get('caches', 'cold')} "
        f"compile caches; {env['cpu_count']} CPU cores "
        f"(load average at the end {', '.join(f'{x:.1f}' for x in env['load_average'])}); "
        f"{env['date']}; commit {str(env['git'].get('commit'))[:10]}"
        + (
            f" with {env['git']['hierax_dirty_files']} uncommitted file(s) under hierax/"
            if env["git"].get("hierax_dirty_files")
            else ""
        )
        + ".",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        "Times in seconds. ESS/s = min bulk ESS / sampling s. TTA = time to answer "
        "(estimated: compile + other + warmup + the draws needed for min bulk ESS 400). "
        "z = |mean - ref mean| / sqrt(mcse² + mcse_ref²) (max over all reported elements; "
        "'ok' if within the Bonferroni 1 % bound); sd ratio = sd / ref sd (range). "
        "grad/draw = mean leapfrog steps per iteration.",
        "",
        "## Ratios: hierax / best peer",
        "",
        "| model | variant | ESS/s | best peer ESS/s | ratio | TTA s | best peer TTA s | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model, block in results["models"].items():
        runs = block["runs"]
        for tool in HIERAX:
            run = runs.get(tool)
            if run is None:
                continue
            r = block["ratios"].get(tool)
            if r is None:
                lines.append(f"| {model} | {tool} | {run['status']} | | | | | |")
                continue
            pe, pt = r["best_peer_ess_per_s"], r["best_peer_time_to_answer"]
            lines.append(
                f"| {model} | {tool} | {_f(run['ess_bulk_per_s'])} | "
                f"{_f(runs[pe]['ess_bulk_per_s'])} ({pe}) | **{_f(r['ess_per_s_ratio'])}** | "
                f"{_f(run['time_to_answer_s'])} | {_f(runs[pt]['time_to_answer_s'])} ({pt}) | "
                f"**{_f(r['time_to_answer_ratio'])}** |"
            )
    for model, block in results["models"].items():
        lines += [
            "",
            f"## {model}",
            "",
            f"{block.get('title', '')}. Agreement reference: {block['reference']}.",
            "",
            "| tool | status | compile | sampling | other | wall | TTA | min bulk ESS | "
            "min tail ESS | ESS/s | max R-hat | div | grad/draw | z mean | z sd | sd ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        notes = []
        for tool, run in block["runs"].items():
            if run["status"] != "ok":
                lines.append(f"| {tool} | {run['status']} |" + " |" * 14)
                notes.append(f"{tool}: {run.get('reason', '')}")
                continue
            agree = run.get("agreement")
            if agree and agree.get("n"):
                z = f"{_f(agree['max_abs_z_mean'])} {'ok' if agree['max_abs_z_mean'] <= agree['bound'] else '**off**'}"
                zs = f"{_f(agree['max_abs_z_sd'])} {'ok' if agree['max_abs_z_sd'] <= agree['bound'] else '**off**'}"
                ratio = f"{agree['sd_ratio_min']:.2f}–{agree['sd_ratio_max']:.2f}"
            else:
                z, zs, ratio = ("ref", "ref", "ref") if tool == block["reference"] else ("–",) * 3
            status = "ok" if run["converged"] else "ok, **not converged**"
            lines.append(
                f"| {tool} | {status} | {_f(run['compile_s'])} | {_f(run['sampling_s'])} | "
                f"{_f(run['other_s'])} | {_f(run['wall_s'])} | {_f(run['time_to_answer_s'])} | "
                f"{_f(run['min_ess_bulk'])} | {_f(run['min_ess_tail'])} | "
                f"{_f(run['ess_bulk_per_s'])} | {run['max_r_hat']:.3f} | {run['divergences']} | "
                f"{_f(run['mean_steps'])} | {z} | {zs} | {ratio} |"
            )
            if agree and agree.get("missing_vs_ref"):
                notes.append(f"{tool}: lacks {agree['missing_vs_ref']} (not compared)")
            if agree and agree.get("n") and not agree["agrees"]:
                notes.append(
                    f"{tool}: largest mean z at {agree['max_abs_z_mean_at']}, "
                    f"sd z at {agree['max_abs_z_sd_at']} (bound {agree['bound']:.2f})"
                )
            info = run.get("tool_info") or {}
            if "marginalized" in info:
                notes.append(
                    f"{tool}: marginalized {info['marginalized'] or 'nothing'}"
                    + (
                        f" ({info['not_marginalized_because']})"
                        if info.get("not_marginalized_because")
                        else ""
                    )
                )
            if run["min_ess_bulk_at"]:
                notes.append(f"{tool}: min bulk ESS at {run['min_ess_bulk_at']}")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, models: list[str], tools: list[str], settings: dict[str, Any]) -> None:
    from bench import models as registry

    results = aggregate(out, models, tools)
    for model in results["models"]:
        results["models"][model]["title"] = registry.get(model).TITLE
    results["settings"] = settings
    results["environment"] = environment()
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    (out / "results.md").write_text(markdown(results))
    print((out / "results.md").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="one target acceptance for every tool (default: each tool's own; hierax 0.95, others 0.8)",
    )
    parser.add_argument(
        "--caches",
        choices=("cold", "warm"),
        default="cold",
        help="cold (default): every tool compiles from scratch (empty httpstan model cache, "
        "fresh pytensor compiledir, fresh hierax/JAX compilation cache); warm: the tools' "
        "on-disk caches as left by earlier runs (a repeated fit of the same model)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds per (model, tool) run"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep finished runs in OUT/runs made with the same settings",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only recompute results.json / results.md from OUT/runs",
    )
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "TOOL"), help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if args.worker:
        return worker(args.worker[0], args.worker[1], json.loads(args.settings), out)

    settings = {
        "chains": args.chains,
        "warmup": args.warmup,
        "draws": args.draws,
        "seed": args.seed,
        "target_accept": args.target_accept,
        "caches": args.caches,
    }
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for model in args.models:
            for tool in args.tools:
                previous = load_run(out, model, tool)
                if (
                    args.reuse
                    and previous is not None
                    and previous.get("status") in ("ok", "not available")
                    and all(previous["settings"].get(k) == settings[k] for k in SETTING_KEYS)
                ):
                    print(f"[reuse] {model} / {tool}", flush=True)
                    continue
                print(f"[run]   {model} / {tool} ...", end=" ", flush=True)
                started = time.time()
                launch(model, tool, settings, out, args.timeout)
                run = load_run(out, model, tool) or {}
                print(
                    f"{run.get('status')} ({time.time() - started:.0f} s)"
                    + (f": {run.get('reason')}" if run.get("status") != "ok" else ""),
                    flush=True,
                )
    write_reports(out, args.models, args.tools, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
