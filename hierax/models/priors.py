"""Priors as data: parsing prior strings safely and the documented defaults.

A prior is given as a string such as ``"Normal(0, 5)"`` (usable from TOML) or
as a NumPyro distribution. Strings are parsed with :mod:`ast` (never ``eval``):
a distribution name from :data:`DISTRIBUTIONS` called with numeric arguments,
which may be simple arithmetic (``1 / 2.5``) and keywords (``low=0``).
"""

from __future__ import annotations

import ast
import inspect
import math
import numbers
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.distributions import constraints

from hierax.errors import ModelError, close_matches

__all__ = [
    "Prior",
    "DISTRIBUTIONS",
    "parse_prior",
    "check_correlation_size",
    "check_support",
    "prior_support",
]

#: Distributions a prior string may name.
DISTRIBUTIONS: dict[str, Callable[..., dist.Distribution]] = {
    "Normal": dist.Normal,
    "StudentT": dist.StudentT,
    "Cauchy": dist.Cauchy,
    "Laplace": dist.Laplace,
    "Logistic": dist.Logistic,
    "HalfNormal": dist.HalfNormal,
    "HalfCauchy": dist.HalfCauchy,
    "Exponential": dist.Exponential,
    "Gamma": dist.Gamma,
    "InverseGamma": dist.InverseGamma,
    "LogNormal": dist.LogNormal,
    "Weibull": dist.Weibull,
    "Beta": dist.Beta,
    "Uniform": dist.Uniform,
    "LogUniform": dist.LogUniform,
    "TruncatedNormal": dist.TruncatedNormal,
    "LKJ": dist.LKJCholesky,  # on a correlation matrix: LKJ(eta), parameterised by its Cholesky factor
}

_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "log": math.log,
    "exp": math.exp,
    "sqrt": math.sqrt,
}


@dataclass(frozen=True)
class Prior:
    """A prior: its display text and a factory for the NumPyro distribution.

    ``factory(dim)`` returns the distribution; ``dim`` is only used by LKJ
    (the size of the correlation matrix).
    """

    text: str
    name: str
    args: tuple[float, ...] = ()
    kwargs: tuple[tuple[str, float], ...] = ()
    distribution: dist.Distribution | None = None
    fixed: float | None = None  # a number instead of a distribution: the value is not estimated

    def build(self, dim: int | None = None) -> dist.Distribution:
        """The NumPyro distribution (argument checks on)."""
        if self.distribution is not None:
            return self.distribution
        if self.fixed is not None:
            raise ModelError("a fixed value has no distribution")
        if self.name == "LKJ":
            return dist.LKJCholesky(dim or 2, *self.args, **dict(self.kwargs))
        with numpyro.validation_enabled(True):
            return DISTRIBUTIONS[self.name](*self.args, **dict(self.kwargs))

    def __str__(self) -> str:
        return self.text


def _short(value: Any) -> str:
    array = np.asarray(value)
    return f"{array.item():.4g}" if array.size == 1 else f"array{array.shape}"


#: Prior strings longer than this are refused before parsing (the parser recurses).
MAX_PRIOR_LENGTH = 1000


def _number(node: ast.AST, text: str, where: str) -> float:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_number(node.operand, text, where))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](
            _number(node.left, text, where), _number(node.right, text, where)
        )
    if isinstance(node, ast.Name) and node.id in ("inf", "pi", "e"):
        return {"inf": math.inf, "pi": math.pi, "e": math.e}[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and len(node.args) == 1
    ):
        return _FUNCTIONS[node.func.id](_number(node.args[0], text, where))
    raise ModelError(
        f"prior {text!r} for {where}: arguments must be numbers (or arithmetic on numbers), "
        f"found {ast.unparse(node)!r}."
    )


def parse_prior(value: str | float | dist.Distribution | Prior, where: str) -> Prior:
    """Parse and validate a prior for parameter ``where``.

    A plain number fixes the parameter at that value (it is then not estimated).

    Raises
    ------
    ModelError
        For an unknown distribution (with close matches), a malformed string or
        invalid parameters (e.g. a negative scale); the message names ``where``.
    """
    if isinstance(value, Prior):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        number = float(value)
        if not math.isfinite(number):
            raise ModelError(
                f"the value {number} given for {where} is not finite; give a finite number to "
                "fix it, or a prior such as 'Normal(0, 1)' to estimate it."
            )
        return Prior(text=f"fixed at {number:g}", name="fixed", fixed=number)
    if isinstance(value, dist.Distribution):
        arguments = ", ".join(
            f"{key}={_short(getattr(value, key))}"
            for key in getattr(value, "arg_constraints", {})
            if hasattr(value, key)
        )
        return Prior(
            text=f"{type(value).__name__}({arguments})",
            name=type(value).__name__,
            distribution=value,
        )
    if not isinstance(value, str):
        raise ModelError(
            f"prior for {where} must be a string like 'Normal(0, 5)' or a NumPyro "
            f"distribution, got {type(value).__name__}."
        )
    text = value.strip()
    if len(text) > MAX_PRIOR_LENGTH:
        raise ModelError(
            f"the prior for {where} is {len(text)} characters long (at most "
            f"{MAX_PRIOR_LENGTH}); write it as 'Name(arg, ...)' with numbers."
        )
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ModelError(
            f"prior {text!r} for {where} is not of the form 'Name(arg, ...)', e.g. 'Normal(0, 5)'."
        ) from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise ModelError(f"prior {text!r} for {where} is not of the form 'Name(arg, ...)'.")
    name = tree.func.id
    if name not in DISTRIBUTIONS:
        raise ModelError(
            f"unknown distribution {name!r} in the prior for {where}; choose from "
            f"{sorted(DISTRIBUTIONS)}.{close_matches(name, DISTRIBUTIONS)}"
        )
    try:
        args = tuple(_number(arg, text, where) for arg in tree.args)
        kwargs = tuple((kw.arg or "", _number(kw.value, text, where)) for kw in tree.keywords)
    except (ArithmeticError, ValueError, RecursionError) as error:
        if isinstance(error, ModelError):
            raise
        problem = {
            ZeroDivisionError: "it divides by zero",
            OverflowError: "a number is too large for a float",
            RecursionError: "it is nested too deeply",
        }.get(type(error), f"{error} (e.g. log or sqrt of a negative number)")
        raise ModelError(
            f"cannot compute the arguments of prior {text!r} for {where}: {problem}."
        ) from None
    for label, number in [*((str(i + 1), a) for i, a in enumerate(args)), *kwargs]:
        if not math.isfinite(number):
            raise ModelError(
                f"prior {text!r} for {where}: argument {label} is {number}, but the arguments "
                "must be finite numbers."
            )
    prior = Prior(text=text, name=name, args=args, kwargs=kwargs)
    try:
        check_arguments(prior)
    except (ValueError, TypeError) as error:
        raise ModelError(f"invalid prior {text!r} for {where}: {error}") from None
    return prior


#: Argument constraints of distributions made by a function (no ``arg_constraints``).
_ARGUMENT_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "TruncatedNormal": {
        "loc": constraints.real,
        "scale": constraints.positive,
        "low": constraints.real,
        "high": constraints.real,
    },
}
#: Arguments that must be ordered, ``(lower, upper)``.
_ORDERED: dict[str, tuple[str, str]] = {
    "Uniform": ("low", "high"),
    "LogUniform": ("low", "high"),
    "TruncatedNormal": ("low", "high"),
}
_DESCRIPTIONS = {"Real": "a finite number", "Positive": "positive"}


def argument_constraints(name: str) -> dict[str, Any]:
    """The NumPyro constraint of each numeric argument of distribution ``name``.

    ``{"loc": constraints.real, "scale": constraints.positive}`` for Normal;
    Uniform's bounds are ``constraints.dependent``.
    """
    factory = DISTRIBUTIONS[name]
    table = getattr(factory, "arg_constraints", None) or _ARGUMENT_CONSTRAINTS.get(name, {})
    return dict(table)


def check_arguments(prior: Prior) -> None:
    """Raise ``TypeError`` or ``ValueError`` when ``prior``'s arguments are not valid.

    The distribution's own argument constraints (NumPyro's ``arg_constraints``),
    checked in NumPy: building the distribution to let it validate itself runs
    its JAX operations one by one, each a small compiled program (a model with
    an LKJ prior took 0.4 s to construct in a new process). Also checks what
    NumPyro does not: ``low < high`` for Uniform, LogUniform and TruncatedNormal.
    """
    factory = DISTRIBUTIONS[prior.name]
    dimension = (2,) if prior.name == "LKJ" else ()  # LKJ's first argument is the size
    bound = inspect.signature(factory).bind(*dimension, *prior.args, **dict(prior.kwargs))
    given = {k: v for k, v in bound.arguments.items() if k != "dimension"}
    table = argument_constraints(prior.name)
    ordered = _ORDERED.get(prior.name, ())
    for param, value in given.items():
        if param not in table and param not in ordered:
            raise TypeError(f"{prior.name} has no numeric parameter {param!r}")
        constraint = table.get(param)
        if constraint is None or constraints.is_dependent(constraint):
            continue
        if not np.all(constraint(np.asarray(value, dtype=float))):
            kind = type(constraint).__name__.lstrip("_")
            must = _DESCRIPTIONS.get(kind, f"in {constraint}")
            raise ValueError(f"{prior.name}'s {param} must be {must}, got {value:g}")
    if ordered and all(given.get(p) is not None for p in ordered):
        low, high = (given[p] for p in ordered)
        if not low < high:
            raise ValueError(
                f"{prior.name}'s {ordered[0]} ({low:g}) must be below {ordered[1]} ({high:g})"
            )


def prior_support(prior: Prior) -> Any:
    """The support of ``prior`` as a NumPyro constraint, without building the distribution.

    Distributions whose support depends on their arguments (Uniform,
    LogUniform, TruncatedNormal) get it from the parsed arguments, so that no
    JAX program is compiled.
    """
    if prior.distribution is not None:
        return prior.distribution.support
    if prior.fixed is not None:
        return None
    if prior.name == "LKJ":
        return constraints.corr_cholesky
    factory = DISTRIBUTIONS[prior.name]
    bound = inspect.signature(factory).bind(*prior.args, **dict(prior.kwargs))
    bound.apply_defaults()
    given = bound.arguments
    if prior.name in ("Uniform", "LogUniform"):
        low = given.get("low", 0.0 if prior.name == "Uniform" else None)
        high = given.get("high", 1.0 if prior.name == "Uniform" else None)
        return constraints.interval(low, high)
    if prior.name == "TruncatedNormal":
        low, high = given.get("low"), given.get("high")
        low = None if low is None or low == -math.inf else low
        high = None if high is None or high == math.inf else high
        if low is not None and high is not None:
            return constraints.interval(low, high)
        if low is not None:
            return constraints.greater_than(low)
        if high is not None:
            return constraints.less_than(high)
        return constraints.real
    support: Any = factory.support  # type: ignore[attr-defined]  # a class attribute of the rest
    return support


def _bounds(constraint: Any) -> tuple[float, float]:
    low = getattr(constraint, "lower_bound", -math.inf)
    high = getattr(constraint, "upper_bound", math.inf)
    return float(np.min(np.asarray(low, dtype=float))), float(np.max(np.asarray(high, dtype=float)))


def describe_support(constraint: Any) -> str:
    """A support in words: 'real', 'positive', '[0, 5]', 'correlation Cholesky factors'."""
    if constraint is constraints.real:
        return "real"
    if isinstance(constraint, type(constraints.corr_cholesky)):
        return "correlation Cholesky factors"
    if constraint is constraints.positive:
        return "positive"
    if constraint is constraints.nonnegative:
        return "non-negative"
    if getattr(constraint, "event_dim", 0) != 0 or getattr(constraint, "is_discrete", False):
        return str(constraint)
    low, high = _bounds(constraint)
    if math.isinf(low) and math.isinf(high):
        return "real"
    if math.isinf(high):
        return f"> {low:g}"
    if math.isinf(low):
        return f"< {high:g}"
    return f"[{low:g}, {high:g}]"


def _advice(prior: Prior, support: Any) -> str:
    if isinstance(support, type(constraints.corr_cholesky)):
        return "use LKJ(eta), e.g. LKJ(2)."
    if support is constraints.positive:
        scale = 1.0
        arguments = dict(zip(("loc", "scale"), prior.args, strict=False)) | dict(prior.kwargs)
        if prior.name in ("Normal", "Cauchy", "Laplace", "Logistic") and "scale" in arguments:
            scale = abs(arguments["scale"])
        return (
            f"use a prior on positive numbers such as HalfNormal({scale:g}), Exponential(1), "
            f"Gamma(2, 0.1) or TruncatedNormal(0, {scale:g}, low=0)."
        )
    return "use a prior whose support is inside the parameter's."


def check_correlation_size(prior: Prior, where: str, coef_names: Sequence[str]) -> None:
    """Raise a :class:`ModelError` unless a correlation prior is over matrices of the size
    of the coefficients it correlates (``LKJCholesky(3, ...)`` for three)."""
    if prior.distribution is None:
        return
    size = len(coef_names)
    if tuple(prior.distribution.event_shape) != (size, size):
        raise ModelError(
            f"prior {prior.text} for {where!r} is over {prior.distribution.event_shape} "
            f"matrices, but {where!r} correlates {size} coefficients {list(coef_names)}; "
            f"use LKJCholesky({size}, ...) or 'LKJ(2)'."
        )


def check_support(prior: Prior, where: str, support: Any) -> None:
    """Raise a :class:`ModelError` unless ``prior`` lives on ``support``.

    ``support`` is the parameter's NumPyro constraint: ``constraints.real``
    (coefficients), ``constraints.positive`` (standard deviations, sigma,
    shape and precision parameters) or ``constraints.corr_cholesky``
    (correlations). A prior must put all its mass inside that support: on a
    positive parameter HalfNormal, Exponential, Gamma, LogNormal,
    Uniform(0, 5) or TruncatedNormal(0, 1, low=0) are fine, Normal(0, 1) or
    Uniform(-1, 5) are not. A number fixing the parameter must lie inside it.
    """
    wanted = describe_support(support)
    correlation = isinstance(support, type(constraints.corr_cholesky))
    if prior.fixed is not None:
        if correlation:
            raise ModelError(
                f"{where!r} is fixed at {prior.fixed:g}, but a correlation cannot be fixed to "
                "a number; give it a prior instead, e.g. LKJ(2)."
            )
        low, high = _bounds(support)
        if not low < prior.fixed < high:
            raise ModelError(
                f"{where!r} is fixed at {prior.fixed:g}, but {where!r} must be {wanted}; fix it "
                "at a value in that range or give it a prior."
            )
        return
    given = prior_support(prior)
    if correlation:
        fits = isinstance(given, type(constraints.corr_cholesky))
    elif getattr(given, "event_dim", 0) != 0 or getattr(given, "is_discrete", False):
        fits = False
    else:
        low, high = _bounds(given)
        wanted_low, wanted_high = _bounds(support)
        fits = low >= wanted_low and high <= wanted_high
    if not fits:
        raise ModelError(
            f"prior {prior.text} for {where!r} has support {describe_support(given)} but "
            f"{where!r} must be {wanted}; {_advice(prior, support)}"
        )


def stack_priors(priors: list[Prior], where: str) -> dist.Distribution:
    """One vector distribution from per-coefficient priors of the same family.

    ``[Normal(0, 1), Normal(0, 5)]`` becomes ``Normal([0, 0], [1, 5]).to_event(1)``.
    """
    first = priors[0]
    if any(p.fixed is not None for p in priors):
        raise ModelError(
            f"the coefficients of {where} are sampled as one vector and cannot be fixed to "
            "numbers one by one; give them distributions (e.g. Normal(1, 0.001) to pin one "
            "down), or recode the term."
        )
    if all(p.text == first.text for p in priors):
        base = first.build()
        return base.expand([len(priors)]).to_event(1)
    same_family = all(
        p.distribution is None
        and p.name == first.name
        and len(p.args) == len(first.args)
        and dict(p.kwargs).keys() == dict(first.kwargs).keys()
        for p in priors
    )
    if not same_family or first.name == "LKJ":
        raise ModelError(
            f"the coefficients of {where} have priors of different families "
            f"({sorted({p.text for p in priors})}); give them priors of one family (e.g. all "
            "Normal) so they can be sampled as one vector."
        )
    args = [np.array([p.args[i] for p in priors]) for i in range(len(first.args))]
    kwargs = {k: np.array([dict(p.kwargs)[k] for p in priors]) for k in dict(first.kwargs)}
    return DISTRIBUTIONS[first.name](*args, **kwargs).to_event(1)


def prior_table(priors: Mapping[str, Prior], source: Mapping[str, str]) -> pd.DataFrame:
    """The priors in effect as a table: parameter -> prior text and its source."""
    return pd.DataFrame(
        {"prior": [str(p) for p in priors.values()], "source": [source[n] for n in priors]},
        index=pd.Index(list(priors), name="parameter"),
    )


def check_prior_keys(user: Mapping[str, Any], valid: set[str], listed: str) -> None:
    """Raise naming every prior key that matches no parameter (with close matches)."""
    unknown = [key for key in user if key not in valid]
    if unknown:
        hints = "".join(close_matches(key, valid) for key in unknown)
        raise ModelError(
            f"prior(s) given for {unknown}, which match no parameter of this model; its "
            f"parameters are {listed}.{hints}"
        )
