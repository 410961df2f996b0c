"""A vectorised weighted least-squares periodogram for initialising periodic models.

For each trial frequency f the model ``y = a cos(2π f t) + b sin(2π f t) + c``
is fitted by weighted least squares (the "generalised Lomb-Scargle" periodogram
of Zechmeister & Kürster 2009, which equals astropy's ``LombScargle`` with
``fit_mean=True``). Written with numpy so that hierax does not need astropy;
all frequencies are solved at once as a batch of 3x3 systems.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SinusoidFit", "frequency_grid", "periodogram", "best_sinusoid"]


@dataclass(frozen=True)
class SinusoidFit:
    """Best-fitting sinusoid: period and the linear coefficients at that period."""

    period: float
    a: float
    b: float
    offset: float
    power: float


def frequency_grid(
    t: np.ndarray, min_period: float, max_period: float, oversampling: int = 10
) -> np.ndarray:
    """Frequencies from ``1/max_period`` to ``1/min_period``, spaced ``1/(oversampling·baseline)``."""
    baseline = float(np.ptp(t))
    if baseline <= 0:
        raise ValueError("the time series needs at least two distinct times.")
    step = 1.0 / (oversampling * baseline)
    return np.arange(1.0 / max_period, 1.0 / min_period + step, step)


def _normal_equations(
    t: np.ndarray, y: np.ndarray, weights: np.ndarray, frequency: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    phase = 2.0 * np.pi * frequency[:, None] * t[None, :]  # (freq, obs)
    basis = np.stack([np.cos(phase), np.sin(phase), np.ones_like(phase)], axis=-1)  # (f, n, 3)
    weighted = basis * weights[None, :, None]
    gram = np.einsum("fni,fnj->fij", weighted, basis)  # (freq, 3, 3)
    rhs = np.einsum("fni,n->fi", weighted, y)  # (freq, 3)
    coefficients = np.linalg.solve(gram, rhs[..., None])[..., 0]  # (freq, 3)
    return coefficients, rhs, gram


def periodogram(
    t: np.ndarray, y: np.ndarray, dy: np.ndarray, frequency: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Power (fraction of chi² explained beyond a constant) and coefficients per frequency.

    Returns
    -------
    power : ndarray, shape (n_freq,)
    coefficients : ndarray, shape (n_freq, 3)
        ``a, b, offset`` of the weighted least-squares fit at each frequency.
    """
    t, y, dy = (np.asarray(v, dtype=float) for v in (t, y, dy))
    weights = 1.0 / dy**2
    mean = np.sum(weights * y) / np.sum(weights)
    chi2_constant = np.sum(weights * (y - mean) ** 2)
    coefficients, rhs, _ = _normal_equations(t, y, weights, np.asarray(frequency, dtype=float))
    chi2 = np.sum(weights * y**2) - np.sum(coefficients * rhs, axis=-1)
    return 1.0 - chi2 / chi2_constant, coefficients


def best_sinusoid(
    t: np.ndarray,
    y: np.ndarray,
    dy: np.ndarray,
    *,
    min_period: float,
    max_period: float,
    oversampling: int = 10,
    refine: int = 3,
) -> SinusoidFit:
    """Period of the highest periodogram peak, refined on finer grids, and its coefficients."""
    t = np.asarray(t, dtype=float)
    frequency = frequency_grid(t, min_period, max_period, oversampling)
    power, coefficients = periodogram(t, y, dy, frequency)
    best = int(np.argmax(power))
    step = frequency[1] - frequency[0] if frequency.size > 1 else frequency[0] * 1e-3
    for _ in range(refine):
        fine = np.linspace(frequency[best] - step, frequency[best] + step, 101)
        fine = fine[(fine >= 1.0 / max_period) & (fine <= 1.0 / min_period)]
        if fine.size == 0:
            break
        frequency = fine
        power, coefficients = periodogram(t, y, dy, frequency)
        best = int(np.argmax(power))
        step = frequency[1] - frequency[0] if frequency.size > 1 else step / 50
    a, b, offset = coefficients[best]
    return SinusoidFit(1.0 / frequency[best], float(a), float(b), float(offset), float(power[best]))
