"""The :class:`CalibrationModel`: a mean function plus a noise model, with fitting,
prediction, inverse prediction, persistence and plots.

The class holds configuration and results; the work is done by pure functions
in the sibling modules (``mean_functions``, ``noise``, ``fitting``,
``inference``, ``persistence``, ``plotting``). Fitting returns a new model:
the model you fit is never modified.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from hierax.calibration import fitting, inference, persistence, plotting
from hierax.calibration._data import Bounds, bound_pairs, theta_vector
from hierax.calibration._range import check_inverse_prediction
from hierax.calibration.fitting import MLEResult
from hierax.calibration.inference import IndependentPosterior
from hierax.calibration.mean_functions import MeanFunction, mean_function
from hierax.calibration.noise import NoiseModel, noise_model
from hierax.core.device import prng_key
from hierax.errors import ModelError, close_matches

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierax.results.fit import Fit

__all__ = ["CalibrationModel", "load_model"]

ThetaLike = Sequence[Any] | Mapping[str, Any] | np.ndarray | jax.Array


class CalibrationModel:
    """A calibration model: readout ``y`` given the independent quantity ``x``.

    ``y ~ noise(mean_function(x, theta_mean), scale(mu, theta_noise))``.

    Parameters
    ----------
    mean : str or MeanFunction
        ``"linear"``, ``"polynomial"``, ``"logistic"``, ``"asymmetric_logistic"``,
        ``"xlog_asymmetric_logistic"``, ``"exponential"``, or your own
        :class:`~hierax.calibration.MeanFunction`.
    noise : str or NoiseModel
        ``"normal"``, ``"studentt"``, ``"laplace"``, ``"lognormal"``, ``"poisson"``
        or a :class:`~hierax.calibration.NoiseModel`.
    degree : int
        Degree of a ``"polynomial"`` mean function.
    scale_degree : int
        The noise scale is a polynomial of ``mu`` of this degree (0: constant).
    theta_names : sequence of str, optional
        Your names for the parameters (mean function's first, then noise's).
    independent_key, dependent_key : str
        Names of x and y (column names, the observed site's name).

    Examples
    --------
    >>> import numpy as np
    >>> from hierax.calibration import CalibrationModel
    >>> x = np.linspace(0, 10, 50)
    >>> y = 0.2 + 0.5 * x + np.random.default_rng(0).normal(0, 0.1, 50)
    >>> cal = CalibrationModel("linear", "normal").fit_mle(x, y)
    >>> cal.predict_independent(2.7)  # doctest: +SKIP
    """

    def __init__(
        self,
        mean: str | MeanFunction = "linear",
        noise: str | NoiseModel = "normal",
        *,
        degree: int = 1,
        scale_degree: int = 0,
        theta_names: Sequence[str] | None = None,
        independent_key: str = "x",
        dependent_key: str = "y",
        theta_fitted: Any = None,
        theta_bounds: Any = None,
        theta_guess: Any = None,
        cal_independent: Any = None,
        cal_dependent: Any = None,
    ) -> None:
        self.mean_function = mean if isinstance(mean, MeanFunction) else mean_function(mean, degree)
        self.noise = noise if isinstance(noise, NoiseModel) else noise_model(noise, scale_degree)
        default_names = self.mean_function.theta_names + self.noise.theta_names
        names = tuple(theta_names) if theta_names is not None else default_names
        if len(names) != len(default_names) or len(set(names)) != len(names):
            raise ModelError(
                f"theta_names {list(names)} must be {len(default_names)} distinct names, one per "
                f"parameter {list(default_names)}."
            )
        self.theta_names: tuple[str, ...] = names
        self.independent_key = independent_key
        self.dependent_key = dependent_key
        self.theta_fitted = _optional_vector(theta_fitted, names, "theta_fitted")
        self.theta_guess = _optional_vector(theta_guess, names, "theta_guess")
        self.theta_bounds = (
            None if theta_bounds is None else tuple(bound_pairs(theta_bounds, names))
        )
        self.cal_independent = (
            None if cal_independent is None else np.asarray(cal_independent, float)
        )
        self.cal_dependent = None if cal_dependent is None else np.asarray(cal_dependent, float)
        self.mle: MLEResult | None = None

    # ------------------------------------------------------------------ names
    @property
    def n_theta(self) -> int:
        return len(self.theta_names)

    @property
    def mean_theta_names(self) -> tuple[str, ...]:
        return self.theta_names[: len(self.mean_function.theta_names)]

    @property
    def noise_theta_names(self) -> tuple[str, ...]:
        return self.theta_names[len(self.mean_function.theta_names) :]

    @property
    def theta_dict(self) -> dict[str, float]:
        """The fitted parameters by name."""
        return dict(zip(self.theta_names, self._fitted().tolist(), strict=True))

    def split_theta(self, theta: ThetaLike | None = None) -> tuple[list[Any], list[Any]]:
        """``(mean_theta, noise_theta)`` lists from a sequence, a name mapping, or the fit.

        Entries are kept as given (floats, arrays, traced values), so they broadcast.
        """
        if theta is None:
            entries: list[Any] = list(self._fitted())
        elif isinstance(theta, Mapping):
            unknown = [key for key in theta if key not in self.theta_names]
            missing = [name for name in self.theta_names if name not in theta]
            if unknown or missing:
                hints = "".join(close_matches(str(k), self.theta_names) for k in unknown)
                raise ModelError(
                    f"theta must name every parameter {list(self.theta_names)}; unknown "
                    f"{unknown}, missing {missing}.{hints}"
                )
            entries = [theta[name] for name in self.theta_names]
        else:
            entries = list(theta)
            if len(entries) != self.n_theta:
                raise ModelError(
                    f"theta has {len(entries)} entries but the model has {self.n_theta} "
                    f"parameters {list(self.theta_names)}."
                )
        split = len(self.mean_function.theta_names)
        return entries[:split], entries[split:]

    def _fitted(self) -> np.ndarray:
        if self.theta_fitted is None:
            raise ModelError(
                "this calibration model has no fitted parameters; call fit_mle(x, y), "
                "with_theta([...]), or pass theta=... explicitly."
            )
        return self.theta_fitted

    # ------------------------------------------------------------- prediction
    def predict_mean(self, x: Any, theta: ThetaLike | None = None) -> jax.Array:
        """The mean function at ``x`` (the location of the readout distribution).

        Every prediction and likelihood goes through this method, so a subclass
        may override it (with ``predict_independent``) instead of giving a
        MeanFunction.
        """
        mean_theta, _ = self.split_theta(theta)
        return self.mean_function(x, mean_theta)

    def predict_dependent(self, x: Any, theta: ThetaLike | None = None) -> tuple[jax.Array, ...]:
        """Parameters of the readout distribution at ``x``, as calibr8 returns them.

        Returns
        -------
        tuple of arrays
            Named by ``self.noise.parameter_names``: ``(mu, sigma)`` for Normal,
            ``(mu, scale, df)`` for StudentT, ``(mu, scale)`` for Laplace,
            ``(median, sigma)`` for LogNormal, ``(mu,)`` for Poisson.
        """
        _, noise_theta = self.split_theta(theta)
        return self.noise.parameters(self.predict_mean(x, theta), noise_theta)

    def predict_independent(self, y: Any, theta: ThetaLike | None = None) -> jax.Array:
        """The x whose predicted mean is ``y`` (the mean function's inverse).

        Warns
        -----
        CalibrationWarning
            When no x gives the mean ``y`` (beyond an asymptote: the result is
            NaN), and when the result lies outside the ``x`` range of the
            calibration data (an extrapolation). Not checked inside ``jit``.
        """
        mean_theta, _ = self.split_theta(theta)
        x = self.mean_function.invert(y, mean_theta)
        check_inverse_prediction(self, y, x, theta)
        return x

    def distribution(self, x: Any, theta: ThetaLike | None = None) -> dist.Distribution:
        """The NumPyro distribution of readouts at ``x``."""
        _, noise_theta = self.split_theta(theta)
        return self.noise.distribution(self.predict_mean(x, theta), noise_theta)

    def loglikelihood(
        self, *, y: Any, x: Any, theta: ThetaLike | None = None, reduce: bool = True
    ) -> jax.Array:
        """Log likelihood of readouts ``y`` at ``x``: summed, or elementwise with
        ``reduce=False``; ``-inf`` for readouts outside the noise model's support."""
        _, noise_theta = self.split_theta(theta)
        values = self.noise.log_prob(y, self.predict_mean(x, theta), noise_theta)
        return jnp.sum(values) if reduce else values

    def objective(self, x: Any, y: Any) -> Callable[[jax.Array], jax.Array]:
        """Negative log likelihood of calibration data as a function of a theta vector."""
        x_array, y_array = jnp.asarray(x), jnp.asarray(y)
        return lambda theta: -self.loglikelihood(y=y_array, x=x_array, theta=list(theta))

    def simulate(self, x: Any, theta: ThetaLike | None = None, seed: int = 0) -> np.ndarray:
        """Random readouts at ``x`` (one per element)."""
        return np.array(self.distribution(x, theta).sample(prng_key(seed)))

    # -------------------------------------------------------------------- fits
    def with_theta(self, theta: ThetaLike) -> CalibrationModel:
        """A copy with fixed parameters (e.g. from a data sheet)."""
        values = theta_vector(theta, self.theta_names, "theta")  # type: ignore[arg-type]
        return self._replace(theta_fitted=values)

    def fit_mle(
        self,
        x: Any,
        y: Any,
        *,
        guess: Sequence[float] | Mapping[str, float] | None = None,
        bounds: Bounds | None = None,
        global_search: bool = False,
        seed: int = 0,
    ) -> CalibrationModel:
        """Maximum-likelihood fit; returns a new fitted model (``.mle`` has the details).

        Parameters
        ----------
        x, y : array-like
            Calibration data; rows with NaN/inf are dropped with a
            :class:`~hierax.errors.CalibrationWarning` that says how many.
        guess : sequence or dict, optional
            Starting point; by default a heuristic for the mean function refined
            by least squares.
        bounds : sequence of (lower, upper) or dict, optional
            Box bounds (``None`` for unbounded). By default only constant scales
            and ``df`` are bounded below by 0.
        global_search : bool
            Explore the whole box with differential evolution first (every
            parameter needs finite bounds).
        seed : int
            Seed of the global search.

        Raises
        ------
        DataError
            For data that cannot determine the fit: fewer finite points than
            parameters, fewer distinct ``x`` than the mean function has
            parameters (or than a mean-dependent noise scale has coefficients),
            or all ``y`` equal. The message names the variable and how many
            distinct values are needed.

        Warns
        -----
        CalibrationWarning
            When the optimiser did not converge, a parameter ended on a bound,
            or standard errors are not finite (the data determine the curve but
            not every parameter, e.g. readouts without noise); the warning
            names the parameters.
        """
        result, start, box, x_array, y_array = fitting.fit_mle(
            self, x, y, guess=guess, bounds=bounds, global_search=global_search, seed=seed
        )
        fitted = self._replace(
            theta_fitted=result.theta,
            theta_guess=start,
            theta_bounds=box,
            cal_independent=x_array,
            cal_dependent=y_array,
        )
        fitted.mle = result
        return fitted

    def fit_bayes(
        self,
        x: Any,
        y: Any,
        priors: Mapping[str, Any] | None = None,
        *,
        bounds: Bounds | None = None,
        **fit_kwargs: Any,
    ) -> Fit:
        """Posterior over theta with :func:`hierax.fit` (NUTS).

        Parameters
        ----------
        x, y : array-like
            Calibration data (NaN/inf rows dropped with a warning). Unlike
            ``fit_mle``, few or repeated ``x`` are allowed: the priors keep the
            posterior proper where the data do not determine a parameter.
        priors : dict, optional
            ``{name: numpyro distribution or fixed float}``. Parameters without a
            prior need finite ``bounds``, which then mean a uniform prior.
        **fit_kwargs
            Passed to :func:`hierax.fit` (``chains``, ``draws``, ``seed``, ...).

        Returns
        -------
        Fit
            Posterior variables named by ``theta_names``.
        """
        return fitting.fit_bayes(self, x, y, priors, bounds, **fit_kwargs)

    # ------------------------------------------------------- inverse prediction
    def infer_independent(
        self,
        y: Any,
        lower: float,
        upper: float,
        *,
        steps: int = 1000,
        ci_prob: float = 0.95,
        log_prior: Callable[[jax.Array], jax.Array] | None = None,
        theta: ThetaLike | None = None,
    ) -> IndependentPosterior:
        """Posterior of x given readouts, on a grid over ``[lower, upper]``.

        Parameters
        ----------
        y : float or array
            A float or 1-D array: replicate readouts of one unknown x. A 2-D
            array ``(case, replicate)`` infers many unknowns at once (NaN pads
            missing replicates).
        lower, upper : float
            Uniform prior interval (and grid range).
        steps : int
            Grid points.
        ci_prob : float
            Probability of the ETI and HDI.
        log_prior : callable, optional
            Log prior density of x (up to a constant); uniform by default.
        theta : optional
            Parameters; the fitted ones by default.

        Returns
        -------
        IndependentPosterior
            ``median``, ``eti_lower/upper``, ``hdi_lower/upper`` (hull),
            ``hdi_intervals`` (a union for multimodal posteriors), ``pdf``,
            ``out_of_range``.

        Warns
        -----
        CalibrationWarning
            When a readout lies outside what the calibration produces for any
            x in ``[lower, upper]`` (beyond the central 99.9999 % of the noise
            around the mean): the posterior then sits at an end of the interval
            because of the interval, not the data. The warning names the
            readouts and the producible range; ``out_of_range`` marks the cases.
        """
        return inference.infer_independent(
            self, y, lower, upper, steps=steps, ci_prob=ci_prob, log_prior=log_prior, theta=theta
        )

    # --------------------------------------------------------- saving, plotting
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as versioned JSON (see :mod:`hierax.calibration.persistence`)."""
        return persistence.save_model(self, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mean: str | MeanFunction | None = None,
        noise: str | NoiseModel | None = None,
    ) -> CalibrationModel:
        """Read a model saved with :meth:`save`.

        ``mean``/``noise`` state what you expect (a custom MeanFunction must be
        given); a file of another model type raises
        :class:`~hierax.errors.IncompatibleModelError`, one of an incompatible
        major format version :class:`~hierax.errors.IncompatibleVersionError`.
        """
        fields = persistence.read_model(path, model_type=cls.__name__, mean=mean, noise=noise)
        # subclasses may fix mean and noise in their own __init__: fill the object
        # through the base initialiser with what the file says
        model = cls.__new__(cls)
        CalibrationModel.__init__(model, **fields)
        return model

    def plot_model(self, **kwargs: Any) -> Figure:
        """Data, median and likelihood bands over linear and log x, and residuals."""
        return plotting.plot_model(self, **kwargs)

    # ------------------------------------------------------------------ basics
    def _replace(self, **changes: Any) -> CalibrationModel:
        new = copy.copy(self)
        new.mle = None
        for key, value in changes.items():
            if key in ("theta_fitted", "theta_guess"):
                value = _optional_vector(value, self.theta_names, key)
            elif key == "theta_bounds" and value is not None:
                value = tuple(bound_pairs(value, self.theta_names))
            elif value is not None and key in ("cal_independent", "cal_dependent"):
                value = np.asarray(value, float)
            setattr(new, key, value)
        return new

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, CalibrationModel)
        return (
            self.mean_function.name == other.mean_function.name
            and self.mean_function.degree == other.mean_function.degree
            and self.noise == other.noise
            and self.theta_names == other.theta_names
            and self.independent_key == other.independent_key
            and self.dependent_key == other.dependent_key
            and self.theta_bounds == other.theta_bounds
            and all(
                _same(getattr(self, name), getattr(other, name))
                for name in ("theta_fitted", "theta_guess", "cal_independent", "cal_dependent")
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        mean = self.mean_function.name + (
            f"(degree={self.mean_function.degree})" if self.mean_function.degree is not None else ""
        )
        noise = self.noise.name + (
            f"(scale_degree={self.noise.scale_degree})" if self.noise.scale_degree else ""
        )
        if self.theta_fitted is None:
            theta = f"unfitted; parameters {list(self.theta_names)}"
        else:
            theta = ", ".join(f"{n}={v:.6g}" for n, v in self.theta_dict.items())
        return f"<CalibrationModel {mean} + {noise} noise: {theta}>"


def load_model(
    path: str | os.PathLike[str],
    *,
    model_class: type[CalibrationModel] | None = None,
    mean: str | MeanFunction | None = None,
    noise: str | NoiseModel | None = None,
) -> CalibrationModel:
    """Read a model written by :func:`~hierax.calibration.save_model`.

    ``model_class`` (default :class:`CalibrationModel`) is the class to load
    into; the file's ``model_type`` must be its name. See
    :meth:`CalibrationModel.load` and :func:`hierax.calibration.persistence.read_model`
    for ``mean``, ``noise`` and the errors raised.
    """
    return (model_class or CalibrationModel).load(path, mean=mean, noise=noise)


def _optional_vector(value: Any, names: Sequence[str], what: str) -> np.ndarray | None:
    return None if value is None else theta_vector(value, names, what)


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
