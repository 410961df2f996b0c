"""Exact marginalization in nonlinear models: the collapsed density, its gradient and the
conditional draws against dense references; collapsed fits against plain NUTS."""

from __future__ import annotations

import ast
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from models import assert_same_posterior

import hierax as hx
from hierax.errors import ModelError
from hierax.examples import binaries_nl, calibration_nl
from hierax.inference.marginal.affine import affine_degree
from hierax.inference.marginal.kernels import (
    LinearGaussian,
    conditional_sample,
    marginal_log_likelihood,
)
from hierax.inference.marginal.nonlinear import marginal_log_density
from hierax.inference.marginal.nonlinear_plan import plan_marginalization
from hierax.models.expression import parse_expression


def dense_log_likelihood(y, W, mean, prior_cov, noise_var):
    """log N(y; mean + W m... , W Sigma W' + diag(noise)) with dense matrices (scipy)."""
    cov = W @ prior_cov @ W.T + np.diag(noise_var)
    return st.multivariate_normal(mean, cov).logpdf(y)


def one_hot(index, levels):
    return np.eye(levels)[np.asarray(index)]


# ------------------------------------------------------------------ the array core


def random_problem(seed, n=60, h=4, levels=5, k=2):
    """A LinearGaussian with a dense head and a per-level tail, and its dense equivalent."""
    rng = np.random.default_rng(seed)
    head = rng.normal(size=(n, h))
    tail = rng.normal(size=(n, k))
    index = rng.integers(0, levels, n)
    weights = rng.uniform(0.5, 3.0, n)
    a = rng.normal(size=(h, h))
    head_precision = a @ a.T + h * np.eye(h)
    b = rng.normal(size=(k, k))
    tail_precision = b @ b.T + k * np.eye(k)
    residual = rng.normal(size=n) * 2
    problem = LinearGaussian(
        residual=jnp.asarray(residual),
        weights=jnp.asarray(weights),
        head_features=jnp.asarray(head),
        tail_features=jnp.asarray(tail),
        tail_index=jnp.asarray(index),
        head_precision=jnp.asarray(head_precision),
        head_log_det=jnp.asarray(np.linalg.slogdet(head_precision)[1]),
        tail_precision=jnp.asarray(tail_precision),
        tail_log_det=jnp.asarray(np.linalg.slogdet(tail_precision)[1]),
    )
    # dense W = [head, tail spread over levels (level-major)] and block-diagonal prior precision
    W = np.hstack([head, (one_hot(index, levels)[:, :, None] * tail[:, None, :]).reshape(n, -1)])
    precision = np.zeros((h + levels * k, h + levels * k))
    precision[:h, :h] = head_precision
    for level in range(levels):
        s = slice(h + level * k, h + (level + 1) * k)
        precision[s, s] = tail_precision
    return problem, W, precision, residual, weights


@pytest.mark.parametrize(
    ("h", "k"),
    [(4, 2), (0, 3), (5, 0), (3, 6)],
    ids=["both", "tail", "head", "large-blocks"],  # blocks of 6 use LAPACK, not unrolled
)
def test_array_core_equals_dense_gaussian(h, k):
    levels = 5
    problem, W, precision, residual, weights = random_problem(0, h=h, levels=levels, k=k)
    value = float(marginal_log_likelihood(problem, levels))
    expected = dense_log_likelihood(
        residual, W, np.zeros(len(residual)), np.linalg.inv(precision), 1.0 / weights
    )
    assert value == pytest.approx(expected, rel=1e-9)

    # conditional draws are an affine map of standard normals: zero noise gives the
    # conditional mean, the map's Jacobian J gives the covariance J J'
    posterior_precision = precision + (W.T * weights) @ W
    mean = np.linalg.solve(posterior_precision, (W.T * weights) @ residual)
    covariance = np.linalg.inv(posterior_precision)

    def draw(noise):
        head_noise, tail_noise = noise[:h], noise[h:].reshape(levels, k)
        head, tail = conditional_sample(problem, levels, head_noise, tail_noise)
        return jnp.concatenate([head, tail.reshape(-1)])

    size = h + levels * k
    np.testing.assert_allclose(draw(jnp.zeros(size)), mean, rtol=1e-9, atol=1e-12)
    J = np.asarray(jax.jacfwd(draw)(jnp.zeros(size)))
    np.testing.assert_allclose(J @ J.T, covariance, rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------ affinity


@pytest.mark.parametrize(
    ("text", "names", "degree"),
    [
        ("a * cos(2 * pi * t / exp(P)) + b * sin(t / exp(P)) + v0", {"a", "b", "v0"}, 1),
        ("a * cos(2 * pi * t / exp(P))", {"P"}, 2),
        ("i + s * S0 * (1 - exp(-k * t))", {"i", "s"}, 1),
        ("i + s * S0 * (1 - exp(-k * t))", {"s", "S0"}, 2),
        ("a / x - b", {"a", "b"}, 1),
        ("x / a", {"a"}, 2),
        ("a ** 2", {"a"}, 2),
        ("a ** 1 + x ** 2", {"a"}, 1),
        ("-(a + x) * 3", {"a"}, 1),
        ("exp(a)", {"a"}, 2),
        ("where(x > 0, a, 2 * a)", {"a"}, 1),
        ("where(a > 0, 1, 2)", {"a"}, 2),
        ("x * 2", {"a"}, 0),
    ],
)
def test_affine_degree_of_expressions(text, names, degree):
    assert affine_degree(parse_expression(text).tree, names) == degree


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("a * cos(2 * pi * t / exp(P)) + b * sin(t / exp(P)) - v0", {"a", "b", "v0"}),
        ("i + s * S0 * (1 - exp(-k * t))", {"i", "s"}),
        ("-(a + x) * 3 + x / 2 - (b * x) / t + +a", {"a", "b"}),
        ("where(x > 0, a, 2 * a) + a ** 1 * t", {"a"}),
        ("x * (a - b) + 1", {"a", "b"}),
    ],
)
def test_symbolic_slopes_reproduce_the_expression(text, names):
    import dataclasses

    from hierax.inference.marginal.affine import free_tree, slope_tree

    expression = parse_expression(text)
    rng = np.random.default_rng(0)
    env = {name: rng.normal(size=7) for name in expression.names}
    env["t"] = rng.uniform(1, 2, 7)
    at_zero = expression({**env, **{p: np.zeros(7) for p in names}})
    free = free_tree(expression.tree, names)
    if free is None:
        np.testing.assert_array_equal(at_zero, 0.0)
        rebuilt = np.zeros(7)
    else:
        assert affine_degree(free, names) == 0
        rebuilt = dataclasses.replace(expression, tree=free)(env)
        np.testing.assert_allclose(rebuilt, at_zero, rtol=1e-9, atol=1e-12)
    for name in names:
        tree = slope_tree(expression.tree, name, names)
        assert tree is not None
        assert affine_degree(tree, names) == 0
        rebuilt = rebuilt + dataclasses.replace(expression, tree=tree)(env) * env[name]
    np.testing.assert_allclose(rebuilt, expression(env), rtol=1e-9, atol=1e-12)


def test_terms_that_vanish_with_the_marginalized_parameters_are_not_computed():
    """The binary stars' mean is 0 at a = b = v0 = 0: no cosine or sine is left in it."""
    from hierax.inference.marginal.affine import free_tree

    expression = parse_expression(binaries_nl.FORMULA.split("~")[1])
    assert free_tree(expression.tree, {"a", "b", "v0"}) is None
    kept = free_tree(parse_expression("x + a * cos(x)").tree, {"a"})
    assert kept is not None and ast.unparse(kept) == "x"


# ------------------------------------------------------------ the collapsed density


def binaries_dense(model, values):
    table = model.table
    t, rv, err = (table[c].to_numpy(float) for c in ("t", "rv", "rv_err"))
    star = model.designs["a"].groups[0].index
    period = np.exp(np.asarray(values["lnP_star"]))[star]
    features = [np.cos(2 * np.pi * t / period), np.sin(2 * np.pi * t / period), np.ones_like(t)]
    levels = 14
    W = np.hstack([f[:, None] * one_hot(star, levels) for f in features])
    prior_cov = np.diag(np.repeat([100.0**2, 100.0**2, 150.0**2], levels))
    return dense_log_likelihood(rv, W, np.zeros_like(rv), prior_cov, err**2)


def binaries_values(rng, model):
    start = binaries_nl.initial_values(model.table)
    return {
        "lnP": rng.uniform(1.5, 2.5),
        "sd_lnP_star": rng.uniform(0.3, 2.0),
        "lnP_star": start["lnP_star"] + rng.normal(0, 1e-3, 14),
    }


@pytest.mark.parametrize("split_min", [32, 10**9], ids=["per-star", "dense"])
def test_binaries_collapsed_density_equals_dense_reference(split_min):
    model = binaries_nl.model()
    plan = plan_marginalization(model.description, split_min=split_min)
    assert not isinstance(plan, str), plan
    assert plan.marginalized == ["r_a_star", "r_b_star", "r_v0_star"]
    assert (plan.head_size, plan.tail_width) == ((0, 3) if split_min == 32 else (42, 0))
    rng = np.random.default_rng(1)
    for _ in range(3):
        values = binaries_values(rng, model)
        value = float(marginal_log_density(plan, model.description, model.arrays(), values))
        assert value == pytest.approx(binaries_dense(model, values), rel=1e-8)


def calibration_dense(model, values):
    table = model.table
    time, y = table["time"].to_numpy(float), table["readout"].to_numpy(float)
    batch = model.designs["intercept"].groups[0].index
    curve = values["S0"] * (1 - np.exp(-values["k"] * time))
    W = np.column_stack([np.ones_like(time), curve, one_hot(batch, 3)])
    prior_mean = np.array([0.3, 0.5, 0, 0, 0])
    prior_cov = np.diag([0.2**2, 0.5**2, 0.1**2, 0.1**2, 0.1**2])
    return dense_log_likelihood(
        y, W, W @ prior_mean, prior_cov, np.full(len(y), values["sigma"] ** 2)
    )


@pytest.mark.parametrize("split_min", [32, 1], ids=["dense", "per-batch"])
def test_calibration_collapsed_density_equals_dense_reference(split_min):
    model = calibration_nl.model()
    plan = plan_marginalization(model.description, split_min=split_min)
    assert not isinstance(plan, str), plan
    assert sorted(plan.marginalized) == ["intercept", "intercept_batch", "slope"]
    assert set(plan.not_marginalized) == {"S0", "k"}
    assert (plan.head_size, plan.tail_width) == ((5, 0) if split_min == 32 else (2, 1))
    rng = np.random.default_rng(2)
    for _ in range(3):
        values = {
            "S0": rng.uniform(4.0, 6.0),
            "k": rng.uniform(0.02, 0.2),
            "sigma": rng.uniform(0.05, 0.3),
        }
        value = float(marginal_log_density(plan, model.description, model.arrays(), values))
        assert value == pytest.approx(calibration_dense(model, values), rel=1e-8)


def zoo_table(seed=0, n_g=5, n_h=4, per=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_g), per)
    h = rng.integers(0, n_h, g.size)
    x = rng.uniform(0, 3, g.size)
    x2 = rng.normal(size=g.size)
    y = (
        1.0
        + 0.3 * x2
        + rng.normal(0, 0.3, n_g)[g]
        + (2.0 + rng.normal(0, 0.2, n_h)[h]) * np.exp(-0.7 * x)
        + rng.normal(0, 0.2, g.size)
    )
    return pd.DataFrame(
        {"y": y, "x": x, "x2": x2, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]}
    )


ZOO_PRIORS = {
    "a_Intercept": "Normal(1, 2)",
    "b_a_x2": "Normal(0, 1)",
    "b": "Normal(2, 3)",
    "k": "LogNormal(0, 1)",
}


def zoo_model(**kwargs):
    return hx.NonlinearModel(
        "y ~ a + b * exp(-k * x)",
        zoo_table(),
        params={"a": "1 + x2 + (1 + x2 | g)", "b": "1 + (1 | h)", "k": "1"},
        priors=ZOO_PRIORS,
        **kwargs,
    )


def zoo_values(rng):
    return {
        "k": rng.uniform(0.4, 1.0),
        "sigma": rng.uniform(0.1, 0.4),
        "sd_a_g": rng.uniform(0.2, 0.8, 2),
        "L_cor_a_g": np.linalg.cholesky(np.array([[1.0, 0.3], [0.3, 1.0]])),
        "sd_b_h": rng.uniform(0.1, 0.5),
    }


def zoo_dense(model, values):
    table = model.table
    x, x2, y = (table[c].to_numpy(float) for c in ("x", "x2", "y"))
    g, h = model.designs["a"].groups[0].index, model.designs["b"].groups[0].index
    decay = np.exp(-values["k"] * x)
    Wg = (one_hot(g, 5)[:, :, None] * np.column_stack([np.ones_like(x), x2])[:, None, :]).reshape(
        len(x), -1
    )
    W = np.column_stack([np.ones_like(x), x2, decay, Wg, decay[:, None] * one_hot(h, 4)])
    sd = values["sd_a_g"]
    cor = values["L_cor_a_g"] @ values["L_cor_a_g"].T
    blocks = [np.diag([2.0**2, 1.0**2, 3.0**2])] + [np.outer(sd, sd) * cor] * 5
    blocks += [np.eye(4) * values["sd_b_h"] ** 2]
    from scipy.linalg import block_diag

    prior_cov = block_diag(*blocks)
    prior_mean = np.zeros(W.shape[1])
    prior_mean[[0, 2]] = [1.0, 2.0]
    noise = np.full(len(y), values["sigma"] ** 2)
    return dense_log_likelihood(y, W, W @ prior_mean, prior_cov, noise)


@pytest.mark.parametrize("split_min", [32, 1], ids=["dense", "per-level"])
def test_correlated_and_non_centered_terms_equal_dense_reference(split_min):
    model = zoo_model()
    plan = plan_marginalization(model.description, split_min=split_min)
    assert not isinstance(plan, str), plan
    assert plan.marginalized[:3] == ["a_Intercept", "b_a_x2", "b"]
    assert set(plan.marginalized[3:]) == {"z_a_g", "z_b_h"}
    rng = np.random.default_rng(3)
    for _ in range(3):
        values = zoo_values(rng)
        value = float(marginal_log_density(plan, model.description, model.arrays(), values))
        assert value == pytest.approx(zoo_dense(model, values), rel=1e-8)


@pytest.mark.parametrize("which", ["calibration", "zoo"])
def test_gradient_of_collapsed_density_matches_finite_differences(which):
    model = calibration_nl.model() if which == "calibration" else zoo_model()
    plan = plan_marginalization(model.description, split_min=1)
    assert not isinstance(plan, str), plan
    data = model.arrays()
    base = (
        {"S0": 5.0, "k": 0.1, "sigma": 0.1}
        if which == "calibration"
        else zoo_values(np.random.default_rng(4))
    )
    positive = [name for name in base if name != "L_cor_a_g"]

    def f(logs):  # the positive sites on the log scale
        values = dict(base)
        start = 0
        for name in positive:
            size = np.size(base[name])
            values[name] = jnp.reshape(jnp.exp(logs[start : start + size]), np.shape(base[name]))
            start += size
        return marginal_log_density(plan, model.description, data, values)

    point = jnp.concatenate([jnp.log(jnp.ravel(jnp.asarray(base[n]))) for n in positive])
    point = point + 0.05 * jax.random.normal(jax.random.PRNGKey(0), point.shape)
    grad = np.asarray(jax.grad(f)(point))
    eps = 1e-5
    numeric = [
        (float(f(point + eps * e)) - float(f(point - eps * e))) / (2 * eps)
        for e in np.eye(point.size)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------ what is not marginalized


def test_reasons_for_parameters_that_stay_sampled():
    table = zoo_table()
    model = hx.NonlinearModel(
        "y ~ a * b + exp(c) + d",
        table,
        params={"a": "1 + (1 | g)", "b": "1", "c": "1", "d": hx.param("1", link="log")},
        priors={
            "a": "Normal(0, 1)",
            "b": "Normal(0, 1)",
            "c": "Normal(0, 1)",
            "d_Intercept": "Normal(0, 1)",
        },
    )
    plan = plan_marginalization(model.description)
    assert not isinstance(plan, str)
    assert plan.marginalized == ["a", "z_a_g"]
    assert "jointly affine" in plan.not_marginalized["b"]
    assert "nonlinearly" in plan.not_marginalized["c"]
    assert "transform" in plan.not_marginalized["d"]


def test_nothing_to_marginalize_is_recorded_or_raises():
    model = hx.NonlinearModel(
        "y ~ exp(a)", zoo_table(), params={"a": "1"}, priors={"a": "Normal(0, 1)"}
    )
    reason = plan_marginalization(model.description)
    assert isinstance(reason, str) and "a: it enters the expression nonlinearly" in reason
    with pytest.raises(ModelError, match="cannot be marginalized.*nonlinearly"):
        model.fit(marginalize=True, chains=1, draws=10, warmup=10, progress=False)
    result = model.fit(chains=1, draws=50, warmup=50, seed=0, progress=False, warn=False)
    assert result.info["marginalized"] == []
    assert "nonlinearly" in result.info["not_marginalized_because"]


def test_non_gaussian_family_and_latents_are_not_marginalized():
    from hierax.examples import parallax_nl

    assert "latent" in plan_marginalization(parallax_nl.model().description)
    table = zoo_table()
    table["count"] = np.arange(len(table)) % 4
    model = hx.NonlinearModel(
        "count ~ exp(a)", table, params={"a": "1"}, priors={"a": "Normal(0, 1)"}, family="poisson"
    )
    assert "poisson" in plan_marginalization(model.description)


# ------------------------------------------------------------------ fits


def posterior_variables(fit):
    return {name: (var.dims, var.shape) for name, var in fit.posterior.data_vars.items()}


def test_marginalized_fit_keeps_every_site_and_consistent_values():
    model = zoo_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        marginal = model.fit(chains=2, draws=100, warmup=100, seed=0, progress=False)
        plain = model.fit(
            chains=2, draws=100, warmup=100, seed=0, progress=False, marginalize=False
        )
    assert marginal.info["marginalized"] == ["a_Intercept", "b_a_x2", "b", "z_a_g", "z_b_h"]
    assert marginal.info["not_marginalized"] == {"k": "none of its coefficients has a Normal prior"}
    assert posterior_variables(marginal) == posterior_variables(plain)
    for name in marginal.posterior.coords:
        np.testing.assert_array_equal(
            marginal.posterior.coords[name].values, plain.posterior.coords[name].values
        )
    # the deterministic sites are consistent with the drawn latent ones
    z, sd, L = (marginal.draws(n) for n in ("z_a_g", "sd_a_g", "L_cor_a_g"))
    tril = sd[:, :, None] * L
    np.testing.assert_allclose(
        marginal.draws("r_a_g"), np.einsum("dlk,djk->dlj", z, tril), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        marginal.draws("r_b_h"), marginal.draws("z_b_h") * marginal.draws("sd_b_h")[:, None]
    )


def test_initial_values_of_marginalized_sites_are_dropped():
    model = binaries_nl.model()
    start = binaries_nl.initial_values(model.table)
    assert "r_a_star" in start
    result = model.fit(
        init=start, chains=2, draws=100, warmup=100, seed=0, progress=False, warn=False
    )
    # the start (without the marginalized sites) begins the mode search of the
    # independence sampler
    assert result.info["method"] == "independence_mh"
    # every chain stays in the periodogram's mode of every star
    np.testing.assert_allclose(
        result.posterior["lnP_star"].values.mean(axis=1),
        np.broadcast_to(start["lnP_star"], (2, 14)),
        atol=1e-3,
    )


@pytest.mark.slow
def test_marginalized_nuts_has_the_plain_posterior():
    table = zoo_table(seed=5, n_g=6, n_h=4, per=6)
    model = hx.NonlinearModel(
        "y ~ a + b * exp(-k * x)",
        table,
        params={"a": "1 + (1 | g)", "b": "1", "k": "1"},
        priors={"a": "Normal(1, 2)", "b": "Normal(2, 3)", "k": "LogNormal(0, 1)"},
    )
    settings = {"chains": 4, "draws": 2000, "warmup": 1000, "progress": False}
    marginal = model.fit(seed=1, draw_method="nuts", **settings)
    plain = model.fit(seed=2, marginalize=False, target_accept=0.99, **settings)
    assert marginal.info["marginalized"] == ["a", "b", "z_a_g"]
    assert marginal.divergences == 0 and plain.divergences == 0
    assert_same_posterior(marginal, plain, ["a", "b", "k", "sigma", "sd_a_g", "r_a_g"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (binaries_nl, ["r_a_star", "r_b_star", "r_v0_star"]),
        (calibration_nl, ["intercept", "slope", "intercept_batch"]),
    ],
    ids=["binaries", "calibration"],
)
def test_examples_fit_marginalized_with_the_plain_variables(example, expected):
    # 4 x 1000 draws each: with 4 x 500 the 10 % bound on spreads is under two Monte
    # Carlo sds of their ratio, and the test would fail on noise
    marginal = example.fit(seed=3, progress=False)
    plain = example.fit(seed=4, progress=False, marginalize=False)
    assert marginal.info["marginalized"] == expected
    assert marginal.divergences == 0
    assert posterior_variables(marginal) == posterior_variables(plain)
    hyper = ["lnP", "sd_lnP_star", "lnP_star"] if example is binaries_nl else ["k", "S0", "sigma"]
    assert_same_posterior(
        marginal,
        plain,
        hyper + [n for n in expected if not n.startswith("r_")],
        spread="interval" if example is calibration_nl else "sd",
    )
