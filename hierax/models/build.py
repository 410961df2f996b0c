"""NumPyro building blocks read from the model description.

One small builder per part (fixed terms, each group term, the likelihood).
Group effects are zero-mean offsets around the fixed effects (identifiable by
construction), gathered by integer level index. Correlated terms use an LKJ
prior on the Cholesky factor of the correlation matrix. The formula
front-end's density is :func:`formula_density`; nonlinear models and the
collapsed engines use :func:`linear_predictor`, :func:`group_scale` and
:func:`sample_site` so that every path has the same sites.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from hierax.models.description import GroupTerm, LinearPredictor, Response
from hierax.models.families import Family
from hierax.models.priors import Prior, stack_priors

#: The correlation prior when neither ``cor_<g>`` nor the class ``cor`` is given.
DEFAULT_COR = Prior("LKJ(2)", "LKJ", (2.0,))


def _vector_prior(prior: Prior, size: int) -> dist.Distribution:
    base = prior.build()
    if base.batch_shape == ():
        return base.expand([size]).to_event(1)
    return base.to_event(1)


def group_scale(group: GroupTerm, prior_sd: Prior, prior_cor: Prior) -> tuple[Any, Any]:
    """Sample one group term's sds and correlation: ``(sd, scale_tril or None)``.

    ``scale_tril`` (k, k) is the Cholesky factor of the effects' covariance for
    correlated terms with k > 1, else None (independent effects with sds ``sd``).
    """
    k = group.n_coef
    if k == 1:
        return sample_site(f"sd_{group.name}", prior_sd), None
    if prior_sd.fixed is not None:
        sd = numpyro.deterministic(f"sd_{group.name}", jnp.full(k, prior_sd.fixed))
    else:
        sd = numpyro.sample(f"sd_{group.name}", _vector_prior(prior_sd, k))
    if not group.correlated:
        return sd, None
    cholesky = numpyro.sample(f"L_cor_{group.name}", prior_cor.build(dim=k))
    numpyro.deterministic(f"cor_{group.name}", cholesky @ cholesky.T)
    return sd, sd[:, None] * cholesky  # (k, k)


def _group_effects(group: GroupTerm, prior_sd: Prior, prior_cor: Prior) -> Any:
    """Sample one group term's sds, correlation and level effects (levels, k)."""
    k = group.n_coef
    n_levels = len(group.levels)
    sd, scale_tril = group_scale(group, prior_sd, prior_cor)
    if group.zero_sum:
        # effects that sum to zero over the levels (k == 1; checked by the Model)
        if group.centered:
            effects = numpyro.sample(
                f"r_{group.name}", dist.ZeroSumNormal(sd, event_shape=(n_levels,))
            )
        else:
            z = numpyro.sample(f"z_{group.name}", dist.ZeroSumNormal(1.0, event_shape=(n_levels,)))
            effects = numpyro.deterministic(f"r_{group.name}", sd * z)
        return jnp.asarray(effects)[:, None], sd, None
    with numpyro.plate(f"levels_{group.name}", n_levels):
        if group.centered:
            if k == 1:
                effects = jnp.asarray(numpyro.sample(f"r_{group.name}", dist.Normal(0.0, sd)))[
                    :, None
                ]
            elif scale_tril is not None:
                # scale_tril is a Cholesky factor by construction: NumPyro's check of it
                # would compile a few small programs while tracing (constant folding)
                effects = numpyro.sample(
                    f"r_{group.name}",
                    dist.MultivariateNormal(
                        jnp.zeros(k), scale_tril=scale_tril, validate_args=False
                    ),
                )
            else:
                effects = numpyro.sample(f"r_{group.name}", dist.Normal(0.0, sd).to_event(1))
        else:
            if k == 1:
                z = numpyro.sample(f"z_{group.name}", dist.Normal(0.0, 1.0))
                effects = jnp.asarray(numpyro.deterministic(f"r_{group.name}", sd * z))[:, None]
            else:
                z = numpyro.sample(f"z_{group.name}", dist.Normal(0.0, 1.0).expand([k]).to_event(1))
                if scale_tril is not None:
                    effects = numpyro.deterministic(
                        f"r_{group.name}", z @ scale_tril.T
                    )  # (levels, k)
                else:
                    effects = numpyro.deterministic(f"r_{group.name}", z * sd)
    return effects, sd, scale_tril  # (levels, k)


def auxiliary_parameters(family: Family, known_se: bool) -> list[str]:
    """Family parameters that are estimated (a known se() replaces gaussian's sigma)."""
    return [
        name
        for name in family.aux
        if not (known_se and family.name == "gaussian" and name == "sigma")
    ]


def sample_site(name: str, prior: Prior, dim: int | None = None) -> Any:
    """A sample site, or a deterministic one when the prior fixes the value."""
    if prior.fixed is not None:
        return numpyro.deterministic(name, jnp.asarray(prior.fixed))
    return numpyro.sample(name, prior.build(dim))


def column_prior_key(prefix: str, label: str) -> str:
    """The prior key of one column of a wide fixed term: ``b_c[v]``, ``b_k_x_c[v]``."""
    return f"b_{prefix}{label.replace(':', '_').replace(' ', '')}"


def stacked_coefficient_priors(
    predictor: LinearPredictor, priors: Mapping[str, Prior]
) -> dict[str, Any]:
    """One vector prior per multi-column fixed term, from its per-column priors
    (keys ``b_<prefix><label>``, e.g. ``b_c[v]`` or ``b_sigma_batch[a]``)."""
    return {
        f"b_{term.name}": stack_priors(
            [priors[column_prior_key(predictor.prefix, label)] for label in term.labels],
            where=f"b_{term.name}",
        )
        for term in predictor.fixed_terms
        if term.width > 1
    }


def correlation_prior(group: GroupTerm, priors: Mapping[str, Prior]) -> Prior:
    """The prior of a group term's correlation: ``cor_<g>``, else the class ``cor``."""
    return priors.get(f"cor_{group.name}", priors.get("cor", DEFAULT_COR))


def linear_predictor(
    predictor: LinearPredictor,
    priors: Mapping[str, Prior],
    data: Mapping[str, Any],
    *,
    coefficient_priors: Mapping[str, Any] | None = None,
) -> Any:
    """Sample the fixed and group terms of one linear predictor and return eta, shape (n,).

    Used for the mean of a formula model and for every parameter of a
    nonlinear model (whose predictors carry prefixed term and group names).
    The arrays come from ``data`` (``predictor.x_key``, ``index_<g>``,
    ``Z_<g>``, ``offset``), so prediction can pass new ones; ``_predict``
    in ``data`` draws effects of levels unseen in fitting from the population.
    """
    X = data[predictor.x_key]
    predicting = bool(data.get("_predict", False))
    if coefficient_priors is None:
        coefficient_priors = stacked_coefficient_priors(predictor, priors)
    pieces = []
    intercept = None
    if predictor.intercept:
        intercept = sample_site(predictor.intercept_name, priors[predictor.intercept_name])
        pieces.append(jnp.reshape(intercept, (1,)))
    for term in predictor.fixed_terms:
        name = f"b_{term.name}"
        if term.width == 1:
            pieces.append(jnp.reshape(sample_site(name, priors[name]), (1,)))
        else:
            pieces.append(numpyro.sample(name, coefficient_priors[name]))
    eta = X @ jnp.concatenate(pieces) if pieces else jnp.zeros(X.shape[0])  # (n,)
    if data.get("offset") is not None and predictor.x_key == "X":
        eta = eta + data["offset"]
    for group in predictor.groups:
        sd_prior = priors[f"sd_{group.name}"]
        per_level = predictor.per_level.get(group.name)
        if per_level and intercept is not None and group.centered:
            # Centered varying intercept: sample the per-level values themselves,
            # value ~ Normal(intercept, sd), not offsets from the intercept. Same
            # posterior, but no shear between the intercept and the offsets when
            # the data pin each level down (a binary star's log period to 1e-6).
            sd = sample_site(f"sd_{group.name}", sd_prior)
            with numpyro.plate(f"levels_{group.name}", group.n_levels):
                values = numpyro.sample(per_level, dist.Normal(intercept, sd))
            effects = jnp.asarray(numpyro.deterministic(f"r_{group.name}", values - intercept))[
                :, None
            ]
            scale_tril = None
        else:
            effects, sd, scale_tril = _group_effects(
                group, sd_prior, correlation_prior(group, priors)
            )
            if per_level and intercept is not None:
                numpyro.deterministic(per_level, intercept + effects[:, 0])
        index = data[f"index_{group.name}"]
        per_row = effects[jnp.maximum(index, 0)]  # (n, k)
        if predicting:
            # rows of levels not seen in fitting get draws from the population
            k = group.n_coef
            with numpyro.plate(f"rows_new_{group.name}", X.shape[0]):
                z_new = numpyro.sample(
                    f"new_{group.name}", dist.Normal(0.0, 1.0).expand([k]).to_event(1)
                )
            fresh = z_new @ scale_tril.T if scale_tril is not None else z_new * sd
            per_row = jnp.where((index < 0)[:, None], fresh, per_row)
        eta = eta + jnp.sum(data[f"Z_{group.name}"] * per_row, axis=-1)
    return eta


def formula_density(
    predictor: LinearPredictor,
    response: Response,
    priors: Mapping[str, Prior],
    label: str = "model",
) -> Callable[..., None]:
    """The NumPyro model function of a (generalised) linear multilevel model.

    The returned function takes the arrays as keyword arguments (``X``,
    ``index_<g>``, ``Z_<g>``, optional ``offset``, ``se``, ``trials``, and the
    response under its column name), so that ``hierax.fit`` stores them as
    constant data and prediction can pass new arrays.
    """
    name = response.name
    family, link = response.family, response.link
    coefficient_priors = stacked_coefficient_priors(predictor, priors)

    def model(**data: Any) -> None:
        eta = linear_predictor(predictor, priors, data, coefficient_priors=coefficient_priors)
        aux = {a: sample_site(a, priors[a]) for a in response.aux}
        if data.get("_predict", False):
            numpyro.deterministic("mu", link.inverse(eta))
        likelihood = family.likelihood(eta, link, aux, se=data.get("se"), trials=data.get("trials"))
        with numpyro.plate("obs", data[predictor.x_key].shape[0]):
            numpyro.sample(name, likelihood, obs=data.get(name))

    model.__name__ = f"formula_model[{label}]"
    return model
