"""The affine preconditioner and the mode search, on Gaussians with known answers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hierax.inference.precondition import (
    find_mode,
    from_curvature,
    hessian_function,
    negative_hessian,
    stencil_derivatives,
)


def _gaussian(mean: np.ndarray, covariance: np.ndarray):
    precision = np.linalg.inv(covariance)

    def log_density(x: jax.Array) -> jax.Array:
        delta = x - mean
        return -0.5 * delta @ precision @ delta

    return log_density, precision


def _badly_scaled(seed: int = 0, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scales = 10.0 ** np.linspace(-6, 3, dim)  # posterior sds from 1e-6 to 1e3
    correlation = np.full((dim, dim), 0.6) + 0.4 * np.eye(dim)
    covariance = correlation * np.outer(scales, scales)
    mean = rng.normal(size=dim) * scales
    return mean, covariance


@pytest.mark.parametrize("use_hessian", [True, False])
def test_find_mode_on_badly_scaled_gaussian(use_hessian: bool) -> None:
    mean, covariance = _badly_scaled()
    log_density, _ = _gaussian(mean, covariance)
    value_and_grad = jax.jit(jax.value_and_grad(log_density))
    hessian = hessian_function(log_density, mean.size) if use_hessian else None
    start = mean + np.sqrt(np.diag(covariance)) * 3.0
    result = find_mode(value_and_grad, start, hessian=hessian)
    if use_hessian:
        assert result.success
        # error measured in posterior sds: scale-free
        np.testing.assert_allclose(
            (result.position - mean) / np.sqrt(np.diag(covariance)), 0.0, atol=1e-4
        )
    else:
        assert result.log_density >= float(log_density(jnp.asarray(start)))


def test_stencil_derivatives_find_the_mode_of_a_badly_scaled_gaussian() -> None:
    """Value, gradient and curvature from log densities alone (no gradient program)."""
    mean, covariance = _badly_scaled(dim=5)
    log_density, precision = _gaussian(mean, covariance)
    batch = jax.jit(jax.vmap(log_density))
    calls = []

    def log_densities(points: np.ndarray) -> np.ndarray:
        calls.append(len(points))
        return np.asarray(batch(jnp.asarray(points)))

    value_and_grad, hessian = stencil_derivatives(log_densities, mean.size)
    start = mean + np.sqrt(np.diag(covariance)) * 3.0
    result = find_mode(value_and_grad, start, hessian=hessian)
    assert result.success
    np.testing.assert_allclose(
        (result.position - mean) / np.sqrt(np.diag(covariance)), 0.0, atol=1e-4
    )
    # at the mode the curvature is the precision, to 1e-5 in every entry's own scale
    curvature = np.asarray(hessian(jnp.asarray(result.position)))
    scale = np.sqrt(np.outer(np.diag(precision), np.diag(precision)))
    np.testing.assert_allclose(curvature / scale, precision / scale, atol=1e-5)
    assert set(calls) == {2 * 5**2 + 1}  # one batch per point


def test_stencil_derivatives_refit_steps_too_wide_for_a_narrow_periodic_peak() -> None:
    """A binary star's log period: a peak of sd 1e-5 among many, at a value of 2. The
    first point's steps (1e-4 of the value: 20 sds) straddle other peaks; the curvature
    is measured again with steps fitted to the first estimate."""
    sd = 1e-5

    def log_density(x: jax.Array) -> jax.Array:
        return jnp.cos((x[0] - 2.0) / sd) - 0.5 * x[1] ** 2

    batch = jax.jit(jax.vmap(log_density))
    value_and_grad, hessian = stencil_derivatives(lambda p: np.asarray(batch(jnp.asarray(p))), 2)
    x = jnp.array([2.0 + 0.1 * sd, 0.3])
    curvature = np.asarray(hessian(x))
    exact = -np.asarray(jax.hessian(log_density)(x))
    np.testing.assert_allclose(curvature[0, 0], exact[0, 0], rtol=1e-5)
    np.testing.assert_allclose(curvature[1, 1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(value_and_grad(x)[1]), np.asarray(jax.grad(log_density)(x)), rtol=1e-5
    )


def test_stencil_derivatives_match_autodiff_on_a_skewed_density() -> None:
    def log_density(x: jax.Array) -> jax.Array:
        return -jnp.exp(x[0]) + 3.0 * x[0] - 0.5 * (x[1] - x[0] ** 2) ** 2 / 0.01

    batch = jax.jit(jax.vmap(log_density))
    value_and_grad, hessian = stencil_derivatives(lambda p: np.asarray(batch(jnp.asarray(p))), 2)
    hessian(jnp.array([0.7, 0.2]))  # a first point; later ones use steps fitted to its curvature
    x = jnp.array([0.7 + 1e-9, 0.2])
    value, gradient = value_and_grad(x)
    curvature = hessian(x)
    exact_gradient = jax.grad(log_density)(x)
    exact = -jax.hessian(log_density)(x)
    np.testing.assert_allclose(float(value), float(log_density(x)), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(gradient), np.asarray(exact_gradient), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(curvature), np.asarray(exact), rtol=1e-5, atol=1e-4)


def test_dense_preconditioner_whitens_the_gaussian() -> None:
    mean, covariance = _badly_scaled(1)
    log_density, precision = _gaussian(mean, covariance)
    hessian = negative_hessian(hessian_function(log_density, mean.size), mean)
    np.testing.assert_allclose(hessian, precision, rtol=1e-6)
    pre = from_curvature(mean, hessian)
    assert pre.kind == "dense"
    factor = np.asarray(pre.factor)
    np.testing.assert_allclose(factor @ factor.T, covariance, rtol=1e-6, atol=0)
    # z-space covariance is the identity: J^T H J = I with J = factor
    np.testing.assert_allclose(factor.T @ precision @ factor, np.eye(mean.size), atol=1e-6)
    z = np.random.default_rng(2).normal(size=(5, mean.size))
    u = np.asarray(pre.to_unconstrained(jnp.asarray(z)))
    np.testing.assert_allclose(np.asarray(pre.from_unconstrained(jnp.asarray(u))), z, atol=1e-6)


def test_diag_preconditioner_uses_marginal_sds() -> None:
    mean, covariance = _badly_scaled(2)
    _, precision = _gaussian(mean, covariance)
    pre = from_curvature(mean, precision, allow_dense=False)
    assert pre.kind == "diag"
    np.testing.assert_allclose(np.asarray(pre.factor), np.sqrt(np.diag(covariance)), rtol=1e-6)
    z = np.random.default_rng(3).normal(size=(4, mean.size))
    u = pre.to_unconstrained(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(pre.from_unconstrained(u)), z, atol=1e-9)


def test_indefinite_curvature_falls_back_to_capped_diagonal() -> None:
    precision = np.diag([4.0, -1.0, 0.0])
    pre = from_curvature(np.zeros(3), precision, max_scale=10.0)
    assert pre.kind == "diag"
    np.testing.assert_allclose(np.asarray(pre.factor), [0.5, 1.0, 10.0])


def test_no_curvature_gives_identity() -> None:
    pre = from_curvature(np.ones(3), None)
    assert pre.kind == "identity"
    np.testing.assert_allclose(np.asarray(pre.to_unconstrained(jnp.zeros(3))), np.ones(3))


def test_mode_search_reports_failure_for_a_density_without_mode() -> None:
    # log density increasing without bound along x (like a centered group sd -> 0)
    def log_density(x: jax.Array) -> jax.Array:
        return 2.0 * x[0] - 0.5 * x[1] ** 2

    value_and_grad = jax.jit(jax.value_and_grad(log_density))
    result = find_mode(value_and_grad, np.zeros(2), max_iterations=50)
    assert not result.success


def test_mode_search_with_non_finite_start() -> None:
    def log_density(x: jax.Array) -> jax.Array:
        return jnp.log(x[0])

    result = find_mode(jax.value_and_grad(log_density), np.array([-1.0]))
    assert not result.success
    assert "not finite" in result.message
