"""The plots people expect from a fit, in one namespace: ridge/forest with HDI,
corner plots with true values, trace and rank plots, posterior predictive
checks, predictive bands, per-group intervals (caterpillar), prior vs posterior
and the plate diagram.

The functions live in modules by concept (``posterior_plots``,
``predictive_plots``, ``bands``, ``diagram``, ``figures``); this module gathers
the public ones. Every function returns the matplotlib Figure and never calls
``show``.
"""

from __future__ import annotations

from hierax.present.bands import band_by_group, plot_band
from hierax.present.diagram import graphviz_available, plate_diagram, plot_plate
from hierax.present.figures import save_figure, use_headless_backend
from hierax.present.posterior_plots import (
    plot_caterpillar,
    plot_forest,
    plot_pair,
    plot_prior_posterior,
    plot_rank,
    plot_ridge,
    plot_trace,
)
from hierax.present.predictive_plots import (
    MAX_COUNT_VALUES,
    NEW_LEVEL,
    PpcKind,
    band_covariates,
    plot_ppc,
    plot_predictive_band,
)

__all__ = [
    "MAX_COUNT_VALUES",
    "NEW_LEVEL",
    "PpcKind",
    "band_by_group",
    "band_covariates",
    "graphviz_available",
    "plate_diagram",
    "plot_band",
    "plot_caterpillar",
    "plot_forest",
    "plot_pair",
    "plot_plate",
    "plot_ppc",
    "plot_predictive_band",
    "plot_prior_posterior",
    "plot_rank",
    "plot_ridge",
    "plot_trace",
    "save_figure",
    "use_headless_backend",
]
