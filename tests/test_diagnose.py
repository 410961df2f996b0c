"""Diagnostics that name the culprit: non-identified directions, funnels, divergence locations."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from models import (
    EIGHT_SCHOOLS_SIGMA,
    EIGHT_SCHOOLS_Y,
    eight_schools_centered,
    eight_schools_noncentered,
    hierarchical_model,
)

import hierax
from hierax.diagnostics.convergence import Finding
from hierax.diagnostics.diagnose import Diagnosis, diagnose, model_dependencies
from hierax.examples import crossed, crossed_formula

EIGHT_SCHOOLS = {"y": EIGHT_SCHOOLS_Y, "sigma": EIGHT_SCHOOLS_SIGMA}


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hierax.ConvergenceWarning)
        return hierax.fit(*args, progress=False, **kwargs)


# ------------------------------------------------------------- non-identifiability


@pytest.fixture(scope="module")
def naive_crossed():
    return crossed.fit(seed=0, quick=True, naive=True)


def test_naive_crossed_model_names_mu_alpha_and_mu_beta(naive_crossed):
    diagnosis = naive_crossed.diagnose()
    assert "non_identified" in diagnosis
    finding = diagnosis["non_identified"]
    assert {"mu_alpha", "mu_beta"} <= set(finding.variables)
    # the identified sum and the free difference are both named, with the fix
    assert "mu_beta + mu_alpha" in finding.message or "mu_alpha + mu_beta" in finding.message
    assert "set by the prior alone" in finding.message
    assert "logfc ~ 1 + (1 | " in finding.message
    assert "(1 | gene)" in finding.message and "(1 | cell_line)" in finding.message
    # and it is part of the fit's own findings (warned after fitting)
    assert "non_identified" in {f.check for f in naive_crossed.findings}


def test_non_identified_finding_survives_save_and_load(naive_crossed, tmp_path):
    path = naive_crossed.save(tmp_path / "naive.nc")
    loaded = hierax.load(path)
    assert "non_identified" in loaded.diagnose()
    assert {"mu_alpha", "mu_beta"} <= set(loaded.diagnose()["non_identified"].variables)
    # the fix names the groups from the model's structure, kept in the file
    assert loaded.model_fn is None
    assert (
        loaded.diagnose()["non_identified"].message
        == naive_crossed.diagnose()["non_identified"].message
    )


def test_healthy_fit_is_diagnosed_without_tracing_provenance(tmp_path):
    result = crossed_formula.fit(seed=0, quick=True)
    assert result.diagnose().ok
    assert "dependencies" not in result.info  # only read to explain a problem
    result.save(tmp_path / "fit.nc")  # kept for diagnosing the loaded fit
    assert result.info["dependencies"]["r_gene"] == ["sd_gene"]


def test_identifiable_crossed_formula_reports_nothing():
    result = crossed_formula.fit(seed=0, quick=True)
    assert result.diagnose().ok, str(result.diagnose())


def test_identifiable_crossed_model_function_reports_nothing():
    # the seed's own 4 x 1000 draws: with 500 per chain, R-hat of this model passes
    # 1.01 in about one run in five (seeds 1-14: 4 runs, with the sampler of
    # 2026-11-21 and of today alike), which is noise, not a finding
    result = crossed.fit(seed=1)
    assert result.diagnose().ok, str(result.diagnose())


# ------------------------------------------------------------------------ funnels


@pytest.mark.parametrize("seed", [0, 4])
def test_centered_eight_schools_diagnosis_points_at_tau_and_theta(seed):
    """The funnel is named with its fix, whether the chains diverge in it or stall in it.

    Seed 4: 57 divergences concentrated at small tau. Seed 0: no divergence, the
    chains stall at different depths of the neck (R-hat, tree depth).
    """
    result = quiet_fit(
        eight_schools_centered, EIGHT_SCHOOLS, chains=4, draws=300, warmup=300, seed=seed
    )
    diagnosis = result.diagnose()
    named = [f for f in diagnosis.findings if f.variables == ("tau", "theta")]
    assert len(named) == 1, str(diagnosis)
    finding = named[0]
    assert finding.check == ("divergences" if result.divergences else "funnel")
    assert "funnel" in finding.message
    assert "Non-center theta: theta = mu + tau * z" in finding.message
    assert "modes" not in diagnosis  # a stuck funnel is not reported as multimodality


def test_noncentered_eight_schools_reports_nothing():
    result = quiet_fit(
        eight_schools_noncentered, EIGHT_SCHOOLS, chains=4, draws=1000, warmup=1000, seed=0
    )
    assert result.diagnose().ok, str(result.diagnose())


def test_noncentered_model_with_strong_data_is_advised_to_center():
    """8 groups x 20 observations, noise sd 0.3, tau ~ 1: the data pin the effects down."""
    rng = np.random.default_rng(1)
    n_school, per_school = 8, 20
    effects = rng.normal(1.0, 1.0, n_school)
    school = np.repeat(np.arange(n_school), per_school)
    y = effects[school] + rng.normal(0.0, 0.3, school.size)
    data = {"school": school, "n_school": n_school, "y": y}
    result = quiet_fit(
        hierarchical_model, data, chains=4, draws=500, warmup=500, seed=0, precondition="none"
    )
    diagnosis = result.diagnose()
    assert "funnel" in diagnosis, str(diagnosis)
    assert diagnosis["funnel"].variables == ("tau", "z")
    assert "Center this term" in diagnosis["funnel"].message


def test_model_dependencies_of_eight_schools():
    parents = model_dependencies(eight_schools_centered, EIGHT_SCHOOLS)
    assert parents["theta"] == ["mu", "tau"]
    assert parents["y"] == ["theta"]


# ----------------------------------------------------------- divergence locations


def synthetic_fit(x, y, diverging):
    chains, draws = x.shape
    idata = az.from_dict(
        posterior={"x": x, "y": y},
        sample_stats={
            "diverging": diverging,
            "tree_depth": np.full((chains, draws), 3),
            "energy": np.random.default_rng(0).normal(size=(chains, draws)),
        },
    )
    return hierax.Fit(idata, info={"max_tree_depth": 10})


def test_divergences_are_located_at_the_parameter_where_they_concentrate():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 500))
    y = rng.normal(size=(4, 500))
    diverging = x > 1.5  # divergences only at large x, y unrelated
    diagnosis = diagnose(synthetic_fit(x, y, diverging))
    finding = diagnosis["divergences"]
    assert finding.variables == ("x",)
    assert "x (higher by" in finding.message


def test_diagnosis_prints_and_renders():
    findings = [Finding("divergences", "3 divergent <transitions>", ("tau",))]
    diagnosis = Diagnosis(findings=findings)
    assert "[divergences] 3 divergent" in str(diagnosis)
    assert "&lt;transitions&gt;" in diagnosis._repr_html_()
    assert not diagnosis.ok and diagnosis.checks() == ["divergences"]
    with pytest.raises(KeyError, match="no 'funnel' finding"):
        diagnosis["funnel"]
    assert str(Diagnosis()) == "hierax diagnosis: no problems found."
