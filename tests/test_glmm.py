"""Non-Gaussian models with a varying intercept: each level's effect integrated out by
adaptive Gauss-Hermite quadrature (hierax.inference.marginal.glmm)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.special as sp
import scipy.stats as st

import hierax as hx
from hierax.inference.marginal import glmm

#: brute-force grid in z: 400001 points on [-14, 14] (step 7e-5; the trapezoid error of
#: these smooth integrands is far below 1e-9 relative)
GRID = np.linspace(-14.0, 14.0, 400_001)


def table(family: str, seed: int = 0, levels: int = 4, per_level: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(levels), per_level)
    x = rng.normal(size=g.size)
    eta = 0.3 + 0.5 * x + rng.normal(0.0, 0.8, levels)[g]
    trials = rng.integers(3, 12, g.size)
    if family == "bernoulli":
        y = rng.binomial(1, sp.expit(eta))
    elif family == "binomial":
        y = rng.binomial(trials, sp.expit(eta))
    elif family == "poisson":
        y = rng.poisson(np.exp(eta))
    elif family == "negative_binomial":
        mean = np.exp(eta)
        y = rng.negative_binomial(3.0, 3.0 / (3.0 + mean))
    elif family == "gamma":
        y = rng.gamma(4.0, np.exp(eta) / 4.0)
    elif family == "lognormal":
        y = np.exp(eta + rng.normal(0.0, 0.4, g.size))
    else:  # beta
        mean = sp.expit(eta)
        y = np.clip(rng.beta(mean * 10.0, (1.0 - mean) * 10.0), 1e-6, 1 - 1e-6)
    return pd.DataFrame({"y": y, "n": trials, "x": x, "g": [f"L{j}" for j in g]})


def formula(family: str) -> str:
    return "y | trials(n) ~ x + (1 | g)" if family == "binomial" else "y ~ x + (1 | g)"


AUX = {"negative_binomial": {"phi": 2.5}, "gamma": {"shape": 3.0}, "lognormal": {"sigma": 0.5}}
AUX["beta"] = {"phi": 8.0}


def row_log_likelihood(family: str, eta: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """scipy's log likelihood of each row (columns) at each grid value of eta (rows)."""
    y = frame["y"].to_numpy()
    if family == "bernoulli":
        return st.bernoulli.logpmf(y, sp.expit(eta))
    if family == "binomial":
        return st.binom.logpmf(y, frame["n"].to_numpy(), sp.expit(eta))
    if family == "poisson":
        return st.poisson.logpmf(y, np.exp(eta))
    if family == "negative_binomial":
        phi = AUX[family]["phi"]
        return st.nbinom.logpmf(y, phi, phi / (phi + np.exp(eta)))
    if family == "gamma":
        shape = AUX[family]["shape"]
        return st.gamma.logpdf(y, shape, scale=np.exp(eta) / shape)
    if family == "lognormal":
        return st.lognorm.logpdf(y, AUX[family]["sigma"], scale=np.exp(eta))
    mean = sp.expit(eta)
    phi = AUX["beta"]["phi"]
    return st.beta.logpdf(y, mean * phi, (1.0 - mean) * phi)


def brute_force(family: str, frame: pd.DataFrame, intercept: float, slope: float, sd: float):
    """Each level's log ∫ N(z | 0, 1) Π p(y_i | x_i β + sd z) dz on a dense grid."""
    out = []
    for level in sorted(frame["g"].unique()):
        rows = frame[frame["g"] == level]
        eta = intercept + slope * rows["x"].to_numpy()[None, :] + sd * GRID[:, None]
        log_f = row_log_likelihood(family, eta, rows).sum(axis=1) + st.norm.logpdf(GRID)
        top = log_f.max()
        out.append(top + np.log(np.trapezoid(np.exp(log_f - top), GRID)))
    return np.array(out)


@pytest.mark.parametrize("family", glmm.FAMILIES)
def test_integrated_log_likelihood_matches_brute_force_quadrature(family):
    frame = table(family)
    model = hx.Model(formula(family), frame, family=family)
    plan = glmm.plan_level_integration(model.description)
    assert not isinstance(plan, str), plan
    for intercept, slope, sd in [(0.3, 0.5, 0.8), (-0.7, 1.2, 2.0), (0.1, -0.2, 0.05)]:
        values = {"Intercept": intercept, "b_x": slope, "sd_g": sd, **AUX.get(family, {})}
        ours = np.asarray(
            glmm.integrated_log_likelihood(plan, model.description, model.description.data, values)
        )
        reference = brute_force(family, frame, intercept, slope, sd)
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


def test_plan_says_why_it_does_not_integrate():
    frame = table("poisson")
    reasons = {
        "two terms": hx.Model(
            "y ~ x + (1 | g) + (1 | h)", frame.assign(h=frame["g"]), family="poisson"
        ),
        "slopes": hx.Model("y ~ x + (x | g)", frame, family="poisson"),
        "link": hx.Model("y ~ x + (1 | g)", frame, family="poisson", link="identity"),
        "zero sum": hx.Model("y ~ x + (1 | g)", frame, family="poisson", zero_sum=True),
        "student_t": hx.Model("y ~ x + (1 | g)", frame, family="student_t"),
    }
    words = {"two terms": "one group term", "slopes": "2 coefficients", "link": "identity link"}
    words.update({"zero sum": "zero-sum", "student_t": "not student_t"})
    for case, model in reasons.items():
        reason = glmm.plan_level_integration(model.description)
        assert isinstance(reason, str) and words[case] in reason, (case, reason)


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(f, marks=() if f in ("binomial", "poisson") else pytest.mark.slow)
        for f in glmm.FAMILIES
    ],
)
def test_integrated_fit_has_the_plain_fits_variables_and_agrees_with_it(family):
    frame = table(family, seed=2, levels=8, per_level=5)
    model = hx.Model(formula(family), frame, family=family)
    options = {"chains": 4, "draws": 1000, "warmup": 1000, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        integrated = model.fit(seed=11, **options)
        plain = model.fit(seed=12, marginalize=False, **options)
    centered = model.description.predictor.groups[0].centered
    assert integrated.info["marginalized"] == ["r_g" if centered else "z_g"]
    assert integrated.info["marginalization"] == "adaptive Gauss-Hermite quadrature per level"
    assert plain.info["marginalized"] == []
    assert set(integrated.posterior.data_vars) == set(plain.posterior.data_vars)
    for name in integrated.posterior.data_vars:
        assert integrated.posterior[name].dims == plain.posterior[name].dims, name
    if not centered:
        np.testing.assert_allclose(
            integrated.draws("r_g"),
            integrated.draws("sd_g")[..., None] * integrated.draws("z_g"),
            rtol=1e-9,
        )
    ours = integrated.summary(["Intercept", "b_x", "sd_g", "r_g"], round_to="none")
    theirs = plain.summary(["Intercept", "b_x", "sd_g", "r_g"], round_to="none")
    for row in ours.index:
        mcse = np.hypot(ours.loc[row, "mcse_mean"], theirs.loc[row, "mcse_mean"])
        # 4.5 MCSE: about 20 rows compared, Bonferroni at 1e-4 over them
        assert abs(ours.loc[row, "mean"] - theirs.loc[row, "mean"]) < 4.5 * mcse, row
        assert 0.85 < ours.loc[row, "sd"] / theirs.loc[row, "sd"] < 1.15, row


def test_binomial_predictive_draws_are_counts_within_the_trials():
    """Prior and posterior predictive draws of a binomial model (NumPyro's binomial
    sampler needs an integer number of trials: a float column failed before)."""
    frame = table("binomial", seed=4)
    model = hx.Model(formula("binomial"), frame, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(
            seed=1,
            chains=2,
            draws=100,
            warmup=100,
            progress=False,
            posterior_predictive=True,
            prior=True,
        )
    for group in ("posterior_predictive", "prior_predictive"):
        draws = np.asarray(fit.idata[group]["y"])
        assert np.all(draws == np.round(draws)) and draws.min() >= 0
        assert np.all(draws <= frame["n"].to_numpy())
