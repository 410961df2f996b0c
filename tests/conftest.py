"""Shared test settings: headless plots, quiet progress bars."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg", force=True)

import hierax  # noqa: E402,F401  (configures JAX: float64, CPU devices)


@pytest.fixture
def lowered_programs():
    """Names of the JAX programs lowered (about to be compiled) while the test runs."""
    from jax import monitoring

    names: list[str] = []

    def listen(event: str, duration: float, **kwargs: object) -> None:
        if "mlir" in event:
            names.append(str(kwargs.get("fun_name")))

    monitoring.register_event_duration_secs_listener(listen)
    yield names
    monitoring.unregister_event_duration_listener(listen)
