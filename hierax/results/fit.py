"""The :class:`Fit` results object, :func:`fit` for model functions, and :func:`load`."""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import arviz as az
import jax
import numpy as np
import pandas as pd

from hierax.core import interrupt
from hierax.core.device import prng_key
from hierax.core.files import atomic_write, unreadable_reason
from hierax.core.heap import frozen_heap
from hierax.core.version import __version__
from hierax.diagnostics.convergence import Finding, format_findings
from hierax.diagnostics.diagnose import diagnose, fit_dependencies
from hierax.errors import ConvergenceWarning, FileFormatError, HieraxError
from hierax.inference.draws import (
    build_inference_data,
    constant_values,
    observed_values,
    pointwise_log_likelihood,
    prior_draws,
)
from hierax.inference.draws import posterior_predictive as _posterior_predictive
from hierax.inference.engine import run_description, run_plain
from hierax.inference.init import InitValues
from hierax.inference.sampling import (
    ChainMethod,
    EngineResult,
    PreconditionOption,
    check_run_options,
)
from hierax.models.description import ModelDescription
from hierax.models.model_info import ModelInfo
from hierax.present.report import compact_html, write_report

if TYPE_CHECKING:
    from hierax.diagnostics.diagnose import Diagnosis

__all__ = ["Fit", "fit", "load"]

_INFO_ATTR = "hierax_info"


class Fit:
    """Posterior draws of a model with everything needed to read them.

    Attributes
    ----------
    idata : arviz.InferenceData
        posterior, sample_stats, observed_data, constant_data and, on request,
        prior, prior_predictive, posterior_predictive and log_likelihood.
    findings : list of Finding
        Problems found by the convergence check (empty for a healthy fit).
    info : dict
        Sampler settings and timings.
    """

    def __init__(
        self,
        idata: az.InferenceData,
        *,
        findings: Sequence[Finding] | None = None,
        info: Mapping[str, Any] | None = None,
        model_fn: Callable[..., Any] | None = None,
        data: Mapping[str, Any] | None = None,
        model_info: ModelInfo | None = None,
    ) -> None:
        self.idata = idata
        self.info = dict(info or {})
        self.model_fn = model_fn
        self.data = dict(data or {})
        self.model_info = model_info
        self.source_model: Any = None
        self.findings = list(findings) if findings is not None else self._check()

    # ------------------------------------------------------------------ reading
    @property
    def posterior(self) -> Any:
        """The posterior group (an ``xarray.Dataset``)."""
        return self.idata["posterior"]

    def draws(self, name: str, *, combined: bool = True) -> np.ndarray:
        """Draws of one variable: ``(sample, ...)`` if combined else ``(chain, draw, ...)``."""
        if name not in self.posterior:
            raise KeyError(
                f"{name!r} is not a posterior variable; variables: {list(self.posterior.data_vars)}"
            )
        values = np.asarray(self.posterior[name])
        return values.reshape((-1,) + values.shape[2:]) if combined else values

    def summary(
        self,
        var_names: str | Sequence[str] | None = None,
        *,
        hdi_prob: float = 0.94,
        coords: Mapping[str, Any] | None = None,
        filter_vars: str | None = None,
        kind: Literal["all", "stats", "diagnostics"] = "all",
        round_to: int | str = "none",
    ) -> pd.DataFrame:
        """Posterior summary like ``arviz.summary``.

        Parameters
        ----------
        var_names : str or list of str, optional
            Variables to include; a leading ``~`` excludes (``["~r"]``).
        hdi_prob : float
            Probability of the highest density interval (columns ``hdi_3%``...).
        coords : dict, optional
            Coordinate selection, e.g. ``{"star": [0, 1]}``.
        filter_vars : {None, "like", "regex"}
            How ``var_names`` are matched, as in ArviZ.
        kind : {"all", "stats", "diagnostics"}
        round_to : int or "none"

        Returns
        -------
        DataFrame
            mean, sd, HDI bounds, mcse_mean, mcse_sd, ess_bulk, ess_tail, r_hat;
            one row per scalar entry, indexed like ``intercept_batch[0]``.
        """
        if isinstance(var_names, str):
            var_names = [var_names]
        with warnings.catch_warnings():
            # constant entries (a correlation matrix's unit diagonal) have no R-hat
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="arviz")
            return self._summary(var_names, hdi_prob, coords, filter_vars, kind, round_to)

    def _summary(
        self,
        var_names: Sequence[str] | None,
        hdi_prob: float,
        coords: Mapping[str, Any] | None,
        filter_vars: str | None,
        kind: Literal["all", "stats", "diagnostics"],
        round_to: int | str,
    ) -> pd.DataFrame:
        return az.summary(
            self.idata,
            var_names=list(var_names) if var_names is not None else None,
            hdi_prob=hdi_prob,
            coords=dict(coords) if coords else None,
            filter_vars=filter_vars,
            kind=kind,
            round_to=round_to,
        )

    def _check(self) -> list[Finding]:
        self._diagnosis = diagnose(self)
        return list(self._diagnosis.findings)

    def check(self, warn: bool = True) -> list[Finding]:
        """Re-run the convergence checks; warn with one message naming the culprits."""
        self.findings = self._check()
        if warn and self.findings:
            warnings.warn(
                "hierax found problems with this fit:\n" + format_findings(self.findings),
                ConvergenceWarning,
                stacklevel=2,
            )
        return self.findings

    def diagnose(self) -> Diagnosis:
        """Diagnostics with advice (see :func:`hierax.diagnostics.diagnose.diagnose`)."""
        cached = getattr(self, "_diagnosis", None)
        if cached is not None and list(cached.findings) == self.findings:
            return cached
        return diagnose(self)

    def report(self, out: str | os.PathLike[str] = "hierax-report") -> Path:
        """Write a self-contained HTML report into folder ``out``; returns the page's path."""
        return write_report(self, out)

    @property
    def divergences(self) -> int:
        """Number of divergent transitions after warmup."""
        if "sample_stats" not in self.idata.groups():
            return 0  # a file with a posterior only
        stats = self.idata["sample_stats"]
        return int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else 0

    # -------------------------------------------------------------- predictive
    def _require_model(self, what: str) -> None:
        if self.model_fn is None or self.model_info is None:
            raise HieraxError(
                f"{what} needs the model function; this Fit was loaded from a file. "
                "Refit, or use the groups already stored in fit.idata."
            )

    def with_posterior_predictive(self, seed: int = 0) -> Fit:
        """A new Fit whose InferenceData also holds posterior predictive draws."""
        self._require_model("posterior predictive sampling")
        assert self.model_fn is not None and self.model_info is not None
        latent = {
            name: np.asarray(self.posterior[name]) for name in self.model_info.names("latent")
        }
        draws = _posterior_predictive(
            self.model_fn, self.data, latent, self.model_info, prng_key(seed)
        )
        idata = self.idata.copy()
        extra = az.from_dict(
            posterior_predictive=draws,
            dims={n: list(self.model_info.sites[n].dims) for n in draws},
            coords={k: list(v.values) for k, v in self.idata["observed_data"].coords.items()}
            if "observed_data" in self.idata.groups()
            else None,
        )
        idata.extend(extra)
        result = Fit(
            idata,
            findings=self.findings,
            info=self.info,
            model_fn=self.model_fn,
            data=self.data,
            model_info=self.model_info,
        )
        result.source_model = self.source_model
        return result

    def predict(
        self,
        new_data: Any = None,
        *,
        kind: Literal["mean", "response"] = "mean",
        allow_new_levels: bool = False,
        seed: int = 0,
    ) -> Any:
        """Posterior draws of the mean or of new responses for (new) rows (formula fits).

        See :meth:`hierax.Model.predict`.
        """
        if self.source_model is None:
            raise HieraxError(
                "predict needs a fit made by hierax.Model(...).fit(); for a model function use "
                "with_posterior_predictive()."
            )
        return self.source_model.predict(
            self, new_data, kind=kind, allow_new_levels=allow_new_levels, seed=seed
        )

    # ----------------------------------------------------------------- saving
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the InferenceData to NetCDF atomically (a crash leaves no partial file).

        Ctrl-C during the save raises ``KeyboardInterrupt`` and leaves ``path``
        as it was (no partial or corrupt file).
        """
        path = Path(path)
        with interrupt.stop_on_interrupt():  # a Ctrl-C swallowed by h5py is raised again
            if self.model_fn is not None:
                # the model's structure, for diagnosing the fit after it is loaded again
                fit_dependencies(self)
            idata = self.idata.copy()
            idata["posterior"].attrs[_INFO_ATTR] = json.dumps(_jsonable(self.info))
            atomic_write(path, lambda temporary: idata.to_netcdf(str(temporary), engine="h5netcdf"))
        return path

    # ------------------------------------------------------------------ display
    def __repr__(self) -> str:
        posterior = self.posterior
        variables = ", ".join(
            f"{name}{list(posterior[name].dims[2:]) if posterior[name].ndim > 2 else ''}"
            for name in posterior.data_vars
        )
        status = (
            "no problems found"
            if not self.findings
            else f"{len(self.findings)} problem(s): " + ", ".join(f.check for f in self.findings)
        )
        return (
            f"<hierax.Fit: {posterior.sizes['chain']} chains x {posterior.sizes['draw']} draws; "
            f"{self.divergences} divergences; {status}>\n  variables: {variables}"
        )

    def _repr_html_(self) -> str:
        """Compact HTML for Jupyter: chains x draws, divergences, time, problems, first rows."""
        return compact_html(self)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def load(path: str | os.PathLike[str]) -> Fit:
    """Open a fit saved with :meth:`Fit.save` (or any ArviZ NetCDF file with a posterior).

    Only the posterior group is required; a file without sample statistics
    (divergences, tree depths) opens too, and its diagnosis checks what the
    draws alone can show (R-hat, ESS). Loading reads data only: nothing named
    in the file is imported or run.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    FileFormatError
        ``path`` is a folder, cannot be read, is not a NetCDF InferenceData file,
        has no posterior group, or its hierax information is corrupt; the
        message names the file.
    """
    path = Path(path)
    reason = unreadable_reason(path)
    if reason == "does not exist":
        raise FileNotFoundError(f"no such file: {str(path)!r} (the fit file does not exist).")
    if reason is not None:
        raise FileFormatError(f"fit file {str(path)!r} {reason}.")
    try:
        idata = az.from_netcdf(path, engine="h5netcdf")
    except Exception as error:
        raise FileFormatError(
            f"{str(path)!r} is not a NetCDF InferenceData file ({type(error).__name__}: {error})."
        ) from error
    if "posterior" not in idata.groups():
        raise FileFormatError(f"{str(path)!r} holds no posterior group; it is not a saved fit.")
    posterior = idata["posterior"]
    if "chain" not in posterior.dims or "draw" not in posterior.dims or not posterior.data_vars:
        raise FileFormatError(
            f"the posterior group of {str(path)!r} has no variables with dims (chain, draw); "
            "it is not a saved fit."
        )
    info = _read_info(posterior.attrs.pop(_INFO_ATTR, None), path)
    try:
        return Fit(idata, info=info)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise FileFormatError(
            f"{str(path)!r} cannot be read as a fit ({type(error).__name__}: {error}); "
            "it was not written by Fit.save, or was changed since."
        ) from error


#: Types of the entries of ``fit.info`` that hierax reads back from a saved fit.
_INFO_TYPES: dict[str, tuple[type, ...]] = {
    "max_tree_depth": (int,),
    "seed": (int,),
    "chains": (int,),
    "draws": (int,),
    "warmup": (int,),
    "title": (str,),
    "model": (str,),
    "latent_sites": (list,),
    "observed_sites": (list,),
    "marginalized": (list,),
    "description": (dict,),
    "dependencies": (dict,),
    "spec": (dict,),
    "preparation_seconds": (int, float),
    "sampling_seconds": (int, float),
}


def _read_info(raw: Any, path: Path) -> dict[str, Any]:
    """The ``hierax_info`` attribute of a saved fit: a JSON object with entries of known types."""
    if raw is None:
        return {}
    where = f"the {_INFO_ATTR!r} attribute of {str(path)!r}"
    try:
        info = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError as error:
        raise FileFormatError(
            f"{where} is not valid JSON ({error}); the file is corrupt."
        ) from None
    if not isinstance(info, dict):
        raise FileFormatError(
            f"{where} must be a JSON object, got {type(info if info is not None else raw).__name__}; "
            "the file is corrupt."
        )
    for key, types in _INFO_TYPES.items():
        value = info.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            expected = " or ".join(t.__name__ for t in types)
            raise FileFormatError(
                f"{where}: entry {key!r} must be {expected}, got {value!r}; the file is corrupt."
            )
    return info


@frozen_heap()
def fit(
    model_fn: Callable[..., Any],
    data: Mapping[str, Any] | None = None,
    *,
    chains: int = 4,
    draws: int = 1000,
    warmup: int = 1000,
    seed: int | None = None,
    target_accept: float = 0.8,
    init: InitValues | Sequence[InitValues] | None = None,
    dense_mass: bool = False,
    progress: bool | None = None,
    coords: Mapping[str, Sequence[Any]] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    max_tree_depth: int = 10,
    precondition: PreconditionOption = "auto",
    chain_method: ChainMethod = "auto",
    log_likelihood: bool = False,
    posterior_predictive: bool = False,
    prior: bool = False,
    multistart: int = 0,
    warn: bool = True,
) -> Fit:
    """Fit a NumPyro model function with NUTS.

    Parameters
    ----------
    model_fn : callable
        A NumPyro model; called as ``model_fn(**data)``.
    data : dict, optional
        Keyword arguments of the model (arrays, sizes, options). Arrays are
        checked for NaN/inf and emptiness before anything is compiled.
    chains, draws, warmup : int
        Number of chains, retained draws per chain and warmup iterations per chain.
        Run options are checked before anything is built (see
        :func:`hierax.inference.sampling.check_run_options`): a :class:`~hierax.errors.ModelError`
        names the option at fault.
    seed : int, optional
        Seed of every random choice (a whole number >= 0); the same seed gives the
        same draws. A random seed is chosen (and recorded in ``fit.info``) when omitted.
    target_accept : float
        NUTS target acceptance probability; raise it (0.9-0.99) against divergences.
    init : dict or list of dict, optional
        Initial values per latent site (constrained space). One dict is shared by
        all chains; a list gives one dict per chain. By default hierax starts at
        the prior median, searches the posterior mode and disperses the chains
        with draws from the Gaussian approximation there.
    dense_mass : bool
        Adapt a dense mass matrix (on top of hierax's curvature preconditioning).
    progress : bool, optional
        Progress bars; by default on a terminal and off under CI/pytest.
    coords : dict, optional
        Coordinate values per dimension, e.g. ``{"batch": ["batch #1", ...]}``.
    dims : dict, optional
        Dimension names per site or data argument, e.g. ``{"P": ["timepoint"]}``;
        plates name dims automatically.
    max_tree_depth : int
        NUTS maximum tree depth.
    precondition : {"auto", "dense", "diag", "none"}
        Rescaling of the parameters by the curvature at the posterior mode before
        NUTS adapts; "auto" makes NUTS robust to scales that differ by many
        orders of magnitude: a dense transform (correlations too) for up to 64
        parameters, a diagonal one above. "dense" uses the dense transform up
        to 1000 parameters, "diag" never. "none" is plain NumPyro NUTS.
    chain_method : {"auto", "parallel", "vectorized", "sequential"}
    log_likelihood, posterior_predictive, prior : bool
        Also store these InferenceData groups (``prior`` adds prior and
        prior_predictive).
    multistart : int
        Also search the posterior mode from this many dispersed starting points
        (uniform on (-2, 2) in the unconstrained space), cluster the optima
        (``fit.info["precondition"]["multistart"]``) and start every chain in the
        best mode. For multimodal posteriors; chains that still end in different
        modes are reported by the convergence check.
    warn : bool
        Emit a :class:`~hierax.errors.ConvergenceWarning` naming the variables
        at fault when the convergence check finds problems.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist, hierax as hx
    >>> def model(y):
    ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
    ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
    >>> result = hx.fit(model, {"y": np.array([0.1, -0.3, 0.4])}, seed=1)  # doctest: +SKIP
    >>> result.summary()  # doctest: +SKIP
    """
    options = check_run_options(
        {
            "chains": chains,
            "draws": draws,
            "warmup": warmup,
            "seed": seed,
            "target_accept": target_accept,
            "max_tree_depth": max_tree_depth,
            "multistart": multistart,
            "precondition": precondition,
            "chain_method": chain_method,
        }
    )
    chains, draws, warmup = options["chains"], options["draws"], options["warmup"]
    seed, target_accept = options["seed"], options["target_accept"]
    max_tree_depth, multistart = options["max_tree_depth"], options["multistart"]
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
    result = run_plain(
        model_fn,
        data,
        coords=coords,
        dims=dims,
        chains=chains,
        draws=draws,
        warmup=warmup,
        seed=seed,
        target_accept=target_accept,
        init=init,
        dense_mass=dense_mass,
        max_tree_depth=max_tree_depth,
        precondition=precondition,
        chain_method=chain_method,
        progress=progress,
        multistart=multistart,
    )
    return assemble_fit(
        result,
        prior=prior,
        posterior_predictive=posterior_predictive,
        log_likelihood=log_likelihood,
        warn=warn,
    )


def fit_description(
    description: ModelDescription,
    *,
    marginalize: bool | Literal["auto"] = "auto",
    prior: bool = False,
    posterior_predictive: bool = False,
    log_likelihood: bool = False,
    warn: bool = True,
    **options: Any,
) -> Fit:
    """Fit a model description: the engine :func:`~hierax.inference.engine.run_description`
    chooses, then the draws become a checked :class:`Fit`.

    ``options`` are :func:`fit`'s sampler options (chains, draws, warmup, seed,
    target_accept, init, ...) and ``draw_method`` of the collapsed engines.
    """
    options = check_run_options(options)
    result = run_description(description, marginalize=marginalize, **options)
    return assemble_fit(
        result,
        prior=prior,
        posterior_predictive=posterior_predictive,
        log_likelihood=log_likelihood,
        warn=warn,
    )


def assemble_fit(
    result: EngineResult,
    *,
    prior: bool = False,
    posterior_predictive: bool = False,
    log_likelihood: bool = False,
    warn: bool = True,
) -> Fit:
    """Turn an engine's draws of the plain model's sites into a checked :class:`Fit`."""
    model_fn, cleaned, info, data_dims = result.model_fn, result.data, result.info, result.data_dims
    posterior, sample_stats, run_info = result.posterior, result.sample_stats, result.run_info
    seed, draws = result.seed, result.draws
    key = prng_key(seed + 1)
    # split only where needed: splitting compiles a (small) program
    predictive_key, prior_key = (
        jax.random.split(key) if prior or posterior_predictive else (key, key)
    )
    observed = observed_values(model_fn, cleaned, info)
    latent = {k: v for k, v in posterior.items() if k in info.names("latent")}
    prior_group, prior_predictive_group = (None, None)
    if prior:
        prior_group, prior_predictive_group = prior_draws(
            model_fn, cleaned, info, prior_key, num_samples=draws
        )
    attrs = {
        "hierax_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": getattr(model_fn, "__name__", "model"),
    }
    idata = build_inference_data(
        posterior=posterior,
        sample_stats=sample_stats,
        info=info,
        observed=observed,
        constant=constant_values(cleaned, observed),
        data_dims=data_dims,
        prior=prior_group,
        prior_predictive=prior_predictive_group,
        posterior_predictive=_posterior_predictive(model_fn, cleaned, latent, info, predictive_key)
        if posterior_predictive
        else None,
        log_likelihood=pointwise_log_likelihood(model_fn, cleaned, latent, info)
        if log_likelihood
        else None,
        attrs=attrs,
    )
    structure = {
        "latent_sites": info.names("latent"),
        "observed_sites": info.names("observed"),
    }
    fitted = Fit(
        idata,
        info={**run_info, "model": attrs["model"], **structure},
        model_fn=model_fn,
        data=cleaned,
        model_info=info,
    )
    if warn and fitted.findings:
        warnings.warn(
            "hierax found problems with this fit:\n" + format_findings(fitted.findings),
            ConvergenceWarning,
            stacklevel=2,
        )
    return fitted
