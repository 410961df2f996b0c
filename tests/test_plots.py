"""Plot functions: each returns a Figure with data, and the special cases of each."""

from __future__ import annotations

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from models import SCHOOLS, hierarchical_data, hierarchical_model

import hierax as hx
from hierax.errors import HieraxError
from hierax.present import diagram, plots


@pytest.fixture(scope="module")
def fit() -> hx.Fit:
    """Hierarchical normal model with prior and posterior predictive groups."""
    return hx.fit(
        hierarchical_model,
        hierarchical_data(),
        coords={"school": SCHOOLS},
        chains=2,
        draws=200,
        warmup=200,
        seed=5,
        prior=True,
        posterior_predictive=True,
        progress=False,
        warn=False,
    )


@pytest.fixture(scope="module")
def count_fit() -> hx.Fit:
    """A Poisson 'fit' built from draws directly (no model function, no sampling)."""
    rng = np.random.default_rng(3)
    rate = rng.normal(3.0, 0.1, size=(2, 100))
    observed = rng.poisson(3.0, size=40)
    replicated = rng.poisson(np.abs(rate)[..., None], size=(2, 100, 40))
    idata = az.from_dict(
        posterior={"rate": rate},
        posterior_predictive={"y": replicated},
        observed_data={"y": observed},
        sample_stats={"diverging": np.zeros((2, 100), dtype=bool)},
        dims={"y": ["obs"]},
    )
    return hx.Fit(idata, findings=[])


@pytest.fixture(scope="module")
def formula_fit() -> hx.Fit:
    """A formula model with made-up posterior draws (enough for predictions; no sampling)."""
    rng = np.random.default_rng(4)
    table = pd.DataFrame({"g": np.repeat(list("abcd"), 5), "x": rng.normal(size=20)})
    table["y"] = 1.0 + 0.5 * table["x"] + rng.normal(size=20)
    model = hx.Model("y ~ x + (1 | g)", data=table, centered=True)
    shape = (2, 50)
    idata = az.from_dict(
        posterior={
            "Intercept": rng.normal(1.0, 0.1, shape),
            "b_x": rng.normal(0.5, 0.1, shape),
            "sd_g": np.abs(rng.normal(0.5, 0.1, shape)),
            "r_g": rng.normal(0.0, 0.3, (*shape, 4)),
            "sigma": np.abs(rng.normal(1.0, 0.1, shape)),
        },
        coords={"g": list("abcd")},
        dims={"r_g": ["g"]},
    )
    fit = hx.Fit(idata, findings=[])
    fit.source_model = model
    return fit


def _has_data(fig: Figure) -> bool:
    return any(ax.lines or ax.collections or ax.patches or ax.images for ax in fig.axes)


PLOTS = {
    "trace": lambda f: plots.plot_trace(f, ["mu", "tau"]),
    "rank": lambda f: plots.plot_rank(f, ["mu", "tau"]),
    "forest": lambda f: plots.plot_forest(f, ["mu", "theta"], truth={"mu": 1.0}),
    "ridge": lambda f: plots.plot_ridge(f, ["mu", "tau"]),
    "pair": lambda f: plots.plot_pair(f, ["mu", "tau", "sigma"], truth={"mu": 1.0}),
    "caterpillar": lambda f: plots.plot_caterpillar(f, "theta"),
    "prior_posterior": lambda f: plots.plot_prior_posterior(f, ["mu", "theta"]),
    "ppc": lambda f: plots.plot_ppc(f),
    "ppc_groups": lambda f: plots.plot_ppc(f, group="school"),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_returns_a_figure_with_data_and_closes(fit, tmp_path, name):
    fig = PLOTS[name](fit)
    assert isinstance(fig, Figure)
    assert _has_data(fig)
    path = plots.save_figure(fig, tmp_path / f"{name}.png")
    assert path.stat().st_size > 1000
    assert fig.number not in plt.get_fignums()


def test_ppc_is_a_density_overlay_for_continuous_data(fit):
    fig = plots.plot_ppc(fit, num_pp_samples=30)
    ax = fig.axes[0]
    assert len(ax.lines) >= 30  # one density per replicated data set, plus observed and mean
    assert not ax.patches
    plt.close(fig)


def test_ppc_draws_bars_for_counts(count_fit):
    fig = plots.plot_ppc(count_fit)
    ax = fig.axes[0]
    observed = np.asarray(count_fit.idata["observed_data"]["y"])
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in ax.patches}
    assert sum(heights.values()) == observed.size
    assert all(heights[k] == np.sum(observed == k) for k in np.unique(observed))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "observed" in labels
    plt.close(fig)


def test_ppc_intervals_per_group_are_labelled_with_the_levels(fit):
    fig = plots.plot_ppc(fit, group="school")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == SCHOOLS
    plt.close(fig)


def test_ppc_needs_predictive_draws_or_the_model(count_fit):
    idata = az.InferenceData(
        posterior=count_fit.idata["posterior"], observed_data=count_fit.idata["observed_data"]
    )
    with pytest.raises(HieraxError, match="posterior_predictive"):
        plots.plot_ppc(hx.Fit(idata, findings=[]))


def test_caterpillar_marks_the_true_values(fit):
    truth = np.arange(5.0)
    fig = plots.plot_caterpillar(fit, "theta", truth={"theta": truth})
    ax = fig.axes[0]
    order = np.argsort(fit.draws("theta").mean(axis=0))
    (marks,) = [line for line in ax.lines if line.get_label() == "true value"]
    np.testing.assert_allclose(marks.get_xdata(), truth[order])
    assert [t.get_text() for t in ax.get_yticklabels()] == [SCHOOLS[i] for i in order]
    plt.close(fig)


def test_caterpillar_rejects_truth_of_the_wrong_size(fit):
    with pytest.raises(HieraxError, match="3 values"):
        plots.plot_caterpillar(fit, "theta", truth=[1.0, 2.0, 3.0])


def test_prior_posterior_needs_the_prior_group(count_fit):
    with pytest.raises(HieraxError, match="prior=True"):
        plots.plot_prior_posterior(count_fit)


def test_plate_is_skipped_without_graphviz(fit, monkeypatch):
    monkeypatch.setattr(diagram, "graphviz_available", lambda: False)
    assert plots.plot_plate(fit) is None
    assert plots.plate_diagram(fit) is None


def test_plate_needs_the_model_function(count_fit):
    assert plots.plot_plate(count_fit) is None


@pytest.mark.skipif(not plots.graphviz_available(), reason="graphviz is not installed")
def test_plate_diagram_with_graphviz(fit):
    fig = plots.plot_plate(fit)
    assert isinstance(fig, Figure)
    assert fig.axes[0].images
    plt.close(fig)


def test_predictive_band_over_a_dense_grid(formula_fit):
    assert plots.band_covariates(formula_fit) == ["x"]
    fig = plots.plot_predictive_band(formula_fit, "x", n_grid=60)
    ax = fig.axes[0]
    (median,) = [line for line in ax.lines if line.get_label() == "median"]
    assert len(median.get_xdata()) == 60
    assert "g = " in ax.get_title()
    plt.close(fig)


def test_predictive_band_needs_a_numeric_predictor_of_a_formula_fit(formula_fit, count_fit):
    with pytest.raises(HieraxError, match="numeric predictors"):
        plots.plot_predictive_band(formula_fit, "g")
    with pytest.raises(HieraxError, match="formula fit"):
        plots.plot_predictive_band(count_fit, "x")
