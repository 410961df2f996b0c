"""hierax: hierarchical (multilevel) Bayesian models on JAX.

Importing hierax configures JAX before first use: 64-bit floats (set
``HIERAX_PRECISION=float32`` to switch) and one virtual CPU device per core
(at least four) so that chains run in parallel. Compiled programs are cached
on disk (``~/.cache/hierax/jax``; ``HIERAX_COMPILATION_CACHE=""`` turns this
off), so refitting a model skips compilation.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._runtime import configure_jax as _configure_jax
from ._runtime import enable_compilation_cache, set_precision

_configure_jax()
enable_compilation_cache()  # repeated fits of the same model skip XLA compilation

import warnings as _warnings  # noqa: E402

with _warnings.catch_warnings():
    # ArviZ announces its 1.0 refactor on import; hierax pins 0.23.x.
    _warnings.simplefilter("ignore", FutureWarning)
    import arviz as _arviz  # noqa: F401

from .convergence import Finding, check_convergence  # noqa: E402
from .data import factorize, read_table  # noqa: E402
from .errors import (  # noqa: E402
    ConvergenceWarning,
    DataError,
    FileFormatError,
    HieraxError,
    InitializationError,
    ModelError,
    SamplingError,
)
from .fit import Fit, fit, load  # noqa: E402
from .model import Model  # noqa: E402
from .nonlinear import NonlinearModel, latent, param  # noqa: E402
from .sbc import SBCResult, sbc  # noqa: E402

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FileFormatError",
    "Finding",
    "Fit",
    "HieraxError",
    "InitializationError",
    "Model",
    "ModelError",
    "NonlinearModel",
    "SBCResult",
    "SamplingError",
    "__version__",
    "check_convergence",
    "enable_compilation_cache",
    "factorize",
    "fit",
    "latent",
    "load",
    "param",
    "read_table",
    "sbc",
    "set_precision",
]
