"""Simulation-based calibration: the rank machinery, and (slow) a small study.

The unit tests use NumPy's seeded generators only (the same numbers on every
CPU). The end-to-end tests without ``slow`` replace the fit by draws from the
prior, which is the exact posterior of a dataset that carries no information
about the parameters: their ranks are uniform, a shrunk version's are not.
"""

from __future__ import annotations

import importlib

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import xarray as xr

import hierax as hx
from hierax.errors import ModelError, SamplingError
from hierax.results.sbc import sbc
from hierax.results.sbc_ranks import chi_square_uniformity, rank_statistics, thin_draws
from hierax.results.sbc_result import SBCResult

L = 99  # kept draws: ranks 0..99, 20 bins of 5 rank values


# ------------------------------------------------------------------ thinning


def test_thin_draws_keeps_evenly_spaced_draws_across_chains():
    draws = np.arange(2 * 400).reshape(2, 400)  # value = position in the chains laid end to end
    kept = thin_draws(draws, L)
    stride = 800 // L  # 8
    assert kept.shape == (L,)
    np.testing.assert_array_equal(kept, np.arange(stride - 1, stride * L, stride))
    assert np.all(np.diff(kept) == stride)  # no two kept draws closer than the stride


def test_thin_draws_keeps_trailing_dimensions():
    draws = np.zeros((2, 300, 3, 4))
    assert thin_draws(draws, L).shape == (L, 3, 4)


def test_thin_draws_needs_enough_draws():
    with pytest.raises(ModelError, match="cannot keep 99 draws from 2 chains x 40 draws"):
        thin_draws(np.zeros((2, 40)), L)


# --------------------------------------------------------------------- ranks


def test_rank_counts_draws_below_the_true_value():
    draws = np.arange(10.0)[:, None] * np.ones((1, 3))  # (L=10, parameter=3)
    truth = np.array([-1.0, 4.5, 100.0])
    ranks = rank_statistics(truth, draws, np.random.default_rng(0))
    np.testing.assert_array_equal(ranks, [0, 5, 10])


def test_ties_are_broken_uniformly():
    # every draw equals the truth (a constant parameter): the rank must be uniform on 0..L
    draws = np.zeros((L, 1))
    rng = np.random.default_rng(3)
    ranks = np.array([rank_statistics(np.zeros(1), draws, rng)[0] for _ in range(4000)])
    assert ranks.min() == 0 and ranks.max() == L
    _, p_value = chi_square_uniformity(ranks, L, 20)
    assert p_value > 1e-3


def test_partial_ties_add_a_uniform_share_to_the_draws_below():
    draws = np.array([0.0, 1.0, 1.0, 1.0, 2.0])[:, None]  # one below, three tied
    rng = np.random.default_rng(5)
    ranks = np.array([rank_statistics(np.ones(1), draws, rng)[0] for _ in range(2000)])
    assert set(ranks) == {1, 2, 3, 4}
    counts = np.bincount(ranks)[1:]
    assert counts.min() > 400  # each of the 4 outcomes about 500 times


# ---------------------------------------------------------------- uniformity


def test_uniform_ranks_pass_the_chi_square():
    ranks = np.random.default_rng(7).integers(0, L + 1, size=1000)
    _, p_value = chi_square_uniformity(ranks, L, 20)
    assert p_value > 0.01


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda u: u**1.5, id="biased"),  # piles up at low ranks
        pytest.param(lambda u: 0.5 + 0.5 * np.sign(u - 0.5) * np.abs(2 * u - 1) ** 0.5, id="wide"),
        pytest.param(lambda u: 0.5 + 0.5 * np.sign(u - 0.5) * np.abs(2 * u - 1) ** 2, id="narrow"),
    ],
)
def test_non_uniform_ranks_fail_the_chi_square(make):
    u = make(np.random.default_rng(11).uniform(size=500))
    ranks = np.minimum((u * (L + 1)).astype(int), L)
    _, p_value = chi_square_uniformity(ranks, L, 20)
    assert p_value < 1e-6


def test_bins_must_divide_the_rank_values():
    with pytest.raises(ModelError, match="draws_kept \\+ 1 = 100 is not divisible by bins = 30"):
        chi_square_uniformity(np.zeros(10, dtype=int), L, 30)


def _result(counts_per_parameter: dict[str, np.ndarray], errors: int = 0) -> SBCResult:
    """A result whose ranks have the given counts in each of 20 bins."""
    columns = {}
    for name, counts in counts_per_parameter.items():
        columns[name] = np.repeat(np.arange(20) * 5 + 2, counts)  # the middle of each bin
    n = len(next(iter(columns.values())))
    ranks = pd.DataFrame(columns).astype("Int64")
    fits = pd.DataFrame({"error": [""] * n, "method": ["nuts"] * n, "problems": [""] * n})
    fits.loc[: errors - 1, "error"] = "SamplingError: boom" if errors else ""
    return SBCResult(
        ranks=ranks,
        truth=pd.DataFrame(np.zeros((n, len(columns))), columns=list(columns)),
        fits=fits,
        draws_kept=L,
        bins=20,
        draws=np.zeros((n, L, len(columns))),
    )


FLAT = np.full(20, 10)  # chi2 = 0
TILTED = np.array([15] * 8 + [5] * 8 + [10] * 4)  # chi2 = 40 on 19 dof: p = 0.0032


def test_passed_applies_bonferroni_over_parameters():
    # p = 0.003 < 0.01 for one of five parameters: not significant after Bonferroni
    result = _result({"a": TILTED, "b": FLAT, "c": FLAT, "d": FLAT, "e": FLAT})
    assert 0.002 < result.p_values["a"] < 0.01
    assert result.passed(alpha=0.01)
    # ... but for a single parameter it is
    assert not _result({"a": TILTED}).passed(alpha=0.01)


def test_passed_fails_with_failed_fits():
    result = _result({"a": FLAT}, errors=3)
    assert result.n_failed == 3
    assert not result.passed()
    assert result.passed(max_failed=3)


def test_summary_reports_rank_mean_and_spread():
    summary = _result({"a": FLAT, "b": TILTED}).summary()
    assert list(summary.columns) == ["n", "chi2", "p_value", "rank_mean", "rank_sd"]
    assert summary.loc["a", "chi2"] == 0.0
    assert summary.loc["b", "rank_mean"] < 0.5  # tilted to low ranks


# ----------------------------------------------------- end to end, fits faked


def _normal_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(mu, tau).expand([5]), obs=y)


class _PriorFit:
    """A stand-in for a Fit whose draws come from the prior (the posterior given no data)."""

    def __init__(self, seed: int, shrink: float = 1.0):
        rng = np.random.default_rng(seed)
        mu = rng.normal(size=(2, 100))
        mu = mu.mean() + shrink * (mu - mu.mean())
        tau = np.abs(rng.normal(size=(2, 100)))
        self.posterior = xr.Dataset(
            {"mu": (("chain", "draw"), mu), "tau": (("chain", "draw"), tau)}
        )
        self.info = {"method": "prior", "marginalized": []}
        self.divergences = 0
        self.findings: list = []


@pytest.fixture
def prior_fits(monkeypatch):
    """hierax.fit replaced by draws from the prior; shrink and failures settable."""
    settings = {"shrink": 1.0, "fail_every": 0, "calls": 0}

    def fake_fit(model_fn, data, *, seed, **options):
        settings["calls"] += 1
        if settings["fail_every"] and settings["calls"] % settings["fail_every"] == 0:
            raise SamplingError("the sampler produced non-finite draws")
        return _PriorFit(seed, settings["shrink"])

    # the module, not the function hierax.fit that the package re-exports
    monkeypatch.setattr(importlib.import_module("hierax.results.fit"), "fit", fake_fit)
    return settings


def _study(**kwargs):
    options = {"chains": 2, "draws": 100}
    return sbc(_normal_model, {"y": np.zeros(5)}, fit_options=options, seed=4, **kwargs)


def test_calibrated_fits_pass_and_shrunk_ones_fail(prior_fits):
    result = _study(n_simulations=200)
    assert result.parameters == ["mu", "tau"]
    assert result.ranks.shape == (200, 2)
    assert result.methods == {"prior": 200}
    assert result.passed()
    shrunk = result.with_draws(
        lambda d: d.mean(1, keepdims=True) + 0.5 * (d - d.mean(1, keepdims=True))
    )
    assert not shrunk.passed()
    assert shrunk.p_values["mu"] < 1e-6


def test_transform_of_identity_gives_the_same_ranks(prior_fits):
    result = _study(n_simulations=20)
    again = result.with_draws(lambda d: d)
    pd.testing.assert_frame_equal(result.ranks, again.ranks)


def test_same_seed_same_result(prior_fits):
    first, second = _study(n_simulations=15), _study(n_simulations=15)
    pd.testing.assert_frame_equal(first.ranks, second.ranks)
    pd.testing.assert_frame_equal(first.truth, second.truth)


def test_studies_combine_into_one(prior_fits):
    first = _study(n_simulations=10)
    second = sbc(
        _normal_model,
        {"y": np.zeros(5)},
        fit_options={"chains": 2, "draws": 100},
        seed=5,
        n_simulations=12,
    )
    both = SBCResult.combine([first, second])
    assert both.n_simulations == 22
    assert list(both.ranks.index) == list(range(22))
    np.testing.assert_array_equal(both.ranks.to_numpy()[10:], second.ranks.to_numpy())
    # ties are broken by each fit's own stream: recomputing gives the same ranks
    pd.testing.assert_frame_equal(both.with_draws(lambda d: d).ranks, both.ranks)


def test_failed_fits_are_counted_not_dropped(prior_fits):
    prior_fits["fail_every"] = 4
    result = _study(n_simulations=40)
    assert result.n_failed == 10
    assert result.ranks["mu"].isna().sum() == 10
    assert result.fits["error"].str.contains("SamplingError: the sampler produced").sum() == 10
    assert not result.passed()
    assert "10 failed fits" in repr(result)


def test_a_study_whose_every_fit_fails_stops_early(prior_fits):
    prior_fits["fail_every"] = 1
    with pytest.raises(SamplingError, match="each of the first 5 fits failed; the first: Sampling"):
        _study(n_simulations=50)
    assert prior_fits["calls"] == 5


def test_plots_draw_one_panel_per_parameter(prior_fits):
    result = _study(n_simulations=20)
    for kind in ("hist", "ecdf"):
        figure = result.plot(kind=kind)
        assert len([a for a in figure.axes if a.get_visible()]) == 2


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_simulations": 0}, "n_simulations must be >= 1, got 0"),
        ({"n_simulations": 2.5}, "n_simulations must be an integer, got 2.5"),
        ({"draws_kept": 100}, "draws_kept \\+ 1 divisible by bins; got draws_kept=100"),
        ({"fit_options": {"chains": 1, "draws": 50}}, "1 chains x 50 draws = 50 draws, fewer"),
        ({"fit_options": {"seed": 3}}, "give the seed as sbc\\(seed=...\\)"),
        ({"var_names": ["nu"]}, "var_names \\['nu'\\] are not parameters"),
        ({"observed": ["z"]}, "observed names \\['z'\\], which are not in data"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"n_simulations": 3, **kwargs}
    with pytest.raises(ModelError, match=message):
        sbc(_normal_model, {"y": np.zeros(5)}, seed=0, **arguments)


def test_default_priors_that_move_with_the_data_are_an_error():
    table = pd.DataFrame({"x": np.linspace(-1, 1, 12), "y": np.linspace(0, 1, 12)})
    with pytest.raises(ModelError, match="the prior of \\['Intercept', 'b_x', 'sigma'\\] changes"):
        sbc(lambda t: hx.Model("y ~ x", t), table, n_simulations=3, seed=0)


def test_a_factory_must_return_a_model():
    table = pd.DataFrame({"y": [0.0, 1.0]})
    with pytest.raises(ModelError, match="must be a function of the table that returns a"):
        sbc(lambda t: 3, table, n_simulations=3)


# ------------------------------------------------------------------- slow


@pytest.mark.slow
def test_sbc_of_the_independence_path_is_uniform_and_a_shrunk_posterior_is_flagged():
    """60 collapsed fits drawn by the independence sampler, and a control with power.

    Correct inference fails ``passed(0.001)`` with probability at most 0.1 %
    (Bonferroni over the 3 parameters). The control's posteriors are shrunk
    to 0.4 of their width: with 60 datasets and 10 bins, 4000 simulated
    studies of such ranks (NumPy, 3 independent parameters) were all flagged.
    ``bench/sbc.py`` runs the full study (N = 200 per path, shrinkage 0.7).
    """
    rng = np.random.default_rng(16)
    table = pd.DataFrame({"x": np.round(rng.normal(size=20), 3), "y": 0.0})
    priors = {"Intercept": "Normal(0, 1)", "b_x": "Normal(0, 1)", "sigma": "LogNormal(-0.7, 0.3)"}
    result = sbc(
        lambda t: hx.Model("y ~ x", t, priors=priors),
        table,
        n_simulations=60,
        seed=16,
        fit_options={"chains": 2, "draws": 200, "warmup": 200},
        bins=10,
    )
    assert result.n_failed == 0
    # the intended path: coefficients integrated out, sigma by the independence sampler
    # (or NUTS where its checks fail: the collapsed model either way)
    assert set(result.fits["marginalized"]) == {"Intercept,b_x"}
    assert result.methods.get("independence_mh", 0) >= 50, result.methods
    assert result.parameters == ["Intercept", "b_x", "sigma"]
    assert result.passed(alpha=0.001), result.summary()
    shrunk = result.with_draws(
        lambda d: d.mean(1, keepdims=True) + 0.4 * (d - d.mean(1, keepdims=True))
    )
    assert not shrunk.passed(alpha=0.001), shrunk.summary()


# ------------------------------------------------- a bug the study found


def test_mode_search_survives_scipys_trust_exact_failing(monkeypatch):
    """scipy's trust-exact can end in a raw UnboundLocalError (SBC latent path, 1 of 200).

    The mode search must go on with L-BFGS, as for its other failures.
    """
    import scipy.optimize

    from hierax.inference import precondition

    real_minimize = scipy.optimize.minimize

    def minimize(*args, **kwargs):
        if kwargs.get("method") == "trust-exact":
            raise UnboundLocalError("cannot access local variable 'p'")
        return real_minimize(*args, **kwargs)

    monkeypatch.setattr(precondition.scipy.optimize, "minimize", minimize)

    def value_and_grad(x):  # log density of N((1, -2), I)
        centered = np.asarray(x) - np.array([1.0, -2.0])
        return -0.5 * float(centered @ centered), -centered

    mode = precondition.find_mode(value_and_grad, np.zeros(2), hessian=lambda x: np.eye(2))
    assert mode.success
    np.testing.assert_allclose(mode.position, [1.0, -2.0], atol=1e-6)
