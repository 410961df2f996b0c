"""Shared test settings: headless plots, quiet progress bars."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import hierax  # noqa: E402,F401  (configures JAX: float64, CPU devices)
