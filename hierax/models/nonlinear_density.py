"""The NumPyro density of a nonlinear model, built from its description alone.

A nonlinear description (``kind == "nonlinear"``) holds one
:class:`~hierax.models.description.Parameter` per parameter of its expression:
a linear predictor mapped through a transform, or a per-row latent value with
a population distribution. :func:`parameter_values` samples the parameters
that have a predictor (the plain density and the collapsed ones of
:mod:`hierax.inference.marginal` share it, so their sites are the same);
:func:`nonlinear_density` adds the latent values, the expression and the
likelihood (a family, or a measurement model such as a calibration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpyro

from hierax.errors import ModelError
from hierax.models.build import linear_predictor, sample_site, stacked_coefficient_priors
from hierax.models.description import ModelDescription, Parameter
from hierax.models.families import LINKS
from hierax.models.priors import Prior

__all__ = [
    "likelihood_parameters",
    "nonlinear_density",
    "own_parameters",
    "parameter_value",
    "parameter_values",
    "stacked_priors",
]


def stacked_priors(description: ModelDescription) -> dict[str, dict[str, Any]]:
    """Per parameter with a predictor, the vector priors of its wide fixed terms."""
    return {
        name: stacked_coefficient_priors(parameter.predictor, description.priors)
        for name, parameter in description.parameters.items()
        if parameter.predictor is not None
    }


def parameter_value(
    name: str,
    parameter: Parameter,
    priors: Mapping[str, Prior],
    data: Mapping[str, Any],
    coefficient_priors: Mapping[str, Any] | None = None,
) -> Any:
    """Sample one parameter's linear predictor and return its value per row (transformed).

    A constant parameter whose intercept site has another name (a link, bounds
    or a family parameter) keeps its value under its own name as well.
    """
    predictor = parameter.predictor
    assert predictor is not None, f"parameter {name!r} has no linear predictor"
    eta = linear_predictor(predictor, priors, data, coefficient_priors=coefficient_priors)
    value = parameter.transform(eta)
    if predictor.intercept_name != name and predictor.constant:
        numpyro.deterministic(name, value[0])
    return value


def parameter_values(
    description: ModelDescription,
    data: Mapping[str, Any],
    coefficient_priors: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Sample every parameter that has a linear predictor (NumPyro sites), keyed by name.

    Also holds the data columns the expression uses. ``coefficient_priors``
    (:func:`stacked_priors`) saves stacking the wide terms' priors again.
    """
    env: dict[str, Any] = {c: data[c] for c in description.data_columns}
    for name, parameter in description.parameters.items():
        if parameter.predictor is None:
            continue
        stacked = None if coefficient_priors is None else coefficient_priors[name]
        env[name] = parameter_value(name, parameter, description.priors, data, stacked)
    return env


def own_parameters(description: ModelDescription) -> list[str]:
    """The likelihood's own parameters: the measurement's, else the family's estimated ones."""
    if description.measurement is not None:
        return list(description.theta_names)
    return list(description.response.aux)


def likelihood_parameters(
    description: ModelDescription, env: Mapping[str, Any], names: list[str]
) -> dict[str, Any]:
    """Each of ``names``: the value of its sub-formula, else its own sample site."""
    parameters = description.parameters
    return {
        t: env[t]
        if t in parameters and parameters[t].predictor is not None
        else sample_site(t, description.priors[t])
        for t in names
    }


def nonlinear_density(description: ModelDescription) -> Callable[..., None]:
    """The NumPyro model function of a nonlinear description (its plain density).

    Takes the description's data as keyword arguments (the response under its
    column name, ``X_<p>``, ``index_<g>``, ``Z_<g>``, the expression's data
    columns, optional ``se``/``trials``); without the response, ``_n`` sizes
    the rows, and ``_predict`` records the mean as ``mu``. Its name is
    ``nonlinear_model[<label>]``.
    """
    response = description.response
    name = response.name
    coefficient_priors = stacked_priors(description)
    latents = description.latents
    expression = description.expression
    measurement = description.measurement
    identity = LINKS["identity"]

    def model(**data: Any) -> None:
        n = data[name].shape[0] if data.get(name) is not None else data["_n"]
        if description.distributional and response.se is not None:
            raise ModelError("a distributional sigma cannot be combined with se().")
        env = parameter_values(description, data, coefficient_priors)
        with numpyro.plate("obs", n):
            for latent_name, parameter in latents.items():
                assert parameter.latent is not None
                env[latent_name] = numpyro.sample(latent_name, parameter.latent.build(env))
        mean = (
            numpyro.deterministic("mu", expression(env))
            if data.get("_predict")
            else expression(env)
        )
        if measurement is not None:
            theta = likelihood_parameters(description, env, list(description.theta_names))
            likelihood = measurement.distribution(mean, theta)
            with numpyro.plate("obs", n):
                numpyro.sample(name, likelihood, obs=data.get(name))
            return
        aux = likelihood_parameters(description, env, list(response.aux))
        likelihood = response.family.likelihood(
            mean, identity, aux, se=data.get("se"), trials=data.get("trials")
        )
        with numpyro.plate("obs", n):
            numpyro.sample(name, likelihood, obs=data.get(name))

    model.__name__ = f"nonlinear_model[{description.label}]"
    return model
