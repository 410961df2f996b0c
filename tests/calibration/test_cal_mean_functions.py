"""Mean functions: forward then inverse round trips, the asymmetric logistic's
inflection point and slope, and the errors for non-invertible or unknown ones."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierax.calibration import (
    MeanFunction,
    asymmetric_logistic,
    inverse_asymmetric_logistic,
    mean_function,
    polynomial,
)
from hierax.errors import ModelError


def _theta_draws(name: str, rng: np.random.Generator, n: int) -> list[list[float]]:
    """Random but valid parameters of each built-in mean function."""
    draws = []
    for _ in range(n):
        if name == "linear":
            theta = [rng.normal(0, 2), rng.choice([-1, 1]) * rng.uniform(0.05, 5)]
        elif name == "logistic":
            I_y = rng.normal(0, 2)
            theta = [
                rng.normal(0, 3),
                I_y,
                I_y + rng.uniform(0.1, 5),
                rng.choice([-1, 1]) * rng.uniform(0.05, 3),
            ]
        elif name in ("asymmetric_logistic", "xlog_asymmetric_logistic"):
            L_L = rng.normal(0, 2)
            theta = [
                L_L,
                L_L + rng.uniform(0.1, 5),
                rng.normal(0, 1) if name.startswith("xlog") else rng.normal(0, 3),
                rng.choice([-1, 1]) * rng.uniform(0.05, 3),
                rng.uniform(-2, 2),
            ]
        elif name == "exponential":
            L_L = rng.normal(0, 2)
            theta = [L_L, L_L + rng.choice([-1, 1]) * rng.uniform(0.1, 5), rng.uniform(0.05, 2)]
        else:
            raise AssertionError(name)
        draws.append([float(t) for t in theta])
    return draws


def _x_values(name: str, theta: list[float]) -> np.ndarray:
    """x where the curve is far enough from its asymptotes to be invertible in float64."""
    if name == "linear":
        return np.linspace(-10, 10, 41)
    if name == "logistic":
        I_x, I_y, Lmax, s = theta
        rate = abs(4 * s / (2 * (Lmax - I_y)))
        return I_x + np.linspace(-8, 8, 41) / rate
    if name in ("asymmetric_logistic", "xlog_asymmetric_logistic"):
        L_L, L_U, I_x, S, c = theta
        v = np.exp(c)
        rate = abs(S / (L_U - L_L) * (1 + v) ** ((1 + v) / v))
        # within a few e-folds of the inflection point on either side: the curve
        # approaches one asymptote at rate k and the other at rate k / v
        offsets = np.linspace(-6, 6, 41) / (rate * max(1.0, 1.0 / v))
        return 10 ** (I_x + offsets) if name.startswith("xlog") else I_x + offsets
    if name == "exponential":
        return np.linspace(0, 8 / theta[2], 41)
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    ["linear", "logistic", "asymmetric_logistic", "xlog_asymmetric_logistic", "exponential"],
)
def test_forward_then_inverse_round_trips(name: str) -> None:
    rng = np.random.default_rng(20240501)
    fn = mean_function(name)
    for theta in _theta_draws(name, rng, 30):
        x = _x_values(name, theta)
        y = fn(x, theta)
        back = np.asarray(fn.invert(y, theta))
        assert np.all(np.isfinite(back)), (name, theta)
        np.testing.assert_allclose(
            back, x, rtol=1e-6, atol=1e-7 * np.ptp(x), err_msg=f"{name} {theta}"
        )


def test_mean_functions_broadcast_theta_entries() -> None:
    # an intercept varying by group (column) against x varying along rows
    intercepts = jnp.array([[0.1], [0.5], [0.9]])
    values = polynomial(jnp.array([0.0, 1.0, 2.0, 3.0]), [intercepts, 2.0])
    assert values.shape == (3, 4)
    np.testing.assert_allclose(values[:, 0], [0.1, 0.5, 0.9])
    np.testing.assert_allclose(values[1], 0.5 + 2.0 * np.arange(4))


@pytest.mark.parametrize("c", [-1.5, -0.3, 0.0, 0.7, 2.0])
@pytest.mark.parametrize("S", [-2.0, 0.3, 4.0])
def test_asymmetric_logistic_slope_at_inflection_is_S(S: float, c: float) -> None:
    theta = [0.2, 3.5, 1.7, S, c]
    slope = jax.grad(lambda x: asymmetric_logistic(x, theta))(1.7)
    curvature = jax.grad(jax.grad(lambda x: asymmetric_logistic(x, theta)))(1.7)
    assert float(slope) == pytest.approx(S, rel=1e-9)
    # I_x is the inflection point: the second derivative vanishes there
    scale = abs(S) ** 2 / (3.5 - 0.2)
    assert abs(float(curvature)) < 1e-9 * max(scale, 1.0)


def test_xlog_asymmetric_logistic_slope_per_decade() -> None:
    theta = [0.0, 2.0, 0.5, 0.8, 0.4]
    fn = mean_function("xlog_asymmetric_logistic")
    slope = jax.grad(lambda log_x: fn(10.0**log_x, theta))(0.5)
    assert float(slope) == pytest.approx(0.8, rel=1e-9)


def test_symmetric_case_matches_the_logistic() -> None:
    x = np.linspace(-3, 5, 30)
    # c = 0: asymmetric logistic with asymptotes 0.5, 2.5 is the 4-parameter logistic
    a = asymmetric_logistic(x, [0.5, 2.5, 1.0, 0.9, 0.0])
    b = mean_function("logistic")(x, [1.0, 1.5, 2.5, 0.9])
    np.testing.assert_allclose(a, b, rtol=1e-9)


def test_inverse_outside_the_asymptotes_is_nan() -> None:
    theta = [0.0, 1.0, 0.0, 1.0, 0.0]
    assert np.isnan(inverse_asymmetric_logistic(1.5, theta))
    assert np.isnan(inverse_asymmetric_logistic(-0.5, theta))


def test_polynomial_degree_2_has_no_inverse() -> None:
    fn = mean_function("polynomial", degree=2)
    assert fn.theta_names == ("c_0", "c_1", "c_2")
    with pytest.raises(ModelError, match="degree 2") as info:
        fn.invert(1.0, [0.0, 1.0, 1.0])
    assert "infer_independent" in str(info.value)


def test_unknown_mean_function_names_close_matches() -> None:
    with pytest.raises(ModelError, match="'logistc'") as info:
        mean_function("logistc")
    assert "'logistic'" in str(info.value)


def test_custom_mean_function_without_inverse_says_what_to_do() -> None:
    hill = MeanFunction("hill", lambda x, t: t[0] * x / (t[1] + x), ("vmax", "K"))
    with pytest.raises(ModelError, match="'hill' has no inverse"):
        hill.invert(0.3, [1.0, 2.0])
