"""Initial values: validation of user values and a readable report when the
initial log density is not finite."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.distributions.transforms import biject_to

from hierax.errors import InitializationError, close_matches
from hierax.models.model_info import ModelInfo

InitValues = Mapping[str, Any]


def per_chain_inits(
    init: InitValues | Sequence[InitValues] | None, chains: int, info: ModelInfo
) -> list[dict[str, np.ndarray]] | None:
    """Normalise ``init`` to one dict per chain and validate names and shapes.

    ``init`` may be ``None`` (hierax chooses), one dict (shared by every chain,
    which are then dispersed around it) or a list with one dict per chain.
    A dict may name any subset of the latent sites; the others are initialised
    by hierax.
    """
    if init is None:
        return None
    if isinstance(init, Mapping):
        chain_inits: list[InitValues] = [init] * chains
    else:
        chain_inits = list(init)
        if len(chain_inits) != chains:
            raise InitializationError(
                f"init has {len(chain_inits)} per-chain dicts but chains={chains}; give one dict "
                "per chain, or a single dict shared by all chains."
            )
    latent = {name: info.sites[name] for name in info.names("latent")}
    result: list[dict[str, np.ndarray]] = []
    for chain, values in enumerate(chain_inits):
        if not isinstance(values, Mapping):
            raise InitializationError(
                f"init for chain {chain} must be a dict of site values, got {type(values).__name__}."
            )
        checked: dict[str, np.ndarray] = {}
        for name, value in values.items():
            if name not in latent:
                kind = info.sites[name].kind if name in info.sites else None
                article = "an" if kind == "observed" else "a"
                why = f"it is {article} {kind} site" if kind else "the model has no such site"
                raise InitializationError(
                    f"init names {name!r}, but {why}; initial values can be given for the latent "
                    f"sites {list(latent)}.{close_matches(name, latent)}"
                )
            array = np.asarray(value, dtype=float)
            expected = latent[name].shape
            if array.shape != expected:
                try:
                    array = np.broadcast_to(array, expected).copy()
                except ValueError:
                    raise InitializationError(
                        f"init for site {name!r} has shape {array.shape}, but the site has shape "
                        f"{expected}; give a scalar or an array of shape {expected}."
                    ) from None
            if not np.all(np.isfinite(array)):
                raise InitializationError(f"init for site {name!r} contains NaN or inf values.")
            checked[name] = array
        result.append(checked)
    return result


def site_log_densities(
    model_fn: Callable[..., Any], data: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, float]:
    """Log density of every sample site with the latent sites fixed at ``values``.

    Latent sites missing from ``values`` are drawn from their priors (fixed seed).
    A latent value on the boundary of its support (where the unconstrained
    transform is infinite, e.g. 0 for a Uniform(0, 1)) counts as ``-inf``.
    NumPyro's argument validation is switched off while tracing, so that an
    invalid value (a negative scale) shows up as a non-finite log density of the
    sites that use it instead of an exception.
    """
    substituted = handlers.substitute(handlers.seed(model_fn, rng_seed=0), data=dict(values))
    with numpyro.validation_enabled(False):
        trace = handlers.trace(substituted).get_trace(**data)
        densities: dict[str, float] = {}
        for name, site in trace.items():
            if site["type"] != "sample":
                continue
            value = site["value"]
            support = site["fn"].support
            if not bool(np.all(np.asarray(support(value)))):
                densities[name] = -np.inf
                continue
            if not site["is_observed"]:
                unconstrained = biject_to(support).inv(value)
                if not bool(np.all(np.isfinite(np.asarray(unconstrained)))):
                    densities[name] = -np.inf
                    continue
            log_prob = jnp.sum(site["fn"].log_prob(value))
            densities[name] = float(jax.device_get(log_prob))
    return densities


def check_finite_log_density(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any],
    values: Mapping[str, Any],
    where: str = "the initial values",
) -> None:
    """Raise :class:`InitializationError` listing each site's log density when any is not finite."""
    densities = site_log_densities(model_fn, data, values)
    bad = [name for name, value in densities.items() if not np.isfinite(value)]
    if not bad:
        return
    table = "\n".join(
        f"  {name:<24s} {value: .6g}{'   <-- not finite' if name in bad else ''}"
        for name, value in densities.items()
    )
    raise InitializationError(
        f"the log density at {where} is not finite; the site(s) at fault: {bad}.\n"
        f"Log density per site:\n{table}\n"
        "Check that the initial values lie strictly inside each site's support (not on its "
        "boundary) and that the observed data are possible under them (e.g. a scale parameter "
        "must be positive)."
    )
