"""Multimodal posteriors: multi-start mode search and the chains-in-different-modes finding."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import hierax as hx

SETTINGS = {"draws": 300, "warmup": 300, "progress": False}


def lopsided() -> None:
    """A minor mode at -2 (weight 0.001) and the dominant one at +2."""
    x = numpyro.sample("x", dist.Normal(0, 3))
    minor = jnp.log(0.001) + dist.Normal(-2, 0.1).log_prob(x)
    numpyro.factor("modes", jnp.logaddexp(minor, dist.Normal(2, 0.1).log_prob(x)))


def symmetric() -> None:
    x = numpyro.sample("x", dist.Normal(0, 20))
    numpyro.factor(
        "modes", jnp.logaddexp(dist.Normal(-10, 0.1).log_prob(x), dist.Normal(10, 0.1).log_prob(x))
    )


def test_multistart_finds_the_dominant_mode_from_a_bad_start() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hx.ConvergenceWarning)
        stuck = hx.fit(lopsided, init={"x": -2.0}, seed=0, **SETTINGS)
        found = hx.fit(lopsided, init={"x": -2.0}, seed=0, multistart=8, **SETTINGS)
    assert abs(stuck.draws("x").mean() + 2) < 0.1  # without it, the chains stay where they start
    assert abs(found.draws("x").mean() - 2) < 0.1
    summary = found.info["precondition"]["multistart"]
    assert summary["searches"] == 9
    assert len(summary["modes"]) == 2
    assert summary["modes"][0]["log_density"] > summary["modes"][1]["log_density"]


def test_chains_in_different_modes_are_named() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", hx.ConvergenceWarning)
        fit = hx.fit(
            symmetric,
            init=[{"x": -10.0}, {"x": 10.0}, {"x": -10.0}, {"x": 10.0}],
            seed=0,
            **SETTINGS,
        )
    modes = [f for f in fit.findings if f.check == "modes"]
    assert len(modes) == 1
    assert "chains [0, 2] vs chains [1, 3]" in modes[0].message
    assert modes[0].variables == ("x",)
    assert len([w for w in caught if issubclass(w.category, hx.ConvergenceWarning)]) == 1


def test_one_mode_gives_no_modes_finding() -> None:
    def model() -> None:
        numpyro.sample("x", dist.Normal(1.0, 2.0))

    fit = hx.fit(model, seed=1, **SETTINGS)
    assert not [f for f in fit.findings if f.check == "modes"]
