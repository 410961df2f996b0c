"""Mean functions of calibration models: pure ``(x, theta) -> mu`` JAX functions and
their analytic inverses ``(mu, theta) -> x``.

``theta`` is a sequence of entries, each a float or an array; entries broadcast
against ``x`` and against each other, so a parameter may vary by group inside a
hierarchical model (``theta = [intercept_batch[batch], slope]``).

The parameterisations follow calibr8 (``calibr8/core.py``): the logistic curves
are written in terms of their inflection point and the slope there, which are
easier to guess and to put priors on than rate constants.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hierax.errors import ModelError, close_matches

__all__ = [
    "MeanFunction",
    "asymmetric_logistic",
    "exponential",
    "inverse_asymmetric_logistic",
    "inverse_exponential",
    "inverse_logistic",
    "inverse_polynomial",
    "inverse_xlog_asymmetric_logistic",
    "logistic",
    "mean_function",
    "polynomial",
    "xlog_asymmetric_logistic",
    "MEAN_FUNCTIONS",
]

Theta = Sequence[Any]
MeanFn = Callable[[Any, Theta], jax.Array]
GuessFn = Callable[[np.ndarray, np.ndarray], list[float]]


# --------------------------------------------------------------------- functions
def polynomial(x: Any, theta: Theta) -> jax.Array:
    """``theta[0] + theta[1] x + theta[2] x**2 + ...`` (Horner's scheme)."""
    x = jnp.asarray(x)
    result = jnp.zeros_like(x) + jnp.asarray(theta[-1])
    for coefficient in reversed(theta[:-1]):
        result = result * x + coefficient
    return result


def inverse_polynomial(y: Any, theta: Theta) -> jax.Array:
    """Inverse of a degree-1 polynomial: ``(y - theta[0]) / theta[1]``.

    Higher degrees have no unique inverse; use :func:`infer_independent`.
    """
    if len(theta) != 2:
        raise ModelError(
            f"the polynomial mean function of degree {len(theta) - 1} has no unique inverse; "
            "only degree 1 is invertible. Use infer_independent(y, lower, upper) to get the "
            "posterior of x on an interval instead."
        )
    return (jnp.asarray(y) - theta[0]) / theta[1]


def logistic(x: Any, theta: Theta) -> jax.Array:
    """4-parameter logistic ``[I_x, I_y, Lmax, s]``, symmetric about its inflection point.

    ``I_x, I_y``: the inflection point; ``Lmax``: the upper asymptote (the lower
    one is ``2 I_y - Lmax``); ``s``: the slope at the inflection point
    (negative for a decreasing curve).
    """
    I_x, I_y, Lmax, s = (jnp.asarray(t) for t in theta[:4])
    span = 2 * (Lmax - I_y)  # upper minus lower asymptote
    return 2 * I_y - Lmax + span * jax.nn.sigmoid(4 * s / span * (jnp.asarray(x) - I_x))


def inverse_logistic(y: Any, theta: Theta) -> jax.Array:
    """Inverse of :func:`logistic`; NaN outside the open interval between the asymptotes."""
    I_x, I_y, Lmax, s = (jnp.asarray(t) for t in theta[:4])
    span = 2 * (Lmax - I_y)
    fraction = (jnp.asarray(y) - (2 * I_y - Lmax)) / span
    return I_x + span / (4 * s) * (jnp.log(fraction) - jnp.log1p(-fraction))


def _asymmetric_rate(L_L: Any, L_U: Any, S: Any, c: Any) -> jax.Array:
    # slope of L_L + (L_U - L_L) (1 + v e^{-k (x - I_x)})^{-1/v} at x = I_x is
    # (L_U - L_L) k (1 + v)^{-(1 + v) / v}; solve for k.
    v = jnp.exp(c)
    return S / (L_U - L_L) * jnp.exp((1 + v) / v * jnp.log1p(v))


def asymmetric_logistic(x: Any, theta: Theta) -> jax.Array:
    """5-parameter asymmetric logistic ``[L_L, L_U, I_x, S, c]`` (Richards curve).

    ``mu = L_L + (L_U - L_L) (1 + v exp(-k (x - I_x)))^(-1/v)`` with ``v = exp(c)``:
    ``L_L, L_U`` the lower and upper asymptotes, ``I_x`` the x of the inflection
    point, ``S`` the slope there and ``c`` the log asymmetry (``c = 0`` is the
    symmetric logistic). ``k`` follows from ``S``.
    """
    L_L, L_U, I_x, S, c = (jnp.asarray(t) for t in theta[:5])
    k = _asymmetric_rate(L_L, L_U, S, c)
    # log1p(v e^z) = softplus(c + z): stable for any z
    log_base = jax.nn.softplus(c - k * (jnp.asarray(x) - I_x))
    return L_L + (L_U - L_L) * jnp.exp(-jnp.exp(-c) * log_base)


def inverse_asymmetric_logistic(y: Any, theta: Theta) -> jax.Array:
    """Inverse of :func:`asymmetric_logistic`; NaN outside the asymptotes."""
    L_L, L_U, I_x, S, c = (jnp.asarray(t) for t in theta[:5])
    k = _asymmetric_rate(L_L, L_U, S, c)
    fraction = (jnp.asarray(y) - L_L) / (L_U - L_L)
    a = -jnp.exp(c) * jnp.log(fraction)  # = log1p(v e^{-k (x - I_x)}) > 0
    log_expm1_a = a + jnp.log(-jnp.expm1(-a))  # log(e^a - 1), stable for all a > 0
    return I_x - (log_expm1_a - c) / k


def xlog_asymmetric_logistic(x: Any, theta: Theta) -> jax.Array:
    """:func:`asymmetric_logistic` of ``log10(x)``: ``[L_L, L_U, log_I_x, S, c]``.

    ``log_I_x`` is log10 of the inflection point and ``S`` the slope per decade
    there. For readouts over several orders of magnitude of concentration.
    """
    return asymmetric_logistic(jnp.log10(jnp.asarray(x)), theta)


def inverse_xlog_asymmetric_logistic(y: Any, theta: Theta) -> jax.Array:
    """Inverse of :func:`xlog_asymmetric_logistic`."""
    return 10.0 ** inverse_asymmetric_logistic(y, theta)


def exponential(x: Any, theta: Theta) -> jax.Array:
    """Exponential saturation ``[L_L, L_U, k]``: ``L_L + (L_U - L_L) (1 - exp(-k x))``.

    ``L_L`` is the value at ``x = 0``, ``L_U`` the asymptote and ``k`` the rate.
    """
    L_L, L_U, k = (jnp.asarray(t) for t in theta[:3])
    return L_L - (L_U - L_L) * jnp.expm1(-k * jnp.asarray(x))


def inverse_exponential(y: Any, theta: Theta) -> jax.Array:
    """Inverse of :func:`exponential`; NaN beyond the asymptote."""
    L_L, L_U, k = (jnp.asarray(t) for t in theta[:3])
    return -jnp.log1p(-(jnp.asarray(y) - L_L) / (L_U - L_L)) / k


# ------------------------------------------------------------------ the objects
@dataclass(frozen=True)
class MeanFunction:
    """A mean function with its parameter names, inverse and an optional guess.

    Parameters
    ----------
    name : str
        Name stored in saved files (``"logistic"``).
    fn : callable
        ``fn(x, theta) -> mu``, a pure JAX function; ``theta`` a sequence of
        broadcastable entries.
    theta_names : tuple of str
        Names of the entries of ``theta``.
    inverse : callable, optional
        ``inverse(mu, theta) -> x``; needed by ``predict_independent``.
    guess : callable, optional
        ``guess(x, y) -> list of float``: a starting point for fitting from data.
    degree : int, optional
        Degree of a polynomial (stored in saved files).
    offset_indices : tuple of int
        Entries of ``theta`` that, all raised by the same amount, raise the
        whole curve by it (an intercept, both asymptotes). Used to lift a
        starting point above zero for noise models that need a positive mean.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> hill = MeanFunction(
    ...     "hill", lambda x, t: t[0] * x / (t[1] + x), ("vmax", "K"),
    ...     inverse=lambda y, t: t[1] * y / (t[0] - y),
    ... )
    """

    name: str
    fn: MeanFn
    theta_names: tuple[str, ...]
    inverse: MeanFn | None = None
    guess: GuessFn | None = None
    degree: int | None = None
    offset_indices: tuple[int, ...] = ()

    def __call__(self, x: Any, theta: Theta) -> jax.Array:
        return self.fn(x, theta)

    def invert(self, y: Any, theta: Theta) -> jax.Array:
        """``x`` such that ``fn(x, theta) == y``."""
        if self.inverse is None:
            raise ModelError(
                f"mean function {self.name!r} has no inverse; give MeanFunction(..., inverse=...) "
                "or use infer_independent(y, lower, upper), which needs none."
            )
        return self.inverse(y, theta)


# ----------------------------------------------------------------------- guesses
def _direction(x: np.ndarray, y: np.ndarray) -> float:
    """+1 for data that rise with x, -1 for falling data."""
    return -1.0 if np.sum((x - x.mean()) * (y - y.mean())) < 0 else 1.0


def _crossing(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """x where the data (sorted by x) come closest to ``level``."""
    order = np.argsort(x)
    window = max(1, len(x) // 10)
    smooth = np.convolve(y[order], np.ones(window) / window, mode="same")
    return float(x[order][np.argmin(np.abs(smooth - level))])


def _guess_polynomial(degree: int) -> GuessFn:
    def guess(x: np.ndarray, y: np.ndarray) -> list[float]:
        return [float(v) for v in np.polynomial.polynomial.polyfit(x, y, degree)]

    return guess


def _guess_logistic(x: np.ndarray, y: np.ndarray) -> list[float]:
    low, high = float(np.min(y)), float(np.max(y))
    pad = 0.05 * (high - low or 1.0)
    I_y = 0.5 * (low + high)
    span = max(float(np.ptp(x)), 1e-12)
    return [_crossing(x, y, I_y), I_y, high + pad, _direction(x, y) * 2 * (high - low) / span]


def _guess_asymmetric(x: np.ndarray, y: np.ndarray) -> list[float]:
    I_x, I_y, upper, slope = _guess_logistic(x, y)
    return [2 * I_y - upper, upper, I_x, slope, 0.0]


def _guess_xlog(x: np.ndarray, y: np.ndarray) -> list[float]:
    positive = x > 0
    return _guess_asymmetric(np.log10(x[positive]), y[positive])


def _guess_exponential(x: np.ndarray, y: np.ndarray) -> list[float]:
    order = np.argsort(x)
    n = max(1, len(x) // 10)
    start, end = float(np.mean(y[order][:n])), float(np.mean(y[order][-n:]))
    return [start, start + 1.2 * (end - start), 3.0 / max(float(np.max(np.abs(x))), 1e-12)]


# ---------------------------------------------------------------------- registry
def _polynomial_names(degree: int) -> tuple[str, ...]:
    if degree == 1:
        return ("intercept", "slope")
    return tuple(f"c_{i}" for i in range(degree + 1))


MEAN_FUNCTIONS = (
    "linear",
    "polynomial",
    "logistic",
    "asymmetric_logistic",
    "xlog_asymmetric_logistic",
    "exponential",
)


def mean_function(name: str, degree: int = 1) -> MeanFunction:
    """A built-in mean function by name.

    Parameters
    ----------
    name : {"linear", "polynomial", "logistic", "asymmetric_logistic", \
"xlog_asymmetric_logistic", "exponential"}
    degree : int
        Degree of ``"polynomial"`` (``"linear"`` is degree 1).
    """
    if name == "linear":
        name, degree = "polynomial", 1
    if name == "polynomial":
        if not isinstance(degree, int | np.integer) or degree < 0:
            raise ModelError(f"polynomial degree must be an integer >= 0, got {degree!r}.")
        return MeanFunction(
            "polynomial",
            polynomial,
            _polynomial_names(int(degree)),
            inverse_polynomial,
            _guess_polynomial(int(degree)),
            degree=int(degree),
            offset_indices=(0,),
        )
    table: dict[str, tuple[MeanFn, tuple[str, ...], MeanFn, GuessFn]] = {
        "logistic": (logistic, ("I_x", "I_y", "Lmax", "s"), inverse_logistic, _guess_logistic),
        "asymmetric_logistic": (
            asymmetric_logistic,
            ("L_L", "L_U", "I_x", "S", "c"),
            inverse_asymmetric_logistic,
            _guess_asymmetric,
        ),
        "xlog_asymmetric_logistic": (
            xlog_asymmetric_logistic,
            ("L_L", "L_U", "log_I_x", "S", "c"),
            inverse_xlog_asymmetric_logistic,
            _guess_xlog,
        ),
        "exponential": (exponential, ("L_L", "L_U", "k"), inverse_exponential, _guess_exponential),
    }
    if name not in table:
        raise ModelError(
            f"unknown mean function {name!r}; choose from {list(MEAN_FUNCTIONS)}, or give a "
            f"MeanFunction.{close_matches(name, MEAN_FUNCTIONS)}"
        )
    fn, names, inverse, guess = table[name]
    offsets = (1, 2) if name == "logistic" else (0, 1)  # I_y and Lmax; or both asymptotes
    return MeanFunction(name, fn, names, inverse, guess, offset_indices=offsets)
