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


# ------------------------------------------------------------------ seed shift
#
# HIERAX_TEST_SEED_SHIFT=k reruns the suite with every seed that reaches hierax's
# samplers shifted by k. A CPU with another instruction set gives a chain another
# trajectory from the same seed; a shifted seed does the same on this machine. A
# statistical test must pass for any shift (it tests a property, not one chain):
#     for k in 1 2 3; do HIERAX_TEST_SEED_SHIFT=$k python -m pytest; done


def _shift_seeds(shift: int) -> None:
    import functools
    import sys

    from hierax.core import device as _device
    from hierax.inference import independence

    original_key = _device.prng_key

    @functools.wraps(original_key)
    def shifted_key(seed: int):
        return original_key(int(seed) + shift)

    for name, module in list(sys.modules.items()):
        if name.startswith("hierax") and getattr(module, "prng_key", None) is original_key:
            module.prng_key = shifted_key  # type: ignore[attr-defined]

    original_independence = independence.run_independence

    @functools.wraps(original_independence)
    def shifted_independence(*args, seed: int = 0, **kwargs):
        return original_independence(*args, seed=int(seed) + shift, **kwargs)

    independence.run_independence = shifted_independence


def pytest_sessionstart(session: pytest.Session) -> None:
    import os
    import signal

    # A shell without job control starts background commands with SIGINT ignored
    # (`pytest &`, nohup, some CI runners); the Ctrl-C tests need Python's usual
    # handler, in this process and (handled signals are reset on exec) in the
    # commands it starts.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    shift = int(os.environ.get("HIERAX_TEST_SEED_SHIFT", "0") or 0)
    if shift:
        import hierax.calibration.model  # noqa: F401  (modules that bind prng_key)
        import hierax.diagnostics.diagnose  # noqa: F401
        import hierax.frontends.model  # noqa: F401
        import hierax.inference.marginal.collapsed  # noqa: F401
        import hierax.inference.sampling  # noqa: F401
        import hierax.results.fit  # noqa: F401

        _shift_seeds(shift)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under a seed shift, skip the tests of seeding itself (``exact_seed``)."""
    import os

    if int(os.environ.get("HIERAX_TEST_SEED_SHIFT", "0") or 0):
        skip = pytest.mark.skip(reason="tests seeding itself; HIERAX_TEST_SEED_SHIFT is set")
        for item in items:
            if "exact_seed" in item.keywords:
                item.add_marker(skip)
