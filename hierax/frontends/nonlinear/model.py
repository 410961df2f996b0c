"""Nonlinear multilevel models: a process model whose parameters each get a sub-formula.

>>> hx.NonlinearModel(  # doctest: +SKIP
...     "readout ~ intercept + slope * S0 * (1 - exp(-k * time))",
...     data=df,
...     params={"intercept": "1 + (1 | batch)", "slope": "1", "S0": "1", "k": "1"},
...     priors={"k": "HalfNormal(0.1)", "S0": "LogNormal(1.609, 0.05)", ...},
... )

Each parameter's sub-formula has the formula-model machinery (fixed effects,
group terms, correlated terms). Naming: a parameter whose sub-formula is
only an intercept (plus group terms) is the site of its name (``k``,
``intercept``); with more fixed terms the intercept is ``<p>_Intercept`` and
coefficients ``b_<p>_<term>``. Group terms are ``sd_<p>_<g>``, ``r_<p>_<g>``
and, for a varying intercept, the per-level values ``<p>_<g>`` (e.g.
``intercept_batch``). Priors are required for every parameter's
population-level coefficients; group sds default to ``HalfNormal(2.5)``.
A number as a prior fixes the value (``"sd_intercept_batch": 0.1``).
Group effects of nonlinear parameters are non-centered unless
``centered={...}`` says otherwise.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.distributions import constraints

from hierax.core.heap import frozen_heap
from hierax.data import read_table
from hierax.errors import HieraxError, ModelError, close_matches
from hierax.frontends.formula.design import Design, GroupOptions, build_design, column_labels
from hierax.frontends.formula.terms import parse_formula
from hierax.frontends.nonlinear.supports import (
    BOUNDS,
    LINK_RANGES,
    as_constraint,
    calibration_supports,
    latent_arguments,
)
from hierax.inference.sampling import check_run_options
from hierax.models.build import auxiliary_parameters
from hierax.models.description import ModelDescription, Parameter, Response
from hierax.models.expression import Expression, parse_expression, parse_tree, resolve_names
from hierax.models.families import FAMILIES, LINKS, get_family
from hierax.models.nonlinear_density import nonlinear_density
from hierax.models.nonlinear_density import parameter_values as _parameter_values
from hierax.models.priors import (
    DISTRIBUTIONS,
    Prior,
    argument_constraints,
    check_correlation_size,
    check_prior_keys,
    check_support,
    describe_support,
    parse_prior,
    prior_table,
)
from hierax.results.fit import Fit, fit_description

__all__ = ["NonlinearModel", "Param", "param", "latent"]


@dataclass(frozen=True)
class Param:
    """How one nonlinear parameter is modelled.

    Either a sub-formula (``"1 + (1 | batch)"``) with a link (``"log"`` keeps it
    positive), or a per-observation latent with a population distribution whose
    arguments are expressions of other parameters
    (``latent="TruncatedNormal(mu_r, exp(ln_std_r), low=0)"``).
    """

    formula: str | None = "1"
    link: str = "identity"
    latent: str | None = None
    lower: float | None = None
    upper: float | None = None

    def transform(self, eta: Any) -> Any:
        """Map the linear predictor to the parameter, respecting bounds if given."""
        import jax

        if self.lower is not None and self.upper is not None:
            return self.lower + (self.upper - self.lower) * jax.nn.sigmoid(eta)
        if self.lower is not None:
            return self.lower + jnp.exp(eta)
        if self.upper is not None:
            return self.upper - jnp.exp(eta)
        return LINKS[self.link].inverse(eta)


def param(
    formula: str = "1",
    link: str = "identity",
    *,
    lower: float | None = None,
    upper: float | None = None,
) -> Param:
    """A parameter with a sub-formula and a link, or bounds.

    ``lower``/``upper`` constrain the parameter: ``lower + exp(eta)``,
    ``upper - exp(eta)`` or ``lower + (upper - lower) * inv_logit(eta)``; priors
    on its coefficients (``<p>_Intercept``, ``b_<p>_<term>``) are then on that
    unconstrained scale, the real line, and a prior for ``<p>`` itself is an
    error that says so.
    """
    if lower is not None and upper is not None and not lower < upper:
        raise ModelError(f"param bounds need lower < upper, got lower={lower}, upper={upper}.")
    return Param(formula=formula, link=link, lower=lower, upper=upper)


def latent(distribution: str) -> Param:
    """A per-observation latent parameter with the given population distribution."""
    return Param(formula=None, latent=distribution)


@dataclass(frozen=True)
class _LatentDistribution:
    name: str
    args: tuple[Expression, ...]
    kwargs: tuple[tuple[str, Expression], ...]
    text: str = ""
    #: argument name -> expression, e.g. ``(("loc", mu_r), ("scale", sd_r))``
    arguments: tuple[tuple[str, Expression], ...] = ()

    @property
    def names(self) -> set[str]:
        found: set[str] = set()
        for expression in [*self.args, *(e for _, e in self.kwargs)]:
            found |= set(expression.names)
        return found

    def build(self, env: Mapping[str, Any]) -> Any:
        args = [e(env) for e in self.args]
        kwargs = {k: e(env) for k, e in self.kwargs}
        return DISTRIBUTIONS[self.name](*args, **kwargs)


def _parse_latent(
    text: str, where: str, functions: Mapping[str, Callable[..., Any]]
) -> _LatentDistribution:
    tree = parse_tree(text, f"latent distribution of {where}")
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise ModelError(f"the latent distribution of {where} must look like 'Normal(mu, sd)'.")
    if tree.func.id not in DISTRIBUTIONS:
        raise ModelError(
            f"unknown distribution {tree.func.id!r} for the latent {where}; choose from "
            f"{sorted(DISTRIBUTIONS)}.{close_matches(tree.func.id, DISTRIBUTIONS)}"
        )
    args = tuple(
        parse_expression(ast.unparse(a), functions=functions, where=f"latent {where}")
        for a in tree.args
    )
    kwargs = tuple(
        (
            k.arg or "",
            parse_expression(ast.unparse(k.value), functions=functions, where=f"latent {where}"),
        )
        for k in tree.keywords
    )
    arguments = latent_arguments(tree.func.id, args, kwargs, text, where)
    return _LatentDistribution(tree.func.id, args, kwargs, text.strip(), arguments)


class NonlinearModel:
    """A nonlinear model with one sub-formula (or latent) per parameter.

    Parameters
    ----------
    formula : str
        ``"response ~ expression"``; the left side may use ``| se(col)`` or
        ``| trials(col)`` as in formula models.
    data : DataFrame or path
    params : dict
        Parameter name -> sub-formula string, :func:`param` or :func:`latent`.
    priors : dict
        Priors by site name; required for every parameter's population-level
        coefficients. Numbers fix a value. Each must lie on its parameter's
        support (group sds, family parameters such as sigma, calibration noise
        scales and parameters that are a latent distribution's scale are
        positive): a mismatch is a ModelError naming both supports.
    family : str
        Response family; the expression is the mean on the response scale.
    functions : dict, optional
        Extra JAX-traceable functions the expression may call.
    centered : dict, optional
        Per group term (``"<p>_<g>"``) centered (True) or non-centered (False, default).
    marginalize : {"auto", True, False}
        Integrate out exactly the parameters that enter the expression affinely
        with an identity transform and Gaussian coefficients (gaussian family),
        sample the rest, then draw them from their conditional Gaussian
        (:mod:`hierax.inference.marginal.nonlinear`); the fit holds the same variables.
        "auto" does this when possible (``fit.info["marginalized"]`` lists the
        sites); False never; True raises if no parameter qualifies.
        ``fit(marginalize=...)`` overrides it per fit.
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame | str,
        *,
        params: Mapping[str, Any],
        priors: Mapping[str, Any] | None = None,
        family: str = "gaussian",
        functions: Mapping[str, Callable[..., Any]] | None = None,
        centered: Mapping[str, bool] | None = None,
        measurement: Any = None,
        dropna: bool = False,
        marginalize: bool | Literal["auto"] = "auto",
    ) -> None:
        if "~" not in formula:
            raise ModelError(f"a nonlinear formula needs 'response ~ expression'; got {formula!r}.")
        lhs, rhs = formula.split("~", 1)
        self.formula = formula
        self.marginalize = marginalize
        self.table = read_table(data)
        self.parsed = parse_formula(f"{lhs} ~ 1")
        self.family, _ = get_family(family)
        self.functions = dict(functions or {})
        self.expression = parse_expression(rhs, functions=self.functions, where="nonlinear formula")
        # a family parameter (sigma, nu, phi, shape) with a sub-formula is distributional:
        # it varies by row through its own formula, with a log link by default
        self.params = {
            name: (
                Param(formula=spec, link="log" if name in self.family.aux else "identity")
                if isinstance(spec, str)
                else spec
            )
            for name, spec in params.items()
        }
        self.distributional = [name for name in self.params if name in self.family.aux]
        # a calibration model as the observation model: the expression is its
        # independent variable, its parameters come from params, priors or its fit
        self.measurement = measurement
        self.theta_names: list[str] = (
            list(measurement.theta_names) if measurement is not None else []
        )
        if measurement is not None:
            self.distributional = [n for n in self.params if n in self.theta_names]
        for name, spec in self.params.items():
            if spec.link not in LINKS:
                raise ModelError(
                    f"unknown link {spec.link!r} for parameter {name!r}; use {sorted(LINKS)}."
                )
        self.latents = {
            name: _parse_latent(spec.latent, name, self.functions)
            for name, spec in self.params.items()
            if spec.latent is not None
        }
        self._check_names()
        # the response's own checks (support, NaN, se/trials) through the formula machinery
        self.response_design = build_design(self.table, self.parsed, self.family, dropna=dropna)
        self.table = self.table.loc[self.response_design.rows]
        self.designs = {
            name: self._param_design(name, spec.formula)
            for name, spec in self.params.items()
            if spec.formula is not None
        }
        self._priors, self._prior_source = self._resolve_priors(dict(priors or {}))
        self.group_options = self._resolve_centering(dict(centered or {}))
        self.description = self._describe()
        self.model_fn = self.description.density

    # ----------------------------------------------------------------- checks
    def _check_names(self) -> None:
        columns = [str(c) for c in self.table.columns]
        parameters = list(self.params)
        data_names, used = resolve_names(self.expression, columns, parameters)
        for distribution in self.latents.values():
            for expression in [*distribution.args, *(e for _, e in distribution.kwargs)]:
                _, more = resolve_names(expression, columns, parameters)
                used |= more
        unused = sorted(set(parameters) - used - set(self.distributional))
        if unused:
            raise ModelError(
                f"parameter(s) {unused} are declared in params but used neither in the formula "
                f"{self.expression.text!r} nor in a latent distribution; remove them."
            )
        self.data_columns = sorted(
            data_names
            | {
                n
                for d in self.latents.values()
                for n in d.names
                if n in columns and n not in parameters
            }
        )

    def _param_design(self, name: str, sub_formula: str) -> Design:
        parsed = parse_formula(f"{self.parsed.response} ~ {sub_formula}")
        if parsed.se or parsed.trials or parsed.offsets:
            raise ModelError(f"the sub-formula of {name!r} may not use se(), trials() or offset().")
        design = build_design(self.table, parsed, FAMILIES["gaussian"])
        design.fixed_terms = [
            dataclasses.replace(term, name=f"{name}_{term.name}") for term in design.fixed_terms
        ]
        for group in design.groups:
            group.name = f"{name}_{group.name}"
        return design

    def _intercept_name(self, name: str) -> str:
        spec = self.params[name]
        transformed = spec.link != "identity" or spec.lower is not None or spec.upper is not None
        family_parameter = name in self.family.aux and self.measurement is None
        if family_parameter or self.designs[name].fixed_terms or transformed:
            return f"{name}_Intercept"
        return name

    # ----------------------------------------------------------------- priors
    def _resolve_priors(self, user: dict[str, Any]) -> tuple[dict[str, Prior], dict[str, str]]:
        required: list[str] = []
        defaults: dict[str, Any] = {}
        term_keys: dict[str, list[str]] = {}
        for name, design in self.designs.items():
            if design.intercept:
                required.append(self._intercept_name(name))
            for term in design.fixed_terms:
                if term.columns.stop - term.columns.start == 1:
                    required.append(f"b_{term.name}")
                else:
                    columns = [f"b_{name}_{label.replace(':', '_')}" for label in term.labels]
                    required += columns
                    term_keys[f"b_{term.name}"] = columns
            for group in design.groups:
                defaults[f"sd_{group.name}"] = "HalfNormal(2.5)"
                if group.correlated and group.n_coef > 1:
                    defaults[f"cor_{group.name}"] = "LKJ(2)"
        scale = float(np.std(self.response_design.y)) or 1.0
        if self.measurement is None:
            known_se = self.response_design.se is not None
            for aux in auxiliary_parameters(self.family, known_se):
                if aux not in self.params:
                    defaults[aux] = self.family.aux[aux].replace("{s}", f"{scale:.4g}")
        optional = [t for t in self.theta_names if t not in self.params]
        fitted = self._fitted_theta()
        for theta in optional:
            if theta in user:
                continue
            if theta not in fitted:
                raise ModelError(
                    f"calibration parameter {theta!r} is neither in params, nor given a prior, "
                    "nor fitted in the calibration model; give it one of the three."
                )
            user[theta] = float(fitted[theta])  # fixed at the calibration's fit
        for key, columns in term_keys.items():  # a term's name sets all of its columns
            if key in user:
                for column in columns:
                    user.setdefault(column, user[key])
        valid = set(required) | set(defaults) | set(term_keys) | set(optional)
        self._check_not_a_site(user, valid)
        missing = [name for name in required if name not in user]
        if missing:
            raise ModelError(
                f"priors are required for every nonlinear parameter's population-level "
                f"coefficients; missing: {missing}. Add them to priors={{...}}, e.g. "
                f"{{{missing[0]!r}: 'Normal(0, 1)'}}."
            )
        check_prior_keys(user, valid, str(sorted(valid)))
        priors: dict[str, Prior] = {}
        source: dict[str, str] = {}
        for name in [*required, *defaults, *optional]:
            if name in term_keys:
                continue
            value = user.get(name, defaults.get(name))
            priors[name] = parse_prior(value, where=name)
            self._check_prior(name, priors[name])
            source[name] = "user" if name in user else "default"
        for name, support, why in self._value_supports():
            self._check_value(name, support, why, priors)
        return priors, source

    # --------------------------------------------------------------- supports
    def _check_prior(self, name: str, prior: Prior) -> None:
        """The prior's support must match its site's (on every inference path).

        Group sds are positive, correlations LKJ, family and calibration noise
        parameters positive (see :func:`.supports.calibration_supports`), and
        coefficients of sub-formulas, on the scale before their link or bounds,
        real.
        """
        groups = {g.name: g for d in self.designs.values() for g in d.groups}
        correlations = {f"cor_{name}": group for name, group in groups.items()}
        support: Any = constraints.real
        if name in {f"sd_{g}" for g in groups}:
            support = constraints.positive
        elif name in correlations:
            support = constraints.corr_cholesky
        elif name in self.params:
            pass  # a parameter's own site: its value is checked by _check_value
        elif self.measurement is None and name in self.family.aux:
            support = self.family.support(name)
        elif self.measurement is not None and name in self.theta_names:
            support = calibration_supports(self.measurement).get(name, constraints.real)
        check_support(prior, name, support)
        if name in correlations:
            check_correlation_size(prior, name, correlations[name].coef_names)

    def _value_supports(self) -> list[tuple[str, Any, str]]:
        """``(parameter, support, why)`` for parameters with a sub-formula whose value
        is constrained: a distributional family or calibration parameter, or a
        parameter that is an argument of a latent distribution (its scale)."""
        found: list[tuple[str, Any, str]] = []
        calibration = calibration_supports(self.measurement)
        for name in self.distributional:
            if self.measurement is None:
                why = f"the {self.family.name} family's {name}"
                found.append((name, self.family.support(name), why))
            elif name in calibration:
                found.append((name, calibration[name], f"the calibration's noise parameter {name}"))
        for latent_name, distribution in self.latents.items():
            table = argument_constraints(distribution.name)
            for argument, expression in distribution.arguments:
                constraint = table.get(argument)
                name = expression.text
                if (
                    isinstance(expression.tree, ast.Name)
                    and name in self.designs
                    and constraint is not None
                    and not constraints.is_dependent(constraint)
                    and constraint is not constraints.real
                ):
                    why = f"the {argument} of the latent {latent_name!r} ~ {distribution.text}"
                    found.append((name, constraint, why))
        return found

    def _check_value(self, name: str, support: Any, why: str, priors: Mapping[str, Prior]) -> None:
        """Raise unless parameter ``name``'s value, as its sub-formula makes it, lies on ``support``."""
        spec, design = self.params[name], self.designs[name]
        wanted = describe_support(support)
        if spec.lower is not None or spec.upper is not None:
            low = -math.inf if spec.lower is None else spec.lower
            high = math.inf if spec.upper is None else spec.upper
            how = f"its bounds (lower={spec.lower}, upper={spec.upper})"
        elif spec.link != "identity":
            low, high = LINK_RANGES.get(spec.link, (-math.inf, math.inf))
            how = f"its {spec.link} link"
        elif design.intercept and not design.fixed_terms and not design.groups:
            site = self._intercept_name(name)  # the parameter is this one sample site
            try:
                check_support(priors[site], site, support)
            except ModelError as error:
                link = " through an identity link" if site != name else ""
                raise ModelError(f"{error} ({site!r} is {why}{link}.)") from None
            return
        else:
            low, high = -math.inf, math.inf
            how = f"its sub-formula {spec.formula!r} with an identity link"
        wanted_low, wanted_high = (float(getattr(support, b, d)) for b, d in BOUNDS)
        if low >= wanted_low and high <= wanted_high:
            return
        fix = (
            f"hx.param({spec.formula!r}, link='log') or lower=0"
            if support is constraints.positive
            else "hx.param(..., lower=, upper=) with bounds inside that range"
        )
        raise ModelError(
            f"{name!r} must be {wanted} (it is {why}), but {how} let it be "
            f"{describe_support(as_constraint(low, high))}; use {fix}."
        )

    def _check_not_a_site(self, user: Mapping[str, Any], valid: set[str]) -> None:
        """A prior for a parameter computed from its sub-formula: say where priors go."""
        for name in user:
            if name in valid or name not in self.designs:
                continue
            spec, design = self.params[name], self.designs[name]
            transformed = spec.lower is not None or spec.upper is not None
            if transformed:
                why = f"it has bounds (lower={spec.lower}, upper={spec.upper})"
            elif spec.link != "identity":
                why, transformed = f"it has a {spec.link} link", True
            elif design.fixed_terms:
                why = "its sub-formula has terms besides an intercept"
            elif not design.intercept:
                why = "its sub-formula has no intercept"
            else:
                why = f"it is a distributional parameter of the {self.family.name} family"
            coefficients = sorted(
                (v for v in valid if v == f"{name}_Intercept" or v.startswith(f"b_{name}_")),
                key=lambda site: (site != f"{name}_Intercept", site),
            )
            sites = coefficients or sorted(v for v in valid if v.startswith(f"sd_{name}_"))
            scale = (
                " (on the real line: the scale before the link or bounds)" if transformed else ""
            )
            example = (
                f", e.g. priors={{{coefficients[0]!r}: 'Normal(0, 1.5)'}}" if coefficients else ""
            )
            raise ModelError(
                f"a prior is given for {name!r}, but {name!r} is not a sample site: {why}, so it "
                f"is computed from its sub-formula {spec.formula!r}; give priors to {sites} "
                f"instead{scale}{example}."
            )

    def _fitted_theta(self) -> dict[str, float]:
        if self.measurement is None:
            return {}
        try:
            return dict(self.measurement.theta_dict)
        except HieraxError:  # an unfitted calibration has no values
            return {}

    @property
    def priors(self) -> pd.DataFrame:
        """Every prior in effect, and whether it is the default or yours."""
        return prior_table(self._priors, self._prior_source)

    def _resolve_centering(self, centered: dict[str, bool]) -> dict[str, GroupOptions]:
        names = [g.name for d in self.designs.values() for g in d.groups]
        unknown = [k for k in centered if k not in names]
        if unknown:
            raise ModelError(f"centered names {unknown}, which are not group terms {names}.")
        return {name: GroupOptions(centered=bool(centered.get(name, False))) for name in names}

    # ------------------------------------------------------------------ build
    def arrays(self) -> dict[str, Any]:
        """Keyword data of the NumPyro model function."""
        data: dict[str, Any] = {self.parsed.response: self.response_design.y}
        for column in self.data_columns:
            data[column] = self.table[column].to_numpy(dtype=float)
        for name, design in self.designs.items():
            data[f"X_{name}"] = design.X
            for group in design.groups:
                data[f"index_{group.name}"] = group.index
                data[f"Z_{group.name}"] = group.Z
        if self.response_design.se is not None:
            data["se"] = self.response_design.se
        if self.response_design.trials is not None:
            data["trials"] = self.response_design.trials
        return data

    def parameter_values(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Sample every parameter that has a sub-formula (NumPyro sites), keyed by name.

        Also holds the data columns the expression uses. The plain model and
        the collapsed ones of :mod:`hierax.inference.marginal` share it
        (:func:`hierax.models.nonlinear_density.parameter_values`), so their
        sites are the same.
        """
        return _parameter_values(self.description, data)

    def _parameter(self, name: str, spec: Param) -> Parameter:
        """One parameter in the model description."""
        identity = spec.link == "identity" and spec.lower is None and spec.upper is None
        if spec.formula is None:
            return Parameter(
                name=name,
                predictor=None,
                transform=spec.transform,
                identity=identity,
                latent=self.latents.get(name),
            )
        design = self.designs[name]
        per_level = {
            g.name: g.name
            for g in design.groups
            if g.n_coef == 1 and g.coef_names == ("Intercept",)
        }
        predictor = design.predictor(
            self.group_options,
            x_key=f"X_{name}",
            intercept_name=self._intercept_name(name),
            prefix=f"{name}_",
            per_level=per_level,
        )
        return Parameter(
            name=name,
            predictor=predictor,
            transform=spec.transform,
            identity=identity,
            formula=spec.formula,
        )

    def _describe(self) -> ModelDescription:
        """The model description the engines read (no table, no formula parsing in it)."""
        design = self.response_design
        response = Response(
            name=self.parsed.response,
            y=design.y,
            family=self.family,
            link=LINKS["identity"],  # the expression is the mean on the response scale
            aux=tuple(auxiliary_parameters(self.family, design.se is not None)),
            se=design.se,
            trials=design.trials,
        )
        coords, dims = self._coords_and_dims()
        described = ModelDescription(
            kind="nonlinear",
            response=response,
            priors=dict(self._priors),
            density=_not_built,
            data=self.arrays(),
            coords=coords,
            dims=dims,
            parameters={name: self._parameter(name, spec) for name, spec in self.params.items()},
            expression=self.expression,
            data_columns=tuple(self.data_columns),
            measurement=self.measurement,
            theta_names=tuple(self.theta_names),
            distributional=tuple(self.distributional),
            label=self.formula,
        )
        return dataclasses.replace(
            described, density=nonlinear_density(described), dims=_only_known(dims, described)
        )

    def _coords_and_dims(self) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
        coords: dict[str, list[Any]] = {"obs": list(range(len(self.table)))}
        dims: dict[str, list[str]] = {c: ["obs"] for c in self.data_columns}
        dims.update({"se": ["obs"], "trials": ["obs"]})
        for name, design in self.designs.items():
            coords[f"{name}_column"] = column_labels(design.fixed_matrix)
            dims[f"X_{name}"] = ["obs", f"{name}_column"]
            for group in design.groups:
                coords[group.dim] = list(group.levels)
                dims[f"index_{group.name}"] = ["obs"]
                dims[f"Z_{group.name}"] = [
                    "obs",
                    f"{group.name}_Z" if group.n_coef == 1 else f"{group.name}_coef",
                ]
                if group.n_coef == 1:
                    dims[f"r_{group.name}"] = [group.dim]
                    dims[f"z_{group.name}"] = [group.dim]
                    if group.coef_names == ("Intercept",):
                        dims[group.name] = [group.dim]
                else:
                    coords[f"{group.name}_coef"] = list(group.coef_names)
        return coords, dims

    @frozen_heap()
    def fit(
        self,
        init: Mapping[str, Any] | Callable[[pd.DataFrame], Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Fit:
        """Sample with :func:`hierax.fit`; ``init`` values may be callables of the table.

        ``target_accept`` defaults to 0.95, as for formula models.
        """
        kwargs = check_run_options(kwargs)
        kwargs.setdefault("target_accept", 0.95)
        kwargs.setdefault("marginalize", self.marginalize)
        init_values = None
        if callable(init):  # one function of the table giving every start value
            init = init(self.table)
        if init is not None:
            init_values = {k: (v(self.table) if callable(v) else v) for k, v in init.items()}
        result = fit_description(self.description, init=init_values, **kwargs)
        result.source_model = None
        result.info["description"] = describe_nonlinear_model(self)
        return result

    def __repr__(self) -> str:
        return f"<hierax.NonlinearModel {self.formula!r}; parameters {list(self.params)}>"


def _not_built(**data: Any) -> None:  # pragma: no cover - replaced before use
    raise RuntimeError("the density of a nonlinear description is not built yet")


def _only_known(
    dims: Mapping[str, list[str]], description: ModelDescription
) -> dict[str, list[str]]:
    """Keep dims for the density's sites and data only.

    Every group term has ``r_<g>``; ``z_<g>`` only non-centered, and the
    per-level values ``<p>_<g>`` of a varying intercept only with an intercept.
    """
    sites: set[str] = set()
    for parameter in description.parameters.values():
        predictor = parameter.predictor
        if predictor is None:
            continue
        for group in predictor.groups:
            sites.add(f"r_{group.name}")
            if not group.centered:
                sites.add(f"z_{group.name}")
            if predictor.intercept and group.name in predictor.per_level:
                sites.add(predictor.per_level[group.name])
    return {k: list(v) for k, v in dims.items() if k in description.data or k in sites}


def describe_nonlinear_model(model: NonlinearModel) -> dict[str, Any]:
    """A JSON-able description of a nonlinear model, kept in ``fit.info["description"]``.

    Holds the formula, family, each parameter's sub-formula or latent
    distribution, the priors in effect and a data summary.
    """
    params = {name: _describe_param(spec) for name, spec in model.params.items()}
    priors = model.priors.reset_index()
    groups = {g.name: len(g.levels) for d in model.designs.values() for g in d.groups}
    description: dict[str, Any] = {
        "kind": "nonlinear",
        "formula": model.formula,
        "family": model.family.name,
        "params": params,
        "priors": [{str(k): str(v) for k, v in row.items()} for row in priors.to_dict("records")],
        "data": {
            "rows": len(model.table),
            "columns": [str(c) for c in model.table.columns],
            "groups": groups,
        },
    }
    if model.measurement is not None:
        description["measurement"] = type(model.measurement).__name__
    return description


def _describe_param(spec: Param) -> str:
    text = spec.formula if spec.formula is not None else f"latent {spec.latent}"
    if spec.link != "identity":
        text += f" ({spec.link} link)"
    if spec.lower is not None or spec.upper is not None:
        text += f" in [{spec.lower}, {spec.upper}]"
    return text
