"""The model description: what every front-end produces and every engine reads.

Front-ends (formula models, nonlinear models, calibration as observation
model, spec files) turn a table and the user's words into these frozen
dataclasses; the inference engines (Gaussian collapse, latent quadrature,
conditionally linear parameters, the independence sampler, NUTS) read only
them and never a front-end. The linear structure stays visible: fixed design
columns, and per group term its covariates, an integer level index, the
levels, correlation and centering. Adding a family, a term or an integration
method means adding to this description and to one planner.

A NumPyro model function written by hand stays the escape hatch: it is
described only by its trace (:mod:`hierax.models.model_info`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hierax.models.families import Family, Link
from hierax.models.priors import Prior

__all__ = [
    "FixedTerm",
    "GroupTerm",
    "LatentDistribution",
    "LinearPredictor",
    "Measurement",
    "ModelDescription",
    "Parameter",
    "Response",
]


@dataclass(frozen=True)
class FixedTerm:
    """A fixed-effects term: its name, its columns of X and their labels.

    A term of width 1 is the site ``b_<name>``; a wider one (a categorical
    predictor) is a vector site ``b_<name>`` whose per-column priors are keyed
    ``b_<prefix><label>``.
    """

    name: str
    columns: slice
    labels: tuple[str, ...]

    @property
    def width(self) -> int:
        return int(self.columns.stop - self.columns.start)


@dataclass(frozen=True, eq=False)
class GroupTerm:
    """One group term: the level of each row, the term's covariates and its coding.

    Sites: ``sd_<name>`` (and ``L_cor_<name>``/``cor_<name>`` when correlated),
    the level effects ``r_<name>`` and, non-centered, their offsets ``z_<name>``.
    Effects are gathered by integer index (``effects[index]``), never through a
    one-hot matrix.
    """

    name: str
    dim: str
    levels: tuple[Any, ...]
    index: np.ndarray  # (n,) int; -1 for a level unseen in fitting (prediction only)
    Z: np.ndarray  # (n, k)
    coef_names: tuple[str, ...]
    correlated: bool
    centered: bool
    zero_sum: bool = False

    @property
    def n_coef(self) -> int:
        return int(self.Z.shape[1])

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass(frozen=True, eq=False)
class LinearPredictor:
    """A linear predictor as explicit blocks: ``X @ b + offset + sum_g Z_g * r_g[index_g]``.

    ``x_key`` names the data argument that holds ``X`` (``"X"`` for a formula
    model's mean, ``"X_<p>"`` for a nonlinear parameter ``p``);
    ``intercept_name`` is the site of the intercept; ``prefix`` prefixes the
    per-column prior keys of wide fixed terms; ``per_level`` maps a varying
    intercept's group name to the site holding intercept + offset per level.
    """

    X: np.ndarray
    fixed_terms: tuple[FixedTerm, ...]
    intercept: bool
    groups: tuple[GroupTerm, ...]
    offset: np.ndarray | None = None
    x_key: str = "X"
    intercept_name: str = "Intercept"
    prefix: str = ""
    per_level: Mapping[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def constant(self) -> bool:
        """Only an intercept: one value for every row."""
        return not self.fixed_terms and not self.groups


@dataclass(frozen=True, eq=False)
class Response:
    """The observed column, its family and link, and per-row known values.

    ``aux`` lists the family parameters that are estimated (a known ``se()``
    replaces gaussian's sigma).
    """

    name: str
    y: np.ndarray
    family: Family
    link: Link
    aux: tuple[str, ...]
    se: np.ndarray | None = None
    trials: np.ndarray | None = None


class LatentDistribution(Protocol):
    """The population distribution of a per-row latent parameter.

    ``name`` is the distribution's name (``"Normal"``), ``arguments`` its
    arguments as expressions of other parameters, ``names`` every name they use.
    """

    @property
    def name(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def arguments(self) -> tuple[tuple[str, Any], ...]: ...

    @property
    def names(self) -> set[str]: ...

    def build(self, env: Mapping[str, Any]) -> Any: ...


class Measurement(Protocol):
    """An observation model from the process value to the readout (a calibration)."""

    def distribution(self, value: Any, theta: Mapping[str, Any]) -> Any: ...


@dataclass(frozen=True, eq=False)
class Parameter:
    """One parameter of a nonlinear expression.

    Either a linear predictor mapped through ``transform`` (``identity`` when
    the map is the identity, so the parameter is affine in its coefficients),
    or, with ``latent``, a value per row drawn from a population distribution.
    """

    name: str
    predictor: LinearPredictor | None
    transform: Callable[[Any], Any]
    identity: bool
    formula: str | None = None
    latent: LatentDistribution | None = None


@dataclass(frozen=True, eq=False)
class ModelDescription:
    """Everything the inference engines need of one model, and nothing of its front-end.

    Attributes
    ----------
    kind
        ``"formula"`` (``predictor`` is the mean's linear predictor) or
        ``"nonlinear"`` (``parameters`` feed ``expression``).
    response
        The observed column, family, link and per-row known values.
    priors
        Every prior in effect by site name, as data (:class:`~hierax.models.priors.Prior`).
    density
        The NumPyro model function of the plain (uncollapsed) model built from
        this description; its sites define the fit's variables.
    data
        The keyword arrays of ``density``.
    coords, dims
        Names of dimensions and their coordinates, per site and data argument.
    expression
        The nonlinear expression (a callable of the parameter values), or None.
    data_columns
        Table columns the expression uses directly.
    measurement, theta_names
        The observation model (a calibration) and its parameter names.
    distributional
        Family (or measurement) parameters that have their own sub-formula.
    label
        A readable name of the model (its formula).
    """

    kind: str
    response: Response
    priors: Mapping[str, Prior]
    density: Callable[..., None]
    data: Mapping[str, Any]
    coords: Mapping[str, Sequence[Any]]
    dims: Mapping[str, Sequence[str]]
    predictor: LinearPredictor | None = None
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    expression: Any = None
    data_columns: tuple[str, ...] = ()
    measurement: Measurement | None = None
    theta_names: tuple[str, ...] = ()
    distributional: tuple[str, ...] = ()
    label: str = "model"

    @property
    def groups(self) -> tuple[GroupTerm, ...]:
        """Every group term of every linear predictor."""
        predictors = [self.predictor] if self.predictor is not None else []
        predictors += [p.predictor for p in self.parameters.values() if p.predictor is not None]
        return tuple(g for predictor in predictors for g in predictor.groups)

    @property
    def latents(self) -> dict[str, Parameter]:
        """The per-row latent parameters, by name."""
        return {n: p for n, p in self.parameters.items() if p.latent is not None}
