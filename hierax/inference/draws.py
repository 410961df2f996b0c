"""Turning sampler output into an ArviZ InferenceData with named dims and coords,
and the predictive groups (prior, prior/posterior predictive, log likelihood)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import arviz as az
import jax
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_likelihood as numpyro_log_likelihood
from numpyro.primitives import Messenger

from hierax.models.model_info import ModelInfo, trace_model


class _Unobserve(Messenger):
    """Treat observed sites as latent, so predictive draws replace the data."""

    def __init__(self, fn: Callable[..., Any] | None = None, sites: set[str] | None = None):
        self.sites = sites
        super().__init__(fn)

    def process_message(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "sample" and msg["is_observed"]:
            if self.sites is None or msg["name"] in self.sites:
                msg["value"] = None
                msg["is_observed"] = False


def _flatten_draws(samples: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}


def _group_by_chain(samples: Mapping[str, Any], chains: int, draws: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v).reshape((chains, draws) + np.shape(v)[1:]) for k, v in samples.items()}


def posterior_predictive(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    posterior: Mapping[str, np.ndarray],
    info: ModelInfo,
    key: jax.Array,
) -> dict[str, np.ndarray]:
    """Draws of every observed site given each posterior draw: ``(chain, draw, *shape)``."""
    chains, draws = next(iter(posterior.values())).shape[:2]
    observed = info.names("observed")
    latent = {k: v for k, v in posterior.items() if k in info.names("latent")}
    predictive = Predictive(
        _Unobserve(model_fn, set(observed)),
        posterior_samples=_flatten_draws(latent),
        return_sites=observed,
    )
    draws_out = predictive(key, **data)
    return _group_by_chain(draws_out, chains, draws)


def prior_draws(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    info: ModelInfo,
    key: jax.Array,
    num_samples: int,
    predictive_too: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Prior draws of latent/deterministic sites and prior predictive draws of observed sites.

    ``predictive_too=False`` leaves the observed sites as data (nothing is
    drawn for them; a smaller program to compile) and returns no predictive draws.
    """
    observed = info.names("observed") if predictive_too else []
    sites = info.names("latent") + info.names("deterministic") + observed
    predictive = Predictive(
        _Unobserve(model_fn, set(observed)) if observed else model_fn,
        num_samples=num_samples,
        return_sites=sites,
    )
    out = _group_by_chain(predictive(key, **data), 1, num_samples)
    prior = {k: v for k, v in out.items() if k not in observed}
    prior_pred = {k: v for k, v in out.items() if k in observed}
    return prior, prior_pred


def pointwise_log_likelihood(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    posterior: Mapping[str, np.ndarray],
    info: ModelInfo,
) -> dict[str, np.ndarray]:
    """Log likelihood of each observation under each posterior draw."""
    chains, draws = next(iter(posterior.values())).shape[:2]
    latent = {k: v for k, v in posterior.items() if k in info.names("latent")}
    values = numpyro_log_likelihood(model_fn, _flatten_draws(latent), **data)
    return _group_by_chain(values, chains, draws)


def observed_values(
    model_fn: Callable[..., Any], data: Mapping[str, Any], info: ModelInfo
) -> dict[str, np.ndarray]:
    """The observed values as the model sees them.

    Read from an abstract trace (nothing runs outside ``jit``); a model that
    computes its observations (``obs=jnp.log(y)``) is run for them.
    """
    names = info.names("observed")
    trace = trace_model(model_fn, data, abstract=True)
    if any(isinstance(trace[name]["value"], jax.core.Tracer) for name in names if name in trace):
        with handlers.seed(rng_seed=0):
            trace = handlers.trace(model_fn).get_trace(**data)
    return {name: np.asarray(trace[name]["value"]) for name in names}


def constant_values(data: Mapping[str, Any], observed: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Numeric data arguments that are not themselves observed values."""
    constants: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            continue
        if any(
            np.shape(obs) == value.shape and np.array_equal(obs, value) for obs in observed.values()
        ):
            continue
        constants[key] = value
    return constants


def _coords_for(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    dims: Mapping[str, list[str]],
    coords: Mapping[str, list[Any]],
) -> dict[str, list[Any]]:
    """Coordinates for every named dim: the user's, else 0..n-1."""
    result: dict[str, list[Any]] = {}
    for group, values in groups.items():
        offset = 0 if group in ("observed_data", "constant_data") else 2
        for name, array in values.items():
            for dim, size in zip(dims.get(name, []), np.shape(array)[offset:], strict=False):
                if dim in coords:
                    result[dim] = list(coords[dim])
                else:
                    result.setdefault(dim, list(range(size)))
    return result


def build_inference_data(
    *,
    posterior: Mapping[str, np.ndarray],
    sample_stats: Mapping[str, np.ndarray],
    info: ModelInfo,
    observed: Mapping[str, np.ndarray],
    constant: Mapping[str, Any],
    data_dims: Mapping[str, list[str]],
    prior: Mapping[str, np.ndarray] | None = None,
    prior_predictive: Mapping[str, np.ndarray] | None = None,
    posterior_predictive: Mapping[str, np.ndarray] | None = None,
    log_likelihood: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> az.InferenceData:
    """Assemble the InferenceData with dims named from plates and coords from group levels."""
    dims: dict[str, list[str]] = {n: list(s.dims) for n, s in info.sites.items()}
    for key, value in constant.items():
        dims[key] = list(data_dims.get(key, [f"{key}_dim_{i}" for i in range(np.ndim(value))]))
    groups: dict[str, Mapping[str, Any]] = {
        "posterior": posterior,
        "observed_data": observed,
        "constant_data": constant,
    }
    optional = {
        "prior": prior,
        "prior_predictive": prior_predictive,
        "posterior_predictive": posterior_predictive,
        "log_likelihood": log_likelihood,
    }
    groups.update({k: v for k, v in optional.items() if v})
    coords = _coords_for(groups, dims, info.coords)
    used_dims = {d for n in dims for d in dims[n]}
    idata = az.from_dict(
        posterior=dict(posterior),
        sample_stats=dict(sample_stats),
        observed_data=dict(observed) or None,
        constant_data={k: np.asarray(v) for k, v in constant.items()} or None,
        prior=dict(prior) if prior else None,
        prior_predictive=dict(prior_predictive) if prior_predictive else None,
        posterior_predictive=dict(posterior_predictive) if posterior_predictive else None,
        log_likelihood=dict(log_likelihood) if log_likelihood else None,
        coords={k: v for k, v in coords.items() if k in used_dims},
        dims={k: v for k, v in dims.items() if v},
        attrs=dict(attrs or {}),
    )
    for group in idata.groups():
        idata[group].attrs.update(dict(attrs or {}))
    return idata
