"""Noise models of calibration models: the distribution of a readout around the
predicted mean ``mu``, with a scale that may depend on ``mu``.

The scale is a polynomial of ``mu`` (as in calibr8): with ``scale_degree=0`` it
is one constant parameter (``sigma``), with ``scale_degree=1`` it is
``sigma_0 + sigma_1 * mu``, and so on. The distributions are NumPyro's, so the
same object serves the maximum-likelihood objective, grid inference and the
observation site of a NumPyro model; :meth:`NoiseModel.log_prob` adds what
NumPyro leaves to its argument validation: ``-inf`` outside the support and for
invalid parameters (a non-positive scale), with gradients that stay finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from scipy import stats

from hierax.calibration.mean_functions import polynomial
from hierax.errors import ModelError, close_matches

__all__ = [
    "LaplaceNoise",
    "LogNormalNoise",
    "NOISE_MODELS",
    "NoiseModel",
    "NormalNoise",
    "PoissonNoise",
    "StudentTNoise",
    "noise_model",
]


@dataclass(frozen=True)
class NoiseModel:
    """Base class: a family of readout distributions around ``mu``.

    Subclasses set ``name``, ``scale_name``, ``extra_names`` and
    ``parameter_names`` and implement ``_distribution``, ``_valid``,
    ``_support`` and ``scipy``.
    """

    scale_degree: int = 0

    name: ClassVar[str] = ""
    scale_name: ClassVar[str | None] = "sigma"
    extra_names: ClassVar[tuple[str, ...]] = ()
    parameter_names: ClassVar[tuple[str, ...]] = ()  # what predict_dependent returns
    #: False for a log density with kinks in ``mu`` (Laplace): maximum-likelihood
    #: standard errors then come from the scores, not the Hessian.
    twice_differentiable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not isinstance(self.scale_degree, int | np.integer) or self.scale_degree < 0:
            raise ModelError(
                f"scale_degree of the {self.name} noise must be an integer >= 0, "
                f"got {self.scale_degree!r}."
            )

    # ---------------------------------------------------------------- names
    @property
    def scale_names(self) -> tuple[str, ...]:
        if self.scale_name is None:
            return ()
        if self.scale_degree == 0:
            return (self.scale_name,)
        return tuple(f"{self.scale_name}_{i}" for i in range(self.scale_degree + 1))

    @property
    def theta_names(self) -> tuple[str, ...]:
        """Names of the noise parameters, appended to the mean function's."""
        return self.scale_names + self.extra_names

    # ------------------------------------------------------------- parameters
    def scale(self, mu: Any, noise_theta: Sequence[Any]) -> jax.Array:
        """The scale at ``mu``: a polynomial of ``mu`` in the scale parameters."""
        return polynomial(mu, list(noise_theta[: len(self.scale_names)]))

    def parameters(self, mu: Any, noise_theta: Sequence[Any]) -> tuple[jax.Array, ...]:
        """Distribution parameters at ``mu`` (``parameter_names`` gives their names)."""
        mu = jnp.asarray(mu)
        extra = tuple(jnp.asarray(t) for t in noise_theta[len(self.scale_names) :])
        return (mu, self.scale(mu, noise_theta), *extra)

    def distribution(self, mu: Any, noise_theta: Sequence[Any]) -> dist.Distribution:
        """The NumPyro distribution of a readout at ``mu``."""
        return self._distribution(self.parameters(mu, noise_theta))

    # ----------------------------------------------------------------- density
    def log_prob(self, y: Any, mu: Any, noise_theta: Sequence[Any]) -> jax.Array:
        """Elementwise log density of ``y``; ``-inf`` outside the support or for invalid
        parameters (e.g. a scale polynomial that is not positive at ``mu``)."""
        y = jnp.asarray(y)
        params = jnp.broadcast_arrays(*self.parameters(mu, noise_theta))
        valid = self._valid(params)
        inside = self._support(y) & jnp.isfinite(y)
        # substitute harmless values where invalid, so neither value nor gradient is NaN
        safe = tuple(jnp.where(valid, p, 1.0) for p in params)
        safe_y = jnp.where(inside, y, 1.0)
        log_density = self._distribution(safe).log_prob(safe_y)
        return jnp.where(valid & inside, log_density, -jnp.inf)

    def sample(self, key: jax.Array, mu: Any, noise_theta: Sequence[Any]) -> jax.Array:
        """One random readout per element of ``mu``."""
        return self.distribution(mu, noise_theta).sample(key)

    # ----------------------------------------------------------------- family
    def _distribution(self, params: Sequence[Any]) -> dist.Distribution:
        raise NotImplementedError

    def _valid(self, params: Sequence[Any]) -> jax.Array:
        mu, scale = params[0], params[1]
        return jnp.isfinite(mu) & (scale > 0) & jnp.isfinite(scale)

    def _support(self, y: jax.Array) -> jax.Array:
        return jnp.ones(jnp.shape(y), dtype=bool)

    def scipy(self, params: Sequence[Any]) -> Any:
        """The equivalent frozen ``scipy.stats`` distribution (for plots and tests)."""
        raise NotImplementedError


@dataclass(frozen=True)
class NormalNoise(NoiseModel):
    """Normal readouts: ``y ~ Normal(mu, sigma(mu))``."""

    name: ClassVar[str] = "normal"
    scale_name: ClassVar[str | None] = "sigma"
    parameter_names: ClassVar[tuple[str, ...]] = ("mu", "sigma")

    def _distribution(self, params: Sequence[Any]) -> dist.Distribution:
        return dist.Normal(params[0], params[1])

    def scipy(self, params: Sequence[Any]) -> Any:
        return stats.norm(loc=np.asarray(params[0]), scale=np.asarray(params[1]))


@dataclass(frozen=True)
class StudentTNoise(NoiseModel):
    """Student-t readouts (robust to outliers): ``y ~ StudentT(df, mu, scale(mu))``."""

    name: ClassVar[str] = "studentt"
    scale_name: ClassVar[str | None] = "scale"
    extra_names: ClassVar[tuple[str, ...]] = ("df",)
    parameter_names: ClassVar[tuple[str, ...]] = ("mu", "scale", "df")

    def _distribution(self, params: Sequence[Any]) -> dist.Distribution:
        return dist.StudentT(params[2], params[0], params[1])

    def _valid(self, params: Sequence[Any]) -> jax.Array:
        df = params[2]
        return super()._valid(params) & (df > 0) & jnp.isfinite(df)

    def scipy(self, params: Sequence[Any]) -> Any:
        mu, scale, df = (np.asarray(p) for p in params)
        return stats.t(df=df, loc=mu, scale=scale)


@dataclass(frozen=True)
class LaplaceNoise(NoiseModel):
    """Laplace (double exponential) readouts: ``y ~ Laplace(mu, scale(mu))``."""

    name: ClassVar[str] = "laplace"
    scale_name: ClassVar[str | None] = "scale"
    parameter_names: ClassVar[tuple[str, ...]] = ("mu", "scale")
    twice_differentiable: ClassVar[bool] = False

    def _distribution(self, params: Sequence[Any]) -> dist.Distribution:
        return dist.Laplace(params[0], params[1])

    def scipy(self, params: Sequence[Any]) -> Any:
        return stats.laplace(loc=np.asarray(params[0]), scale=np.asarray(params[1]))


@dataclass(frozen=True)
class LogNormalNoise(NoiseModel):
    """Log-normal readouts: ``log y ~ Normal(log mu, sigma(mu))``.

    ``mu`` is the *median* of the readout (not its mean) and ``sigma`` the sd of
    ``log y``, so a constant ``sigma`` is a constant relative error.
    """

    name: ClassVar[str] = "lognormal"
    scale_name: ClassVar[str | None] = "sigma"
    parameter_names: ClassVar[tuple[str, ...]] = ("median", "sigma")

    def _distribution(self, params: Sequence[Any]) -> dist.Distribution:
        return dist.LogNormal(jnp.log(params[0]), params[1])

    def _valid(self, params: Sequence[Any]) -> jax.Array:
        return super()._valid(params) & (params[0] > 0)

    def _support(self, y: jax.Array) -> jax.Array:
        return y > 0

    def scipy(self, params: Sequence[Any]) -> Any:
        return stats.lognorm(s=np.asarray(params[1]), scale=np.asarray(params[0]))


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Poisson counts: ``y ~ Poisson(mu)``; no noise parameters."""

    name: ClassVar[str] = "poisson"
    scale_name: ClassVar[str | None] = None
    parameter_names: ClassVar[tuple[str, ...]] = ("mu",)

    def parameters(self, mu: Any, noise_theta: Sequence[Any]) -> tuple[jax.Array, ...]:
        return (jnp.asarray(mu),)

    def _distribution(self, params: Sequence[Any]) -> dist.Distribution:
        return dist.Poisson(params[0])

    def _valid(self, params: Sequence[Any]) -> jax.Array:
        return jnp.isfinite(params[0]) & (params[0] >= 0)

    def _support(self, y: jax.Array) -> jax.Array:
        return (y >= 0) & (y == jnp.round(y))

    def scipy(self, params: Sequence[Any]) -> Any:
        return stats.poisson(np.asarray(params[0]))


_FAMILIES: dict[str, type[NoiseModel]] = {
    cls.name: cls
    for cls in (NormalNoise, StudentTNoise, LaplaceNoise, LogNormalNoise, PoissonNoise)
}
_ALIASES = {
    "student_t": "studentt",
    "t": "studentt",
    "gaussian": "normal",
    "log_normal": "lognormal",
}
NOISE_MODELS = tuple(_FAMILIES)


def noise_model(name: str, scale_degree: int = 0) -> NoiseModel:
    """A noise model by name.

    Parameters
    ----------
    name : {"normal", "studentt", "laplace", "lognormal", "poisson"}
    scale_degree : int
        Degree of the polynomial of ``mu`` that gives the scale (0: constant).
        Ignored for ``"poisson"``, which has no scale.
    """
    key = _ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key not in _FAMILIES:
        raise ModelError(
            f"unknown noise model {name!r}; choose from {list(NOISE_MODELS)}."
            f"{close_matches(str(name), NOISE_MODELS)}"
        )
    cls = _FAMILIES[key]
    return cls() if cls is PoissonNoise else cls(scale_degree=scale_degree)
