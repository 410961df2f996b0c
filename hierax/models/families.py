"""Response families and link functions for formula models, declared as data.

Each family says which links it accepts, which auxiliary parameters it has
(with their default priors) and which response values are possible; the
likelihood is built from the mean on the response scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from hierax.errors import DataError, ModelError, close_matches

__all__ = ["Family", "Link", "LINKS", "FAMILIES", "get_family"]


@dataclass(frozen=True)
class Link:
    """A link function ``eta = link(mu)`` with its inverse ``mu = inverse(eta)``."""

    name: str
    forward: Callable[[Any], Any]
    inverse: Callable[[Any], Any]


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: mu, lambda eta: eta),
    "log": Link("log", jnp.log, jnp.exp),
    "logit": Link("logit", jax.scipy.special.logit, jax.nn.sigmoid),
    "probit": Link("probit", jax.scipy.special.ndtri, jax.scipy.stats.norm.cdf),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta),
}


def _integers(y: np.ndarray) -> bool:
    return bool(np.all(np.equal(np.mod(y, 1), 0)))


@dataclass(frozen=True)
class Family:
    """A response distribution.

    Attributes
    ----------
    name : str
    links : tuple of str
        Accepted links; the first is the default.
    aux : dict
        Auxiliary parameter name -> default prior (a prior string; ``{s}`` is
        replaced by the response's scale, see :mod:`hierax.models.priors`).
    """

    name: str
    links: tuple[str, ...]
    aux: Mapping[str, str] = field(default_factory=dict)
    discrete: bool = False

    def support(self, name: str) -> Any:
        """The support (a NumPyro constraint) of auxiliary parameter ``name``."""
        return AUX_SUPPORT.get(name, constraints.positive)

    def likelihood(
        self,
        eta: Any,
        link: Link,
        aux: Mapping[str, Any],
        *,
        se: Any = None,
        trials: Any = None,
    ) -> dist.Distribution:
        """The response distribution given the linear predictor ``eta``."""
        name = self.name
        if name == "gaussian":
            scale = se if se is not None else aux["sigma"]
            return dist.Normal(link.inverse(eta), scale)
        if name == "student_t":
            return dist.StudentT(aux["nu"], link.inverse(eta), aux["sigma"])
        if name == "bernoulli":
            if link.name == "logit":
                return dist.BernoulliLogits(eta)
            return dist.BernoulliProbs(jnp.clip(link.inverse(eta), 1e-12, 1 - 1e-12))
        if name == "binomial":
            if link.name == "logit":
                return dist.BinomialLogits(eta, total_count=trials)
            return dist.BinomialProbs(
                jnp.clip(link.inverse(eta), 1e-12, 1 - 1e-12), total_count=trials
            )
        if name == "poisson":
            return dist.Poisson(link.inverse(eta))
        if name == "negative_binomial":
            return dist.NegativeBinomial2(link.inverse(eta), aux["phi"])
        if name == "gamma":
            mean = link.inverse(eta)
            return dist.Gamma(aux["shape"], aux["shape"] / mean)
        if name == "lognormal":
            return dist.LogNormal(link.inverse(eta), aux["sigma"])
        if name == "beta":
            mean = link.inverse(eta)
            return dist.Beta(mean * aux["phi"], (1.0 - mean) * aux["phi"])
        raise ModelError(f"family {name!r} has no likelihood")  # pragma: no cover

    def check_response(self, y: np.ndarray, column: str, trials: np.ndarray | None = None) -> None:
        """Raise :class:`DataError` naming the column and rows when ``y`` is impossible."""
        bad = np.zeros(y.shape, dtype=bool)
        what = ""
        if self.name == "bernoulli":
            bad = ~np.isin(y, [0, 1])
            what = "0 or 1"
        elif self.name == "binomial":
            assert trials is not None
            bad = (y < 0) | (y > trials) | ~np.equal(np.mod(y, 1), 0)
            what = "integers between 0 and the number of trials"
        elif self.name in ("poisson", "negative_binomial"):
            bad = (y < 0) | ~np.equal(np.mod(y, 1), 0)
            what = "non-negative integers (counts)"
        elif self.name in ("gamma", "lognormal"):
            bad = y <= 0
            what = "positive"
        elif self.name == "beta":
            bad = (y <= 0) | (y >= 1)
            what = "strictly between 0 and 1"
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataError(
                f"response column {column!r} must be {what} for the {self.name} family, but "
                f"{rows.size} row(s) are not (first rows {rows[:5].tolist()}, values "
                f"{y[rows[:5]].tolist()}). Choose another family or fix the data."
            )


#: Supports of the auxiliary parameters: a scale (sigma), degrees of freedom (nu),
#: a precision or dispersion (phi) and a gamma shape are all positive.
AUX_SUPPORT: dict[str, Any] = {
    "sigma": constraints.positive,
    "nu": constraints.positive,
    "phi": constraints.positive,
    "shape": constraints.positive,
}

FAMILIES: dict[str, Family] = {
    "gaussian": Family(
        "gaussian", ("identity", "log", "inverse"), {"sigma": "Exponential(1 / {s})"}
    ),
    "student_t": Family(
        "student_t",
        ("identity", "log", "inverse"),
        {"sigma": "Exponential(1 / {s})", "nu": "Gamma(2, 0.1)"},
    ),
    "bernoulli": Family("bernoulli", ("logit", "probit"), discrete=True),
    "binomial": Family("binomial", ("logit", "probit"), discrete=True),
    "poisson": Family("poisson", ("log", "identity"), discrete=True),
    "negative_binomial": Family(
        "negative_binomial", ("log", "identity"), {"phi": "Gamma(2, 0.1)"}, discrete=True
    ),
    "gamma": Family("gamma", ("log", "inverse", "identity"), {"shape": "Gamma(2, 0.1)"}),
    "lognormal": Family("lognormal", ("identity",), {"sigma": "Exponential(1)"}),
    "beta": Family("beta", ("logit", "probit"), {"phi": "Gamma(2, 0.1)"}),
}
_ALIASES = {
    "normal": "gaussian",
    "studentt": "student_t",
    "t": "student_t",
    "negbinomial": "negative_binomial",
}


def get_family(name: str, link: str | None = None) -> tuple[Family, Link]:
    """Look up a family (and link), with errors that list the choices."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in FAMILIES:
        raise ModelError(
            f"unknown family {name!r}; choose from {sorted(FAMILIES)}."
            f"{close_matches(name, FAMILIES)}"
        )
    family = FAMILIES[key]
    link_name = link or family.links[0]
    if link_name not in family.links:
        raise ModelError(
            f"the {family.name} family does not take the {link_name!r} link; use one of "
            f"{list(family.links)}."
        )
    return family, LINKS[link_name]
