"""The outcome of a simulation-based calibration study: the ranks of every true
parameter value, the fits, the uniformity tests and verdict, tables for reports,
and rank histograms or ECDF plots.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from hierax.errors import ModelError
from hierax.results.sbc_ranks import chi_square_uniformity, ranks_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SBCResult"]


@dataclass
class SBCResult:
    """Ranks of the true parameter values of an SBC study, and their uniformity.

    Attributes
    ----------
    ranks : DataFrame
        simulation x parameter; ``<NA>`` for a simulation whose fit failed.
    truth : DataFrame
        The true (prior-drawn) value of every tested parameter per simulation.
    fits : DataFrame
        One row per simulation: seed, ``method`` (``fit.info["method"]``, "nuts"
        for plain NUTS), ``marginalized`` (the integrated-out sites), divergences,
        ``problems`` (the convergence check's findings), ``ess_bulk_min`` over the
        tested parameters, seconds, and ``error`` (empty unless the fit failed).
    draws_kept, bins : int
        ``L`` (ranks lie in ``0 .. L``) and the number of chi-square bins.
    draws : ndarray, shape (simulation, draws_kept, parameter)
        The kept posterior draws (NaN for failed fits), for :meth:`with_draws`.
    label : str
        What was studied, for tables and plots.
    """

    ranks: pd.DataFrame
    truth: pd.DataFrame
    fits: pd.DataFrame
    draws_kept: int
    bins: int
    draws: np.ndarray = field(repr=False)
    seed: int = 0
    label: str = ""
    wall_seconds: float = 0.0

    @property
    def parameters(self) -> list[str]:
        """The tested scalar parameters, e.g. ``["sigma", "r_g[0]", ...]``."""
        return [str(c) for c in self.ranks.columns]

    @property
    def n_simulations(self) -> int:
        """Simulations run, failed fits included."""
        return len(self.fits)

    @property
    def n_failed(self) -> int:
        """Simulations whose fit raised an error (their ranks are missing)."""
        return int((self.fits["error"] != "").sum())

    @property
    def methods(self) -> dict[str, int]:
        """How many fits took each inference path (``fit.info["method"]``)."""
        ok = self.fits[self.fits["error"] == ""]
        return {str(k): int(v) for k, v in ok["method"].value_counts().items()}

    @property
    def p_values(self) -> pd.Series:
        """Chi-square p-value of rank uniformity per parameter."""
        return self.summary()["p_value"]

    def summary(self) -> pd.DataFrame:
        """Per parameter: ranks used, chi-square statistic and p-value, rank mean and sd.

        ``rank_mean`` and ``rank_sd`` are of ``rank / L``: 0.5 and 0.289 for
        uniform ranks. A lower sd means a posterior too wide, a higher one too
        narrow; a mean away from 0.5 a bias.
        """
        rows = []
        for name in self.parameters:
            column = self.ranks[name].dropna().to_numpy(dtype=float)
            statistic, p_value = chi_square_uniformity(column, self.draws_kept, self.bins)
            scaled = column / self.draws_kept
            rows.append(
                {
                    "parameter": name,
                    "n": column.size,
                    "chi2": statistic,
                    "p_value": p_value,
                    "rank_mean": float(scaled.mean()) if column.size else math.nan,
                    "rank_sd": float(scaled.std(ddof=1)) if column.size > 1 else math.nan,
                }
            )
        return pd.DataFrame(rows).set_index("parameter")

    def passed(self, alpha: float = 0.01, max_failed: int = 0) -> bool:
        """Whether every parameter's ranks are uniform at level ``alpha``, and fits ran.

        Bonferroni over the parameters: each p-value must be at least
        ``alpha / n_parameters``. Under correct inference the chance that the
        study fails is then at most ``alpha`` whatever the number of parameters
        and however their ranks depend on each other (they do: all come from
        the same fits), where testing each at ``alpha`` would fail a correct
        sampler with 40 parameters a third of the time. It is also the
        decision of Holm's procedure on "is any rank distribution non-uniform".
        More than ``max_failed`` failed fits fail the study as well: fits that
        fail for some parameter values and not others bias the ranks unseen.
        """
        if not 0.0 < alpha < 1.0:
            raise ModelError(f"alpha must lie in (0, 1), got {alpha}.")
        p_values = self.p_values.to_numpy(dtype=float)
        if p_values.size == 0 or np.isnan(p_values).any():
            return False
        return bool(p_values.min() >= alpha / p_values.size and self.n_failed <= max_failed)

    def with_draws(
        self, transform: Callable[[np.ndarray], np.ndarray], label: str | None = None
    ) -> SBCResult:
        """The study redone on transformed posterior draws (for negative controls).

        ``transform`` maps the kept draws ``(simulation, draws_kept, parameter)``
        to an array of the same shape; the ranks are recomputed against the
        same true values, with the same tie-breaking streams. Shrinking every
        posterior towards its mean, ``lambda d: m + 0.7 * (d - m)`` with ``m =
        d.mean(axis=1, keepdims=True)``, mimics a conditional draw that is too
        narrow, and must fail :meth:`passed`.
        """
        draws = np.asarray(transform(self.draws.copy()), dtype=float)
        if draws.shape != self.draws.shape:
            raise ModelError(
                f"transform must keep the shape {self.draws.shape} of the draws, gave {draws.shape}."
            )
        ranks = ranks_table(self.truth.to_numpy(dtype=float), draws, self.fits, self.parameters)
        return SBCResult(
            ranks=ranks,
            truth=self.truth,
            fits=self.fits,
            draws_kept=self.draws_kept,
            bins=self.bins,
            draws=draws,
            seed=self.seed,
            label=label if label is not None else f"{self.label} (transformed)",
            wall_seconds=self.wall_seconds,
        )

    @classmethod
    def combine(cls, results: Sequence[SBCResult], label: str | None = None) -> SBCResult:
        """One study from several run with different seeds (e.g. in parallel processes).

        The simulations are independent draws in each, so their union is a
        study of them all; simulations are renumbered in order.
        """
        if not results:
            raise ModelError("combine needs at least one SBCResult.")
        first = results[0]
        for other in results[1:]:
            if (other.parameters, other.draws_kept, other.bins) != (
                first.parameters,
                first.draws_kept,
                first.bins,
            ):
                raise ModelError(
                    f"cannot combine {other.label!r} with {first.label!r}: parameters, "
                    "draws_kept or bins differ."
                )
        fits = pd.concat([r.fits for r in results], ignore_index=True)
        fits.index.name = "simulation"
        index = fits.index

        def stacked(frames: list[pd.DataFrame]) -> pd.DataFrame:
            return pd.concat(frames, ignore_index=True).set_axis(index, axis=0)

        return cls(
            ranks=stacked([r.ranks for r in results]),
            truth=stacked([r.truth for r in results]),
            fits=fits,
            draws_kept=first.draws_kept,
            bins=first.bins,
            draws=np.concatenate([r.draws for r in results]),
            seed=first.seed,
            label=first.label if label is None else label,
            wall_seconds=float(sum(r.wall_seconds for r in results)),
        )

    def table_row(self, alpha: float = 0.01) -> dict[str, Any]:
        """One JSON-able row for a table of studies."""
        p_values = self.p_values
        weakest = str(p_values.idxmin()) if p_values.notna().any() else ""
        return {
            "label": self.label,
            "n_simulations": self.n_simulations,
            "n_parameters": len(self.parameters),
            "min_p_value": float(p_values.min()),
            "weakest_parameter": weakest,
            "bonferroni_threshold": alpha / max(len(self.parameters), 1),
            "passed": self.passed(alpha),
            "failed_fits": self.n_failed,
            "fits_with_problems": int((self.fits["problems"] != "").sum()),
            "fits_with_ess_below_draws_kept": int(
                (self.fits["ess_bulk_min"] < self.draws_kept).sum()
            ),
            "methods": self.methods,
            "wall_seconds": round(self.wall_seconds, 1),
        }

    def to_dict(self, alpha: float = 0.01) -> dict[str, Any]:
        """Everything needed to redo the tests: ranks, fits, per-parameter statistics."""
        summary = self.summary().reset_index()
        return {
            **self.table_row(alpha),
            "seed": self.seed,
            "draws_kept": self.draws_kept,
            "bins": self.bins,
            "summary": summary.to_dict("records"),
            "ranks": {
                name: [None if pd.isna(v) else int(v) for v in self.ranks[name]]
                for name in self.parameters
            },
            "fits": self.fits.to_dict("records"),
        }

    def plot(
        self,
        var_names: Sequence[str] | None = None,
        *,
        kind: str = "hist",
        columns: int = 4,
        band: float = 0.99,
    ) -> Figure:
        """Rank histograms (``kind="hist"``) or ECDF differences (``"ecdf"``) per parameter.

        The grey band holds ``band`` of each bin's count (histogram; binomial)
        or of the ECDF's value at each rank (pointwise; beta) under uniform
        ranks. Returns the matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        if kind not in ("hist", "ecdf"):
            raise ModelError(f"kind must be 'hist' or 'ecdf', got {kind!r}.")
        names = list(var_names) if var_names is not None else self.parameters
        unknown = [n for n in names if n not in self.parameters]
        if unknown:
            raise ModelError(f"no ranks for {unknown}; parameters: {self.parameters}.")
        rows = max(1, math.ceil(len(names) / columns))
        width = min(columns, max(len(names), 1))
        figure, axes = plt.subplots(
            rows, width, figsize=(2.6 * width, 2.0 * rows), squeeze=False, sharex=True
        )
        per_bin = (self.draws_kept + 1) // self.bins
        p_values = self.p_values
        for axis, name in zip(axes.flat, names, strict=False):
            ranks = self.ranks[name].dropna().to_numpy(dtype=np.int64)
            n = ranks.size
            if kind == "hist":
                counts = np.bincount(ranks // per_bin, minlength=self.bins)
                low, high = stats.binom.interval(band, n, 1.0 / self.bins)
                axis.axhspan(low, high, color="0.85", zorder=0)
                axis.bar(np.arange(self.bins), counts, width=1.0, color="C0", edgecolor="white")
                axis.axhline(n / self.bins, color="0.4", lw=0.8)
            else:
                grid = np.arange(self.draws_kept + 1)
                expected = (grid + 1) / (self.draws_kept + 1)
                ecdf = np.searchsorted(np.sort(ranks), grid, side="right") / max(n, 1)
                low = stats.beta.ppf((1 - band) / 2, expected * n, (1 - expected) * n + 1e-12)
                high = stats.beta.ppf((1 + band) / 2, expected * n + 1e-12, (1 - expected) * n)
                axis.fill_between(grid, low - expected, high - expected, color="0.85", step="post")
                axis.step(grid, ecdf - expected, where="post", color="C0")
                axis.axhline(0.0, color="0.4", lw=0.8)
            axis.set_title(f"{name}\np = {p_values[name]:.2g}", fontsize=8)
            axis.tick_params(labelsize=7)
        for axis in list(axes.flat)[len(names) :]:
            axis.set_visible(False)
        figure.suptitle(self.label or "SBC ranks", fontsize=9)
        figure.tight_layout()
        return figure

    def __repr__(self) -> str:
        verdict = "passed" if self.passed() else "FAILED"
        return (
            f"<hierax.SBCResult {self.label!r}: {self.n_simulations} simulations "
            f"({self.n_failed} failed fits), {len(self.parameters)} parameters, "
            f"L = {self.draws_kept}; min p = {self.p_values.min():.3g}; {verdict} at 1 %>"
        )
