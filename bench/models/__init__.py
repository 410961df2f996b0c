"""One module per benchmark workflow: data + the same model in every tool.

Each module defines

* ``NAME``, ``TITLE``, ``load()`` (a DataFrame),
* ``hierax_model(table, **kw)`` (an ``hx.Model`` from the formula/nonlinear API),
  ``hierax_fit_kwargs(table)`` (e.g. initial values) and ``hierax_reported(raw)``,
* ``numpyro_model`` + ``numpyro_data(table)`` (NumPyro written directly),
* ``pymc_model(table)`` (used by PyMC NUTS and by nutpie),
* ``STAN_CODE`` + ``stan_data(table)``,
* ``init_values(table)`` (peer start values in the peers' names, or ``None``),
* ``peer_reported(raw)``: the common reported parameters from a peer's draws.

``*_reported`` map a tool's raw draws ``{name: array (chain, draw, ...)}`` to
the common reported parameters, so that every tool is diagnosed and compared
on the same quantities.
"""

from __future__ import annotations

import importlib
from types import ModuleType

MODELS = [
    "crossed",
    "regression",
    "calibration",
    "sleepstudy",
    "radon",
    "parallax",
    "binaries",
    "herds",
    "counts",
]


def get(name: str) -> ModuleType:
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; choose from {MODELS}")
    return importlib.import_module(f"bench.models.{name}")
