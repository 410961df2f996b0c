"""The seed workflows, runnable on their embedded data.

Each module exposes ``NAME``, ``TITLE``, ``HYPERPARAMETERS``, ``model``,
``load_data()``, ``truth()``, ``setup()`` (the arguments of :func:`hierax.fit`),
``fit(seed, quick)`` and ``figures(fit, out)``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

#: The five seed workflows, run by ``hierax demo`` by default.
NAMES = ("calibration", "crossed", "regression", "parallax", "binaries")
#: The same workflows written with formulas, a nonlinear formula or a calibration model:
#: ``hierax demo crossed_formula`` or ``hierax demo --all``.
EXTRA_NAMES = (
    "crossed_formula",
    "regression_formula",
    "calibration_nl",
    "parallax_nl",
    "binaries_nl",
    "calibration_cal",
)
ALL_NAMES = NAMES + EXTRA_NAMES


def get(name: str) -> ModuleType:
    """The example module called ``name``."""
    if name not in ALL_NAMES:
        from hierax.errors import close_matches

        raise KeyError(
            f"unknown example {name!r}; choose from {list(ALL_NAMES)}."
            f"{close_matches(name, ALL_NAMES)}"
        )
    return import_module(f"hierax.examples.{name}")
