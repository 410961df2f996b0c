"""``plot_model``: a calibration model against its data, as calibr8 draws it.

Three panels: data with the median and likelihood bands over linear x, the
same over log x, and the residuals (readout minus predicted median). The bands
are central intervals of the noise distribution at each x (quantiles from
scipy), so they show where readouts are expected, not where the mean is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hierax.errors import ModelError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierax.calibration.model import CalibrationModel

__all__ = ["plot_model"]


def _bands(
    cal: CalibrationModel, x: np.ndarray, probabilities: Sequence[float]
) -> tuple[np.ndarray, dict[float, tuple[np.ndarray, np.ndarray]]]:
    frozen = cal.noise.scipy(cal.predict_dependent(x))
    median = np.asarray(frozen.median(), dtype=float)
    bands = {
        p: (
            np.asarray(frozen.ppf((1 - p) / 2), dtype=float),
            np.asarray(frozen.ppf((1 + p) / 2), dtype=float),
        )
        for p in probabilities
    }
    return median, bands


def _draw(
    ax: Any,
    cal: CalibrationModel,
    x_dense: np.ndarray,
    probabilities: Sequence[float],
    color: str,
) -> None:
    median, bands = _bands(cal, x_dense, probabilities)
    for alpha, p in zip(
        np.linspace(0.15, 0.35, len(probabilities)),
        sorted(probabilities, reverse=True),
        strict=True,
    ):
        lower, upper = bands[p]
        ax.fill_between(
            x_dense,
            lower,
            upper,
            color=color,
            alpha=float(alpha),
            lw=0,
            label=f"{p * 100:g} % likelihood band",
        )
    ax.plot(x_dense, median, color=color, lw=1.5, label="median")
    ax.scatter(cal.cal_independent, cal.cal_dependent, s=10, color="black", zorder=3, label="data")


def plot_model(
    cal: CalibrationModel,
    *,
    band_probabilities: Sequence[float] = (0.68, 0.90, 0.95),
    n_points: int = 300,
    color: str = "tab:green",
    title: str | None = None,
) -> Figure:
    """Plot a fitted calibration model with its data.

    Parameters
    ----------
    cal : CalibrationModel
        A fitted model holding its calibration data (``fit_mle`` keeps them).
    band_probabilities : sequence of float
        Central probabilities of the likelihood bands.
    n_points : int
        Resolution of the curves.
    color : str
    title : str, optional

    Returns
    -------
    Figure
        Axes: linear x, log x (only positive x; a note when there are none),
        residuals.
    """
    import matplotlib.pyplot as plt

    if cal.theta_fitted is None or cal.cal_independent is None or cal.cal_dependent is None:
        raise ModelError(
            "plot_model needs a fitted model with its calibration data; call fit_mle(x, y) first "
            "(or load a model saved after fitting)."
        )
    x, y = cal.cal_independent, cal.cal_dependent
    x_key, y_key = cal.independent_key, cal.dependent_key
    fig, (ax_linear, ax_log, ax_residual) = plt.subplots(ncols=3, figsize=(13, 4))

    low, high = float(np.min(x)), float(np.max(x))
    pad = 0.02 * (high - low or 1.0)
    x_linear = np.linspace(low - pad if low - pad > 0 or low < 0 else low, high + pad, n_points)
    if cal.mean_function.name == "xlog_asymmetric_logistic":
        x_linear = x_linear[x_linear > 0]
    _draw(ax_linear, cal, x_linear, band_probabilities, color)
    ax_linear.set(xlabel=x_key, ylabel=y_key, title="linear x")
    ax_linear.legend(fontsize=7, loc="best")

    positive = x[x > 0]
    if positive.size:
        x_log = np.geomspace(positive.min() / 1.05, positive.max() * 1.05, n_points)
        _draw(ax_log, cal, x_log, band_probabilities, color)
        ax_log.set_xscale("log")
        ax_log.set(xlabel=f"{x_key} (log scale)", ylabel=y_key, title="log x")
    else:
        ax_log.text(0.5, 0.5, "no positive x", ha="center", va="center", transform=ax_log.transAxes)
        ax_log.set_axis_off()

    median_at_data = np.asarray(cal.noise.scipy(cal.predict_dependent(x)).median(), dtype=float)
    order = np.argsort(x)
    median_dense, bands = _bands(cal, x_linear, band_probabilities)
    for alpha, p in zip(
        np.linspace(0.15, 0.35, len(band_probabilities)),
        sorted(band_probabilities, reverse=True),
        strict=True,
    ):
        lower, upper = bands[p]
        ax_residual.fill_between(
            x_linear,
            lower - median_dense,
            upper - median_dense,
            color=color,
            alpha=float(alpha),
            lw=0,
        )
    ax_residual.axhline(0, color=color, lw=1)
    ax_residual.scatter(x[order], (y - median_at_data)[order], s=10, color="black", zorder=3)
    ax_residual.set(xlabel=x_key, ylabel=f"residual {y_key} - median", title="residuals")
    fig.suptitle(title or repr(cal).strip("<>"), fontsize=9)
    fig.tight_layout()
    return fig
