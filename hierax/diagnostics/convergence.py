"""Baseline convergence checks run after every fit.

R-hat, bulk/tail ESS, divergences, tree-depth saturation and E-BFMI, each
turned into a finding that names the variables and says what to try. All
statistics are ArviZ's (R-hat and ESS computed by :mod:`hierax.inference.chain_stats`,
which reproduces ArviZ's definitions for all entries at once); this module
only decides and explains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from hierax.inference.chain_stats import diagnostics_table

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
BFMI_MIN = 0.3


@dataclass(frozen=True)
class Finding:
    """One problem seen in a fit: what, where and what to do."""

    check: str
    message: str
    variables: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return self.message


def _names(labels: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _worst_by_variable(table: pd.Series, bad: pd.Series) -> list[str]:
    """Row labels like ``r[3]`` of the failing entries, worst first."""
    return list(table[bad].sort_values(ascending=False).index)


def convergence_table(idata: az.InferenceData) -> pd.DataFrame:
    """Per-entry R-hat, bulk and tail ESS of every posterior variable.

    The columns of ``az.summary(idata, kind="diagnostics")`` (computed by
    :func:`hierax.inference.chain_stats.diagnostics_table`, the same numbers for all
    entries at once), without constant entries (fixed values, a correlation
    matrix's unit diagonal), which need no checks, nor entries containing NaN.
    """
    table = diagnostics_table(idata)
    return table[table["sd"].fillna(0.0) > 0].drop(columns="sd")


def check_convergence(
    idata: az.InferenceData,
    max_tree_depth: int | None = None,
    table: pd.DataFrame | None = None,
) -> list[Finding]:
    """Run the baseline checks; a healthy fit returns an empty list.

    ``table`` is :func:`convergence_table` of ``idata`` when already computed.
    """
    findings: list[Finding] = []
    posterior = idata["posterior"]
    chains = posterior.sizes["chain"]
    draws = posterior.sizes["draw"]
    table = convergence_table(idata) if table is None else table

    if chains > 1:
        rhat = table["r_hat"]
        bad = rhat > RHAT_MAX
        if bad.any():
            labels = _worst_by_variable(rhat, bad)
            groups, separating = chains_in_different_modes(idata, labels)
            if len(groups) > 1:
                described = " vs ".join(f"chains {g}" for g in groups)
                findings.append(
                    Finding(
                        "modes",
                        f"The chains settled in different modes ({described}) for "
                        f"{_names(separating)}: the posterior is multimodal, and each chain saw "
                        "only part of it. Start every chain from the data (e.g. a periodogram or "
                        "least-squares fit), use multistart=... to find the best mode, or "
                        "constrain the parameters so only one mode remains.",
                        tuple(separating),
                    )
                )
            findings.append(
                Finding(
                    "r_hat",
                    f"R-hat above {RHAT_MAX} for {_names(labels)} (max {rhat.max():.3f}): the "
                    "chains disagree, so these estimates cannot be trusted yet. Run longer "
                    "(more warmup and draws); if the chains sit in different modes, give "
                    "initial values from the data or reparameterize.",
                    tuple(labels),
                )
            )
    ess_min = ESS_PER_CHAIN_MIN * chains
    for column, kind in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        ess = table[column]
        bad = ess < ess_min
        if bad.any():
            labels = list(ess[bad].sort_values().index)
            what = "means and medians" if kind == "bulk" else "intervals and tail quantiles"
            findings.append(
                Finding(
                    f"ess_{kind}",
                    f"{kind.capitalize()} ESS below {ess_min} ({ESS_PER_CHAIN_MIN} per chain) for "
                    f"{_names(labels)} (min {ess.min():.0f}): {what} are imprecise. Draw more "
                    "samples; if ESS stays low, the posterior is badly shaped for these "
                    "variables (strong correlation, funnel, weak identification).",
                    tuple(labels),
                )
            )

    stats = idata["sample_stats"] if "sample_stats" in idata.groups() else {}
    if "diverging" in stats:
        diverging = np.asarray(stats["diverging"])
        n_div = int(diverging.sum())
        if n_div:
            findings.append(
                Finding(
                    "divergences",
                    f"{n_div} divergent transition(s) of {chains * draws} draws "
                    f"({100 * n_div / (chains * draws):.1f} %): the sampler missed part of the "
                    "posterior, typically a funnel between a group sd and its group effects. "
                    "Use a non-centered parameterization of the group effects "
                    "(effect = mean + sd * z, z ~ Normal(0, 1)), or raise target_accept "
                    "(e.g. 0.95) if there are only a few.",
                )
            )
    if "tree_depth" in stats and max_tree_depth:
        saturated = np.asarray(stats["tree_depth"]) >= max_tree_depth
        if saturated.any():
            findings.append(
                Finding(
                    "tree_depth",
                    f"{int(saturated.sum())} of {chains * draws} draws "
                    f"({100 * saturated.mean():.1f} %) hit the maximum tree depth "
                    f"{max_tree_depth}: the sampler needs very many steps, usually because of a "
                    "direction the data do not inform (non-identifiable parameters, e.g. two "
                    "intercepts that only enter as a sum) or strong correlations. Reparameterize; "
                    "raising max_tree_depth only makes it slower.",
                )
            )
    if "energy" in stats:
        bfmi = np.atleast_1d(az.bfmi(idata))
        low = [int(c) for c in np.flatnonzero(bfmi < BFMI_MIN)]
        if low:
            findings.append(
                Finding(
                    "e_bfmi",
                    f"E-BFMI below {BFMI_MIN} in chain(s) {low} "
                    f"(values {', '.join(f'{b:.2f}' for b in bfmi[low])}): the momentum "
                    "resampling explores the energy levels poorly, often due to heavy tails "
                    "or a funnel. Reparameterize (non-centering, or sample log-scales).",
                )
            )
    return findings


def chains_in_different_modes(
    idata: az.InferenceData, labels: Sequence[str], separation: float = 5.0
) -> tuple[list[list[int]], list[str]]:
    """Group chains whose means of ``labels`` differ by more than ``separation`` within-chain sds.

    Returns the chain groups (one group when all chains agree) and the entries
    that separate them, most separated first.
    """
    posterior = idata["posterior"]
    separated: list[tuple[float, str, list[list[int]]]] = []
    for label in labels:
        name, _, rest = label.partition("[")
        if name not in posterior:
            continue
        values = np.asarray(posterior[name])  # (chain, draw, ...)
        values = values.reshape(values.shape[0], values.shape[1], -1)
        flat_labels = _flat_labels(posterior[name], name)
        if label not in flat_labels:
            continue
        column = values[:, :, flat_labels.index(label)]  # (chain, draw)
        means = column.mean(axis=1)
        spread = float(np.median(column.std(axis=1))) or 1e-300
        order = np.argsort(means)
        groups: list[list[int]] = [[int(order[0])]]
        for previous, current in zip(order[:-1], order[1:], strict=True):
            if (means[current] - means[previous]) / spread > separation:
                groups.append([])
            groups[-1].append(int(current))
        if len(groups) > 1:
            gap = float((means.max() - means.min()) / spread)
            separated.append((gap, label, [sorted(g) for g in groups]))
    if not separated:
        return [list(range(posterior.sizes["chain"]))], []
    separated.sort(key=lambda item: -item[0])
    return separated[0][2], [label for _, label, _ in separated]


def _flat_labels(variable: Any, name: str) -> list[str]:
    dims = variable.dims[2:]
    if not dims:
        return [name]
    import itertools

    coords = [list(variable.coords[d].values) for d in dims]
    return [f"{name}[{', '.join(str(c) for c in combo)}]" for combo in itertools.product(*coords)]


def format_findings(findings: Sequence[Finding]) -> str:
    """One readable block, one paragraph per finding."""
    return "\n".join(f"- {finding.message}" for finding in findings)
