"""A calibration model as the observation model of a NumPyro model function.

This is the JAX counterpart of calibr8's ``CalibrationModel.loglikelihood(name=...)``
inside a PyMC model: the readouts are observed through the calibration, and
its parameters may be fixed numbers (a calibration fitted earlier), random
variables with priors, or arrays that vary by group (a batch effect on the
intercept), all broadcasting against ``x``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpyro

if TYPE_CHECKING:
    from hierax.calibration.model import CalibrationModel

__all__ = ["calibration_likelihood"]


def calibration_likelihood(
    name: str,
    cal_model: CalibrationModel,
    x: Any,
    theta: Sequence[Any] | Mapping[str, Any] | None = None,
    obs: Any = None,
) -> jax.Array:
    """Observe readouts ``obs`` of the independent quantity ``x`` through a calibration.

    Call it inside a NumPyro model function; it adds the sample site ``name``
    whose distribution is the calibration's noise model around its mean
    function. Use it inside a ``numpyro.plate`` to give the readouts a named
    dimension (hierax turns plate names into dims of the results).

    Parameters
    ----------
    name : str
        Name of the observed site (e.g. ``"readout"``).
    cal_model : CalibrationModel
        The calibration: mean function and noise model.
    x : array-like
        The independent quantity (often a latent variable of the process model,
        such as a concentration); broadcast against ``theta`` and ``obs``.
    theta : sequence or dict, optional
        Calibration parameters in the order of ``cal_model.theta_names`` or by
        name. Each entry is a float, a NumPyro sample or an array that
        broadcasts (``intercept_batch[batch]``). Defaults to the fitted values.
    obs : array-like, optional
        The readouts; ``None`` samples them (prior/posterior predictive).

    Returns
    -------
    jax.Array
        The site's value (``obs`` when observed).

    Examples
    --------
    >>> def model(time_index, timepoints, batch, n_batches, readout=None):  # doctest: +SKIP
    ...     ...
    ...     with numpyro.plate("obs", batch.shape[0]):
    ...         calibration_likelihood(
    ...             "readout", cal, P[time_index],
    ...             theta={"intercept": intercept_batch[batch], "slope": slope, "sigma": sigma},
    ...             obs=readout,
    ...         )
    """
    distribution = cal_model.distribution(x, theta)
    if obs is not None:
        shape = jnp.broadcast_shapes(distribution.batch_shape, jnp.shape(obs))
        if shape != distribution.batch_shape:
            distribution = distribution.expand(shape)
    return numpyro.sample(name, distribution, obs=obs)
