"""The star-cluster seed as a nonlinear formula with a latent per-star distance.

``parallax | se(parallax_error) ~ 1 / r`` with ``r ~ TruncatedNormal(mu_r,
exp(ln_std_r), low=0)`` per star. Same sites and posterior as
:mod:`hierax.examples.parallax`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hierax.examples import parallax
from hierax.examples.parallax import load_data, truth
from hierax.frontends.nonlinear import NonlinearModel, latent
from hierax.results.fit import Fit

NAME = "parallax_nl"
TITLE = "star cluster from the nonlinear formula parallax | se(parallax_error) ~ 1 / r"
FORMULA = "parallax | se(parallax_error) ~ 1 / r"
HYPERPARAMETERS = ["mu_r", "ln_std_r"]
PARAMS: dict[str, Any] = {
    "r": latent("TruncatedNormal(mu_r, exp(ln_std_r), low=0)"),
    "mu_r": "1",
    "ln_std_r": "1",
}
PRIORS = {"mu_r": "TruncatedNormal(1, 2, low=0)", "ln_std_r": "Uniform(-8, 0)"}
__all__ = ["HYPERPARAMETERS", "NAME", "TITLE", "fit", "figures", "load_data", "model", "truth"]


def model() -> Any:
    return NonlinearModel(FORMULA, load_data(), params=PARAMS, priors=PRIORS)


def fit(seed: int = 0, quick: bool = False, progress: bool | None = None, **kwargs: Any) -> Fit:
    draws = 500 if quick else 1000
    init = parallax.initial_values(load_data())  # the tutorial's start
    return model().fit(seed=seed, draws=draws, warmup=draws, progress=progress, init=init, **kwargs)


def figures(result: Fit, out: Path) -> list[Path]:
    from hierax.present.plots import plot_forest, plot_pair, plot_trace, save_figure

    true = truth()
    return [
        save_figure(plot_forest(result, HYPERPARAMETERS, truth=true), out / "forest.png"),
        save_figure(
            plot_pair(result, ["mu_r", "ln_std_r", "r"], truth=true, coords={"obs": [0, 1, 2]}),
            out / "pair.png",
        ),
        save_figure(plot_trace(result, HYPERPARAMETERS), out / "trace.png"),
    ]
