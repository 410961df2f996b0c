"""The seed workflows, runnable on their embedded data.

Each module exposes ``NAME``, ``TITLE``, ``HYPERPARAMETERS``, ``model``,
``load_data()``, ``truth()``, ``setup()`` (the arguments of :func:`hierax.fit`),
``fit(seed, quick)`` and ``figures(fit, out)``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

NAMES = (
    "calibration",
    "crossed",
    "regression",
    "parallax",
    "binaries",
    "crossed_formula",
    "regression_formula",
)


def get(name: str) -> ModuleType:
    """The example module called ``name``."""
    if name not in NAMES:
        from ..errors import close_matches

        raise KeyError(
            f"unknown example {name!r}; choose from {list(NAMES)}.{close_matches(name, NAMES)}"
        )
    return import_module(f"hierax.examples.{name}")
