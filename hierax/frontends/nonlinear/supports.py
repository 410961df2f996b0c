"""Supports in nonlinear models: what a parameter's value, or a latent distribution's
argument, must satisfy, so that a prior or number outside it is refused when the
model is built (issue 16), on every inference path.

:class:`~hierax.frontends.nonlinear.NonlinearModel` checks each prior site against its
support (group sds positive, correlations LKJ, family and calibration noise
parameters as :func:`calibration_supports` says, coefficients real) and each
parameter that feeds a constrained argument (a distributional sigma, the
scale of a latent population) through its link, bounds or intercept prior.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from numpyro.distributions import constraints

from hierax.calibration.fitting import default_bounds
from hierax.errors import ModelError
from hierax.models.expression import Expression
from hierax.models.priors import (
    DISTRIBUTIONS,
    Prior,
    _number,
    argument_constraints,
    check_arguments,
    describe_support,
)

__all__ = ["BOUNDS", "LINK_RANGES", "as_constraint", "calibration_supports", "latent_arguments"]


def latent_arguments(
    name: str,
    args: tuple[Expression, ...],
    kwargs: tuple[tuple[str, Expression], ...],
    text: str,
    where: str,
) -> tuple[tuple[str, Expression], ...]:
    """Name each argument of a latent distribution and check those that are numbers.

    ``Normal(0, -1)`` is refused here, before sampling, as a prior string would be.
    """
    if name == "LKJ":
        return ()
    try:
        bound = inspect.signature(DISTRIBUTIONS[name]).bind_partial(*args, **dict(kwargs))
    except TypeError as error:
        raise ModelError(
            f"the latent distribution {text.strip()!r} of {where!r} does not fit "
            f"{name}'s arguments: {error}."
        ) from None
    arguments = tuple((k, v) for k, v in bound.arguments.items() if isinstance(v, Expression))
    table = argument_constraints(name)
    numbers: dict[str, float] = {}
    for argument, expression in arguments:
        if expression.names:
            continue  # a function of parameters: checked through their priors
        try:
            numbers[argument] = _number(expression.tree, text, f"the latent {where!r}")
        except ModelError:
            continue  # a function _number does not know (tanh(1)): left to NumPyro
        except (ArithmeticError, ValueError):
            raise ModelError(
                f"argument {argument!r} ({expression.text}) of the latent distribution "
                f"{text.strip()!r} of {where!r} cannot be computed; give a finite number."
            ) from None
    try:
        if numbers and len(numbers) == len(arguments):
            check_arguments(Prior(text=text, name=name, kwargs=tuple(numbers.items())))
        for argument, number in numbers.items():
            constraint = table.get(argument)
            if not math.isfinite(number) or (
                constraint is not None
                and not constraints.is_dependent(constraint)
                and not bool(np.all(constraint(np.asarray(number))))
            ):
                finite = math.isfinite(number) and constraint is not None
                must = describe_support(constraint) if finite else "a finite number"
                raise ValueError(f"{name}'s {argument} must be {must}, got {number:g}")
    except (TypeError, ValueError) as error:
        raise ModelError(
            f"invalid latent distribution {text.strip()!r} of {where!r}: {error}."
        ) from None
    return arguments


#: The range of each link's inverse (the identity's depends on the prior).
LINK_RANGES: dict[str, tuple[float, float]] = {
    "log": (0.0, math.inf),
    "logit": (0.0, 1.0),
    "probit": (0.0, 1.0),
}
BOUNDS = (("lower_bound", -math.inf), ("upper_bound", math.inf))


def as_constraint(low: float, high: float) -> Any:
    """``(low, high)`` as a NumPyro constraint (``(0, inf)`` is ``positive``)."""
    if low == 0.0 and high == math.inf:
        return constraints.positive
    if math.isinf(low) and math.isinf(high):
        return constraints.real
    if math.isinf(high):
        return constraints.greater_than(low)
    if math.isinf(low):
        return constraints.less_than(high)
    return constraints.interval(low, high)


def calibration_supports(measurement: Any) -> dict[str, Any]:
    """Supports of a calibration's parameters that are not real (a constant noise
    scale and degrees of freedom are positive), as its maximum-likelihood fit
    bounds them by default."""
    if measurement is None or not hasattr(measurement, "noise"):
        return {}
    bounds = default_bounds(measurement)
    return {
        name: as_constraint(low, high)
        for name, (low, high) in zip(measurement.theta_names, bounds, strict=True)
        if not (math.isinf(low) and math.isinf(high))
    }
