"""``hierax.Model``: a multilevel regression from one formula line.

>>> model = hx.Model("logfc ~ 1 + (1 | gene) + (1 | cell_line)", data=df)  # doctest: +SKIP
>>> fit = model.fit(seed=1)  # doctest: +SKIP

Default priors (``model.priors`` lists those in effect). With ``s`` the
response's scale — ``sd(y)`` for gaussian and student_t, ``sd(log y)`` for
lognormal, 1 on the link scale for every other family — and ``m`` its
location (``mean(y)``, ``mean(log y)``, ``log(mean(y))`` for log links, 0 for
logit/probit):

* ``Intercept ~ Normal(m, 2.5 s)``
* ``b_<term> ~ Normal(0, 2.5 s / sd(x_j))`` per column ``x_j`` (``2.5 s`` for a
  constant column), as in rstanarm/bambi's auto-scaling
* ``sd_<group> ~ HalfNormal(2.5 s)`` per coefficient of the group term
* ``cor_<group> ~ LKJ(2)``
* ``sigma ~ Exponential(1 / s)``; ``nu ~ Gamma(2, 0.1)``; ``phi`` and ``shape
  ~ Gamma(2, 0.1)``

Any of them can be replaced per class (``"b"``, ``"sd"``, ``"cor"``) or per
parameter (``"b_x"``, ``"sd_gene"``, ``"sigma"``) with a string such as
``"Normal(0, 5)"`` or a NumPyro distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from numpyro.distributions import constraints

from hierax.core.device import prng_key
from hierax.core.heap import frozen_heap
from hierax.data import read_table
from hierax.errors import HieraxError, ModelError, close_matches
from hierax.frontends.formula.design import (
    Design,
    GroupOptions,
    build_design,
    column_labels,
    new_data_design,
    used_columns,
)
from hierax.frontends.formula.terms import parse_formula
from hierax.frontends.nonlinear import NonlinearModel
from hierax.inference.sampling import check_run_options
from hierax.models.build import auxiliary_parameters, formula_density
from hierax.models.description import ModelDescription, Response
from hierax.models.families import get_family
from hierax.models.priors import (
    Prior,
    check_correlation_size,
    check_prior_keys,
    check_support,
    parse_prior,
    prior_table,
)
from hierax.results.fit import Fit, fit_description

__all__ = ["Model"]

PriorValue = Any  # str | numpyro Distribution


def _scale_and_location(design: Design, family_name: str, link_name: str) -> tuple[float, float]:
    y = design.y
    if family_name in ("gaussian", "student_t") and link_name == "identity":
        scale = float(np.std(y)) if np.std(y) > 0 else 1.0
        return scale, float(np.mean(y))
    if family_name == "lognormal":
        logs = np.log(y)
        return (float(np.std(logs)) or 1.0), float(np.mean(logs))
    if link_name == "log":
        return 1.0, float(np.log(max(np.mean(y), 1e-3)))
    return 1.0, 0.0


def _safe_label(label: str) -> str:
    """A column label as used in prior keys: ``c[v]``, ``x_c[v]`` for ``x:c[v]``."""
    return label.replace(":", "_").replace(" ", "")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class Model:
    """A multilevel (generalised) linear model from an lme4/brms-style formula.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (x | g)"``. Fixed effects with interactions and categorical
        predictors (``x * c``), ``0 +`` / ``- 1`` to drop the intercept, group
        terms ``(1 | g)``, ``(x | g)`` (correlated), ``(x || g)`` (uncorrelated),
        crossed ``(1 | a) + (1 | b)``, nested ``(1 | a/b)`` and ``(1 | a:b)``,
        ``offset(col)``, and on the left ``y | se(sd_y)`` (known standard errors)
        or ``y | trials(n)`` (binomial). Terms may transform columns, in fixed and
        group terms alike, as formulae does: ``I(x**2)`` (or ``{x**2}``),
        ``scale(x)``, ``center(x)``, ``log(x)``, ``exp(x)``, ``sqrt(x)`` and
        elementwise NumPy functions as ``np.log1p(x)``; ``scale`` and ``center``
        keep the training mean and sd when predicting on new data. A categorical
        fixed effect may have at most 100 levels: write ``(1 | c)`` for more.
    data : DataFrame or path
        The table (CSV/Parquet path or DataFrame; never modified).
    family : str
        gaussian, student_t, bernoulli, binomial, poisson, negative_binomial,
        gamma, lognormal or beta.
    link : str, optional
        Link function; the family's default when omitted.
    priors : dict, optional
        Priors by class or parameter name (see the module docstring).
    centered : "auto", bool or dict
        Parameterization of group effects. ``False`` is non-centered
        (``effect = sd * z``), best when a group's data are weak; ``True`` is
        centered, best when the data pin each level down. ``"auto"`` (default)
        chooses per term from the data: non-centered unless the average level
        has more information from its observations than from the population
        (``n_per_level · tau² / sigma² > 1`` with moment estimates), and always
        non-centered for families other than gaussian, student_t and lognormal.
        A dict sets it per grouping factor, e.g. ``{"school": False}``.
    zero_sum : bool or dict
        Code varying intercepts so that they sum to zero over the levels
        (NumPyro's ZeroSumNormal; each effect's marginal sd is then
        ``sd_g * sqrt(1 - 1/levels)``), globally or per grouping factor.
    dropna : bool
        Drop rows with missing values in the formula's columns (with a warning)
        instead of raising.
    marginalize : {"auto", True, False}
        Integrate out the coefficients that enter the mean linearly with Gaussian
        priors (intercept, fixed effects with Normal priors, every group term's
        level effects) when the family is gaussian with identity link, and let
        NUTS sample only the sds, correlations and sigma; the marginalized
        coefficients are then drawn exactly from their conditional Gaussian, so
        the fit holds the same variables. For other families with one varying
        intercept (``y ~ x + (1 | g)``), each level's effect is integrated out
        by adaptive Gauss-Hermite quadrature instead
        (:mod:`hierax.inference.marginal.glmm`). "auto" does this when possible
        (``fit.info["marginalized"]`` lists the sites); False samples everything
        with NUTS; True raises if the model does not qualify. ``fit(marginalize=...)``
        overrides it per fit.
    """

    def __new__(cls, formula: str, data: Any = None, **kwargs: Any) -> Any:
        # hx.Model(..., params={...}) is a nonlinear model
        if "params" in kwargs:
            return NonlinearModel(formula, data, **kwargs)
        # a linear formula observed through a calibration: the formula's linear
        # predictor is the calibration's independent variable (e.g. a concentration)
        if kwargs.get("measurement") is not None:
            measurement = kwargs.pop("measurement")
            lhs, rhs = formula.split("~", 1)
            name = str(getattr(measurement, "independent_key", None) or "x")
            params = {name: rhs.strip(), **dict(kwargs.pop("measurement_params", None) or {})}
            return NonlinearModel(
                f"{lhs.strip()} ~ {name}", data, params=params, measurement=measurement, **kwargs
            )
        return super().__new__(cls)

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame | str,
        *,
        family: str = "gaussian",
        link: str | None = None,
        priors: Mapping[str, PriorValue] | None = None,
        centered: Literal["auto"] | bool | Mapping[str, bool] = "auto",
        zero_sum: bool | Mapping[str, bool] = False,
        dropna: bool = False,
        marginalize: bool | Literal["auto"] = "auto",
    ) -> None:
        self.formula = formula
        self.marginalize = marginalize
        self.table = read_table(data)
        self.parsed = parse_formula(formula)
        self.family, self.link = get_family(family, link)
        self.design = build_design(self.table, self.parsed, self.family, dropna=dropna)
        if priors is not None and not isinstance(priors, Mapping):
            raise ModelError(
                f"priors must be a dict from parameter (or class) name to prior, e.g. "
                f"{{'sigma': 'HalfNormal(1)'}}; got {type(priors).__name__}."
            )
        self._priors, self._prior_source = self._resolve_priors(dict(priors or {}))
        self.group_options = self._resolve_centering(centered, zero_sum)
        self.description = self._describe()
        self.model_fn = self.description.density

    def _describe(self) -> ModelDescription:
        """The model description the engines read (no formula, no table in it)."""
        design = self.design
        predictor = design.predictor(self.group_options)
        response = Response(
            name=self.parsed.response,
            y=design.y,
            family=self.family,
            link=self.link,
            aux=tuple(auxiliary_parameters(self.family, design.se is not None)),
            se=design.se,
            trials=design.trials,
        )
        data = self.arrays()
        coords, dims = self._coords_and_dims()
        dims = {
            k: v
            for k, v in dims.items()
            if k in data or not k.startswith(("offset", "se", "trials"))
        }
        return ModelDescription(
            kind="formula",
            response=response,
            priors=dict(self._priors),
            density=formula_density(predictor, response, self._priors, label=self.parsed.text),
            data=data,
            coords=coords,
            dims=dims,
            predictor=predictor,
            label=self.formula,
        )

    def covariate_columns(self) -> list[str]:
        """Numeric table columns the formula uses as predictors (not response, se, groups)."""
        parsed = self.parsed
        excluded = {parsed.response, parsed.se, parsed.trials, *parsed.offsets}
        excluded |= {factor for term in parsed.groups for factor in term.factors}
        numeric = pd.api.types.is_numeric_dtype
        boolean = pd.api.types.is_bool_dtype
        return [
            column
            for column in used_columns(parsed)
            if column not in excluded
            and numeric(self.table[column])
            and not boolean(self.table[column])
        ]

    # ---------------------------------------------------------------- priors
    def _default_priors(self) -> dict[str, str]:
        design = self.design
        scale, location = _scale_and_location(design, self.family.name, self.link.name)
        defaults: dict[str, str] = {}
        if design.intercept:
            defaults["Intercept"] = f"Normal({_fmt(location)}, {_fmt(2.5 * scale)})"
        for term in design.fixed_terms:
            columns = design.X[:, term.columns]
            sds = np.std(columns, axis=0)
            scales = np.where(sds > 0, 2.5 * scale / np.where(sds > 0, sds, 1.0), 2.5 * scale)
            if scales.size == 1:
                defaults[f"b_{term.name}"] = f"Normal(0, {_fmt(float(scales[0]))})"
            else:  # one prior per coefficient, e.g. b_c[v]
                for label, column_scale in zip(term.labels, scales, strict=True):
                    defaults[f"b_{_safe_label(label)}"] = f"Normal(0, {_fmt(float(column_scale))})"
        for group in design.groups:
            defaults[f"sd_{group.name}"] = f"HalfNormal({_fmt(2.5 * scale)})"
            if group.correlated and group.n_coef > 1:
                defaults[f"cor_{group.name}"] = "LKJ(2)"
        for name in auxiliary_parameters(self.family, design.se is not None):
            defaults[name] = self.family.aux[name].replace("{s}", _fmt(scale))
        return defaults

    def _resolve_priors(
        self, user: dict[str, PriorValue]
    ) -> tuple[dict[str, Prior], dict[str, str]]:
        defaults = self._default_priors()
        classes = {"b": "b_", "sd": "sd_", "cor": "cor_"}
        # a multi-column term's name sets all of its coefficients
        term_keys = {
            f"b_{term.name}": [f"b_{_safe_label(label)}" for label in term.labels]
            for term in self.design.fixed_terms
            if term.columns.stop - term.columns.start > 1
        }
        valid = set(defaults) | set(classes) | set(term_keys)
        check_prior_keys(user, valid, f"{sorted(defaults)} (and the classes 'b', 'sd', 'cor')")
        priors: dict[str, Prior] = {}
        source: dict[str, str] = {}
        for name, text in defaults.items():
            chosen, origin = text, "default"
            for cls, prefix in classes.items():
                if name.startswith(prefix) and cls in user:
                    chosen, origin = user[cls], f"user ({cls})"
            for term_key, members in term_keys.items():
                if name in members and term_key in user:
                    chosen, origin = user[term_key], f"user ({term_key})"
            if name in user:
                chosen, origin = user[name], "user"
            priors[name] = parse_prior(chosen, where=name)
            self._check_prior(name, priors[name])
            source[name] = origin
        return priors, source

    def _check_prior(self, name: str, prior: Prior) -> None:
        """The prior's support must match the parameter's (on every inference path)."""
        groups = {f"cor_{g.name}": g for g in self.design.groups}
        if name.startswith("sd_"):
            support = constraints.positive
        elif name in groups:
            support = constraints.corr_cholesky
        elif name in self.family.aux:
            support = self.family.support(name)
        else:
            support = constraints.real
        check_support(prior, name, support)
        if name in groups:
            check_correlation_size(prior, name, groups[name].coef_names)

    @property
    def priors(self) -> pd.DataFrame:
        """Every prior in effect, and whether it is the default or yours."""
        return prior_table(self._priors, self._prior_source)

    # ------------------------------------------------------------- centering
    def _strength(self, index: np.ndarray, n_levels: int) -> float:
        """Moment estimate of n_per_level * tau² / sigma² for one grouping factor."""
        y = self.design.y
        if self.family.name == "lognormal":
            y = np.log(y)
        counts = np.bincount(index, minlength=n_levels).astype(float)
        means = np.bincount(index, weights=y, minlength=n_levels) / np.maximum(counts, 1)
        if self.design.se is not None:
            sigma2 = float(np.mean(self.design.se**2))
        else:
            within = (y - means[index]) ** 2
            dof = max(y.size - n_levels, 1)
            sigma2 = float(within.sum() / dof) if y.size > n_levels else float(np.var(y))
        per_level = float(np.mean(counts))
        tau2 = max(float(np.var(means)) - sigma2 / per_level, 1e-12)
        return per_level * tau2 / max(sigma2, 1e-12)

    def _resolve_centering(
        self,
        centered: Literal["auto"] | bool | Mapping[str, bool],
        zero_sum: bool | Mapping[str, bool],
    ) -> dict[str, GroupOptions]:
        names = [g.name for g in self.design.groups]
        for option, value in (("centered", centered), ("zero_sum", zero_sum)):
            if isinstance(value, Mapping):
                unknown = [k for k in value if k not in names]
                if unknown:
                    raise ModelError(
                        f"{option} names {unknown}, which are not group terms {names}."
                        f"{''.join(close_matches(k, names) for k in unknown)}"
                    )
        options: dict[str, GroupOptions] = {}
        for group in self.design.groups:
            choice: Any = (
                centered.get(group.name, "auto") if isinstance(centered, Mapping) else centered
            )
            if choice == "auto":
                if self.family.name in ("gaussian", "student_t", "lognormal"):
                    choice = self._strength(group.index, len(group.levels)) > 1.0
                else:
                    choice = False
            summed = bool(
                zero_sum.get(group.name, False) if isinstance(zero_sum, Mapping) else zero_sum
            )
            if summed and group.n_coef > 1:
                raise ModelError(
                    f"zero-sum coding is available for varying intercepts only; the term of "
                    f"{group.name!r} has {group.n_coef} coefficients {list(group.coef_names)}."
                )
            options[group.name] = GroupOptions(centered=bool(choice), zero_sum=summed)
        return options

    # ------------------------------------------------------------------ data
    def arrays(self) -> dict[str, Any]:
        """The keyword data of the NumPyro model function."""
        design = self.design
        data: dict[str, Any] = {"X": design.X, self.parsed.response: design.y}
        for group in design.groups:
            data[f"index_{group.name}"] = group.index
            data[f"Z_{group.name}"] = group.Z
        if design.offset is not None:
            data["offset"] = design.offset
        if design.se is not None:
            data["se"] = design.se
        if design.trials is not None:
            data["trials"] = design.trials
        return data

    def _coords_and_dims(self) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
        design = self.design
        coords: dict[str, list[Any]] = {"obs": list(range(design.n))}
        coords["X_column"] = column_labels(design.fixed_matrix)
        dims: dict[str, list[str]] = {"X": ["obs", "X_column"]}
        for term in design.fixed_terms:
            width = term.columns.stop - term.columns.start
            if width > 1:
                coords[f"{term.name}_coef"] = list(term.labels)
                dims[f"b_{term.name}"] = [f"{term.name}_coef"]
        for group in design.groups:
            coords[group.dim] = list(group.levels)
            dims[f"index_{group.name}"] = ["obs"]
            if group.n_coef > 1:
                coef = f"{group.name}_coef"
                coords[coef] = list(group.coef_names)
                coords[f"{coef}2"] = list(group.coef_names)
                dims[f"Z_{group.name}"] = ["obs", coef]
                dims[f"sd_{group.name}"] = [coef]
                effect_dims = [group.dim, coef]
                dims[f"r_{group.name}"] = effect_dims
                if not self.group_options[group.name].centered:
                    dims[f"z_{group.name}"] = effect_dims
                if group.correlated:
                    dims[f"cor_{group.name}"] = [coef, f"{coef}2"]
                    dims[f"L_cor_{group.name}"] = [coef, f"{coef}2"]
            else:
                dims[f"Z_{group.name}"] = ["obs", f"{group.name}_Z"]
                dims[f"r_{group.name}"] = [group.dim]
                if not self.group_options[group.name].centered:
                    dims[f"z_{group.name}"] = [group.dim]
        for extra in ("offset", "se", "trials"):
            dims[extra] = ["obs"]
        return coords, dims

    # ------------------------------------------------------------------- fit
    @frozen_heap()
    def fit(self, **kwargs: Any) -> Fit:
        """Sample the posterior with :func:`hierax.fit` (same options).

        ``target_accept`` defaults to 0.95 here, as in rstanarm's ``stan_glmer``:
        the curvature of multilevel posteriors varies with the group sds, and
        the smaller step size costs little after hierax's preconditioning
        (crossed seed: 0 divergences in 6 of 6 seeds at 0.95 against 1-4 in 3
        of 6 at 0.8, same sampling time).
        """
        kwargs = check_run_options(kwargs)
        kwargs.setdefault("target_accept", 0.95)
        kwargs.setdefault("marginalize", self.marginalize)
        result = fit_description(self.description, **kwargs)
        result.source_model = self
        result.info["description"] = describe_formula_model(self)
        return result

    def predict(
        self,
        fit: Fit,
        new_data: pd.DataFrame | None = None,
        *,
        kind: Literal["mean", "response"] = "mean",
        allow_new_levels: bool = False,
        seed: int = 0,
    ) -> xr.DataArray:
        """Posterior draws of the mean (``kind="mean"``) or of new responses.

        Returns
        -------
        xarray.DataArray
            dims ``(chain, draw, obs)``.
        """
        from numpyro.infer import Predictive

        if kind not in ("mean", "response"):
            raise ModelError(f"kind must be 'mean' or 'response', got {kind!r}.")
        if new_data is None:
            arrays = {k: v for k, v in self.arrays().items() if k != self.parsed.response}
        else:
            arrays = new_data_design(self.design, read_table(new_data), allow_new_levels)
        arrays["_predict"] = True
        names = [
            n
            for n in fit.posterior.data_vars
            if fit.model_info is None or n in fit.model_info.names("latent")
        ]
        samples = {
            name: np.asarray(fit.posterior[name]).reshape((-1,) + fit.posterior[name].shape[2:])
            for name in names
            if not name.startswith(("cor_",)) and name not in self._deterministic_names()
        }
        site = "mu" if kind == "mean" else self.parsed.response
        predictive = Predictive(self.model_fn, posterior_samples=samples, return_sites=[site])
        draws = np.asarray(predictive(prng_key(seed), **arrays)[site])
        chains, n_draws = fit.posterior.sizes["chain"], fit.posterior.sizes["draw"]
        draws = draws.reshape(chains, n_draws, -1)
        return xr.DataArray(
            draws,
            dims=("chain", "draw", "obs"),
            coords={"chain": fit.posterior["chain"].values, "draw": fit.posterior["draw"].values},
            name=site,
        )

    def _deterministic_names(self) -> set[str]:
        names = set()
        for group in self.design.groups:
            if not self.group_options[group.name].centered:
                names.add(f"r_{group.name}")
            names.add(f"cor_{group.name}")
        return names

    def __repr__(self) -> str:
        groups = ", ".join(
            f"{g.name} ({len(g.levels)} levels, {'centered' if self.group_options[g.name].centered else 'non-centered'})"
            for g in self.design.groups
        )
        return (
            f"<hierax.Model {self.formula!r}; family {self.family.name} ({self.link.name} link); "
            f"{self.design.n} rows; groups: {groups or 'none'}>"
        )


def predict(fit: Fit, *args: Any, **kwargs: Any) -> xr.DataArray:
    """Delegate of :meth:`Fit.predict` for formula fits."""
    model = getattr(fit, "source_model", None)
    if model is None:
        raise HieraxError("predict needs a fit made by hierax.Model(...).fit().")
    return model.predict(fit, *args, **kwargs)


def describe_formula_model(model: Model) -> dict[str, Any]:
    """A JSON-able description of a formula model, kept in ``fit.info["description"]``.

    Holds the formula, family and link, the priors in effect (rows of
    ``model.priors``) and a data summary (rows, columns, levels per group).
    """
    design = model.design
    priors = model.priors.reset_index()
    return {
        "kind": "formula",
        "formula": model.formula,
        "family": model.family.name,
        "link": model.link.name,
        "priors": [{str(k): str(v) for k, v in row.items()} for row in priors.to_dict("records")],
        "data": {
            "rows": int(design.n),
            "columns": [str(c) for c in model.table.columns],
            "groups": {g.name: len(g.levels) for g in design.groups},
        },
    }
