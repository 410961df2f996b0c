"""Diagnostics computed identically for every tool (ArviZ) and the agreement between tools."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

ESS_TARGET = 400.0


def _flat(name: str, values: np.ndarray) -> dict[str, float]:
    """{'r_gene[0]': ...} for every element of a (possibly multi-dim) statistic."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 0:
        return {name: float(values)}
    return {
        f"{name}[{','.join(map(str, idx))}]": float(values[idx]) for idx in np.ndindex(values.shape)
    }


def _mcse_sd(ds: Any) -> Any:
    """MCSE of the posterior sd, as ArviZ's ``mcse(method="sd")`` computes it
    (which fails under NumPy >= 2.4 in ArviZ 0.23: float() of a 1-element array)."""
    import arviz as az

    squared = (ds - ds.mean(("chain", "draw"))) ** 2
    ess = az.ess(squared, method="mean")
    evar = squared.mean(("chain", "draw"))
    varvar = ((squared**2).mean(("chain", "draw")) - evar**2) / ess
    return (varvar / evar / 4) ** 0.5


def element_stats(draws: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per element: mean, sd, ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd."""
    import arviz as az

    ds = az.convert_to_dataset({k: np.asarray(v, dtype=float) for k, v in draws.items()})
    parts = {
        "mean": ds.mean(("chain", "draw")),
        "sd": ds.std(("chain", "draw"), ddof=1),
        "ess_bulk": az.ess(ds, method="bulk"),
        "ess_tail": az.ess(ds, method="tail"),
        "r_hat": az.rhat(ds),
        "mcse_mean": az.mcse(ds, method="mean"),
        "mcse_sd": _mcse_sd(ds),
    }
    out: dict[str, dict[str, float]] = {}
    for stat, dataset in parts.items():
        for name in draws:
            for element, value in _flat(name, dataset[name].values).items():
                out.setdefault(element, {})[stat] = value
    return out


def _nanmin(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return min(finite) if finite else math.nan


def _nanmax(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return max(finite) if finite else math.nan


def summarize(
    run: dict[str, Any], per: dict[str, dict[str, float]], settings: dict[str, Any]
) -> dict[str, Any]:
    """The per-run metrics of the issue from the element statistics and the timings."""
    bulk = [e["ess_bulk"] for e in per.values() if e["sd"] > 0]
    tail = [e["ess_tail"] for e in per.values() if e["sd"] > 0]
    rhat = [e["r_hat"] for e in per.values() if e["sd"] > 0]
    min_bulk = _nanmin(bulk)
    worst = min(
        (k for k, e in per.items() if e["sd"] > 0 and np.isfinite(e["ess_bulk"])),
        key=lambda k: per[k]["ess_bulk"],
        default=None,
    )
    sampling = run["sampling_s"]
    warmup, draws = settings["warmup"], settings["draws"]
    if np.isfinite(min_bulk) and min_bulk > 0 and sampling > 0:
        # same warmup, then as many draws as it takes for min bulk ESS = 400
        # (ESS grows linearly with the draws; warmup and draws cost the same per iteration)
        scale = (warmup + draws * ESS_TARGET / min_bulk) / (warmup + draws)
        tta = run["wall_s"] - sampling + sampling * scale
    else:
        tta = math.inf
    return {
        "n_elements": len(per),
        "min_ess_bulk": min_bulk,
        "min_ess_bulk_at": worst,
        "min_ess_tail": _nanmin(tail),
        "ess_bulk_per_s": min_bulk / sampling if sampling > 0 else math.nan,
        "max_r_hat": _nanmax(rhat),
        "time_to_answer_s": tta,
    }


def converged(summary: dict[str, Any], run: dict[str, Any]) -> bool:
    return (
        run.get("status") == "ok"
        and np.isfinite(summary.get("max_r_hat", math.nan))
        and summary["max_r_hat"] <= 1.01
        and summary.get("min_ess_bulk", 0) >= 100
    )


def agreement(per: dict[str, dict[str, float]], ref: dict[str, dict[str, float]]) -> dict[str, Any]:
    """z-scores of posterior means and sds against the reference tool, over shared elements."""
    shared = [k for k in per if k in ref and ref[k]["sd"] > 0 and per[k]["sd"] > 0]
    if not shared:
        return {"n": 0}
    z_mean, z_sd, ratio = {}, {}, {}
    for k in shared:
        a, b = per[k], ref[k]
        z_mean[k] = (a["mean"] - b["mean"]) / math.hypot(a["mcse_mean"], b["mcse_mean"])
        z_sd[k] = (a["sd"] - b["sd"]) / math.hypot(a["mcse_sd"], b["mcse_sd"])
        ratio[k] = a["sd"] / b["sd"]
    n = len(shared)
    # Bonferroni bound at 1 % over the n elements compared (two-sided)
    bound = float(stats.norm.ppf(1 - 0.01 / (2 * n)))
    worst_mean = max(z_mean, key=lambda k: abs(z_mean[k]))
    worst_sd = max(z_sd, key=lambda k: abs(z_sd[k]))
    return {
        "n": n,
        "bound": bound,
        "max_abs_z_mean": abs(z_mean[worst_mean]),
        "max_abs_z_mean_at": worst_mean,
        "max_abs_z_sd": abs(z_sd[worst_sd]),
        "max_abs_z_sd_at": worst_sd,
        "n_abs_z_mean_over_3": int(sum(abs(v) > 3 for v in z_mean.values())),
        "sd_ratio_min": min(ratio.values()),
        "sd_ratio_max": max(ratio.values()),
        "agrees": bool(abs(z_mean[worst_mean]) <= bound and abs(z_sd[worst_sd]) <= bound),
        "missing_vs_ref": sorted(set(ref) - set(per))[:20],
    }
