"""The crossed genes x cell-lines workflow as one formula line.

``logfc ~ 1 + (1 | gene) + (1 | cell_line)``: one intercept and zero-mean
gene and cell-line offsets, identifiable by construction. Posterior names
follow the formula scheme: ``Intercept``, ``sd_gene``, ``r_gene`` ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hierax.examples import crossed
from hierax.frontends.model import Model
from hierax.present.plots import plot_forest, plot_pair, plot_trace, save_figure
from hierax.results.fit import Fit

NAME = "crossed_formula"
TITLE = "genes x cell lines from the formula logfc ~ 1 + (1 | gene) + (1 | cell_line)"
FORMULA = "logfc ~ 1 + (1 | gene) + (1 | cell_line)"
HYPERPARAMETERS = ["Intercept", "sd_gene", "sd_cell_line", "sigma"]
load_data = crossed.load_data


def truth() -> dict[str, Any]:
    raw = crossed.truth()
    return {
        "Intercept": raw["intercept"],
        "sd_gene": raw["sigma_alpha"],
        "sd_cell_line": raw["sigma_beta"],
        "sigma": raw["sigma"],
    }


def model() -> Model:
    return Model(FORMULA, load_data())


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    return model().fit(seed=seed, draws=draws, warmup=draws, progress=progress, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    true = truth()
    paths = [
        save_figure(
            plot_forest(result, ["r_gene", "r_cell_line", *HYPERPARAMETERS], truth=true),
            out / "forest.png",
        ),
        save_figure(plot_pair(result, HYPERPARAMETERS, truth=true), out / "pair.png"),
        save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"),
    ]
    import matplotlib.pyplot as plt

    table = load_data()
    mean = result.predict(table)
    lower, median, upper = np.quantile(
        np.asarray(mean).reshape(-1, len(table)), [0.05, 0.5, 0.95], axis=0
    )
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.errorbar(table["logfc"], median, yerr=[median - lower, upper - median], fmt="o", ms=3)
    limits = [table["logfc"].min() - 0.1, table["logfc"].max() + 0.1]
    ax.plot(limits, limits, "k--", lw=1)
    ax.set(xlabel="observed logFC", ylabel="predicted mean (90 % interval)", title=FORMULA)
    paths.append(save_figure(fig, out / "predictive.png"))
    return paths
