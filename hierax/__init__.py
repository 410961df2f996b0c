"""hierax: hierarchical (multilevel) Bayesian models on JAX.

Importing hierax configures JAX before first use: 64-bit floats (set
``HIERAX_PRECISION=float32`` to switch) and one virtual CPU device per core
(at least four) so that chains run in parallel. Compiled programs are cached
on disk (``~/.cache/hierax/jax``; ``HIERAX_COMPILATION_CACHE=""`` turns this
off), so refitting a model skips compilation.
"""

from __future__ import annotations

from hierax.core.runtime import configure_jax as _configure_jax
from hierax.core.runtime import enable_compilation_cache, set_precision
from hierax.core.version import __version__

_configure_jax()
enable_compilation_cache()  # repeated fits of the same model skip XLA compilation

import warnings as _warnings  # noqa: E402

with _warnings.catch_warnings():
    # ArviZ announces its 1.0 refactor on import; hierax pins 0.23.x.
    _warnings.simplefilter("ignore", FutureWarning)
    import arviz as _arviz  # noqa: F401

from hierax.data import factorize, read_table  # noqa: E402
from hierax.diagnostics.convergence import Finding, check_convergence  # noqa: E402
from hierax.errors import (  # noqa: E402
    ConvergenceWarning,
    DataError,
    FileFormatError,
    HieraxError,
    InitializationError,
    ModelError,
    SamplingError,
)
from hierax.frontends.model import Model  # noqa: E402
from hierax.frontends.nonlinear import NonlinearModel, latent, param  # noqa: E402
from hierax.present import plots  # noqa: E402  (hx.plots.plot_ppc(fit), ...)
from hierax.results.fit import Fit, fit, load  # noqa: E402
from hierax.results.sbc import sbc  # noqa: E402
from hierax.results.sbc_result import SBCResult  # noqa: E402

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
    "plots",
    "read_table",
    "sbc",
    "set_precision",
]
