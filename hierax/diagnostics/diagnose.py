"""Diagnostics with advice: what is wrong with a fit, where, why, and what to do.

:func:`diagnose` runs the baseline convergence checks of
:mod:`hierax.diagnostics.convergence` (rank-normalised R-hat, bulk/tail ESS, divergences,
tree depth, E-BFMI, chains in different modes) and the structural checks that
name a culprit:

* **where divergences concentrate**: divergent against non-divergent draws,
  per parameter and per group level;
* **funnels**: a group sd against the spread of the group effects it scales
  (centered effects that shrink with the sd: non-center them; non-centered
  offsets that grow as the sd shrinks while the sampler struggles: center them);
* **non-identified directions**: combinations of parameters whose posterior
  is no narrower than their prior while the parameters are almost perfectly
  correlated (two intercepts that only enter as a sum).

The result, a :class:`Diagnosis`, prints as one paragraph per finding and
renders as HTML in Jupyter and in the report. A healthy fit reports nothing.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.linalg

from hierax.core.device import prng_key
from hierax.diagnostics.convergence import Finding, check_convergence, convergence_table
from hierax.inference.draws import prior_draws

if TYPE_CHECKING:
    from hierax.results.fit import Fit

__all__ = ["Diagnosis", "diagnose", "fit_dependencies", "model_dependencies"]

#: A direction whose posterior variance is at least this share of its prior variance
#: is "no narrower than the prior" (posterior sd >= 0.71 prior sd).
UNIDENTIFIED_VARIANCE_RATIO = 0.5
#: Parameters this correlated (in absolute value) are "almost perfectly correlated".
RIDGE_CORRELATION = 0.9
#: Without prior draws, only scalar parameters this correlated are reported.
RIDGE_CORRELATION_WITHOUT_PRIOR = 0.99
#: Correlation of log(sd) with log(spread of the effects) that marks a funnel.
FUNNEL_CORRELATION = 0.5
#: Standardised shift of divergent draws against the rest that counts as "concentrated".
DIVERGENCE_SHIFT = 0.5
PRIOR_DRAWS = 500
#: Fewer divergent draws than this are not localised.
MIN_DIVERGENCES_TO_LOCATE = 5


@dataclass(frozen=True)
class Diagnosis:
    """Findings of :func:`diagnose` and the per-entry convergence table.

    Attributes
    ----------
    findings : list of Finding
        One per problem (``check``, ``message``, ``variables``); empty when healthy.
    table : DataFrame
        Per scalar entry: ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_sd``.
    """

    findings: Sequence[Finding] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    def checks(self) -> list[str]:
        """The kinds of the findings, e.g. ``["divergences", "funnel"]``."""
        return [f.check for f in self.findings]

    def __getitem__(self, check: str) -> Finding:
        for finding in self.findings:
            if finding.check == check:
                return finding
        raise KeyError(f"no {check!r} finding; findings: {self.checks()}")

    def __contains__(self, check: object) -> bool:
        return check in self.checks()

    def __str__(self) -> str:
        if not self.findings:
            return "hierax diagnosis: no problems found."
        lines = [f"hierax diagnosis: {len(self.findings)} finding(s)"]
        lines += [f"- [{f.check}] {f.message}" for f in self.findings]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self) -> str:
        """The findings as an HTML fragment (a list of paragraphs)."""
        if not self.findings:
            return '<p class="hierax-ok">No problems found.</p>'
        items = "".join(
            f'<li class="hierax-finding"><b>{html.escape(f.check)}</b>: '
            f"{html.escape(f.message)}</li>"
            for f in self.findings
        )
        return f'<ul class="hierax-findings">{items}</ul>'


# ---------------------------------------------------------------- model structure


def model_dependencies(model_fn: Any, data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Which sample sites each sample site's distribution depends on.

    ``{"theta": ["mu", "tau"], "y": ["theta"]}``, from NumPyro's provenance
    tracking (:func:`numpyro.infer.inspect.get_dependencies`). Empty when the
    model cannot be traced that way.
    """
    from numpyro.infer.inspect import get_dependencies

    try:
        found = get_dependencies(model_fn, model_kwargs=dict(data))["prior_dependencies"]
    except Exception:  # provenance tracing is best effort; diagnostics degrade gracefully
        return {}
    return {site: sorted(p for p in parents if p != site) for site, parents in found.items()}


def fit_dependencies(fit: Fit) -> dict[str, list[str]]:
    """:func:`model_dependencies` of a fit, computed once and kept in ``fit.info``.

    A fit loaded from a file has no model function: it uses what was kept
    when it was saved (:meth:`hierax.Fit.save` stores them), else nothing.
    """
    found = fit.info.get("dependencies")
    if found is None:
        found = model_dependencies(fit.model_fn, fit.data) if fit.model_fn is not None else {}
        fit.info["dependencies"] = found
    return dict(found)


@dataclass
class _Context:
    """What the checks read from a fit."""

    posterior: dict[str, np.ndarray]  # latent sites, (chain, draw, ...)
    dims: dict[str, tuple[str, ...]]
    coords: dict[str, list[Any]]
    observed: list[str]
    divergent: np.ndarray | None  # (chain, draw) bool
    fit: Fit

    @functools.cached_property
    def parents(self) -> dict[str, list[str]]:
        """Each sample site's parent sites (:func:`fit_dependencies`).

        Only the checks that explain a problem read them: a healthy fit is
        diagnosed without tracing the model's provenance.
        """
        return {k: list(v) for k, v in fit_dependencies(self.fit).items()}

    def positive(self, name: str) -> bool:
        return bool(np.all(self.posterior[name] > 0))

    def flat(self, name: str) -> np.ndarray:
        """(n_draws, entries) draws of a site; log scale for positive sites."""
        values = self.posterior[name]
        values = values.reshape(values.shape[0] * values.shape[1], -1)
        return np.log(values) if self.positive(name) else values

    def label(self, name: str, entry: int) -> str:
        dims = self.dims.get(name, ())
        shape = self.posterior[name].shape[2:]
        if not shape:
            return name
        index = np.unravel_index(entry, shape)
        parts = []
        for axis, i in enumerate(index):
            dim = dims[axis] if axis < len(dims) else ""
            values = self.coords.get(dim)
            parts.append(str(values[i]) if values is not None and i < len(values) else str(i))
        return f"{name}[{', '.join(parts)}]"


def _context(fit: Fit) -> _Context:
    posterior = fit.idata["posterior"]
    latent: list[str]
    if fit.model_info is not None:
        latent = fit.model_info.names("latent")
        observed = fit.model_info.names("observed")
    else:
        latent = list(fit.info.get("latent_sites", []))
        observed = list(fit.info.get("observed_sites", []))
    latent = [n for n in latent if n in posterior] or [str(n) for n in posterior.data_vars]
    stats = fit.idata["sample_stats"] if "sample_stats" in fit.idata.groups() else None
    divergent = (
        np.asarray(stats["diverging"], dtype=bool)
        if stats is not None and "diverging" in stats
        else None
    )
    return _Context(
        posterior={n: np.asarray(posterior[n], dtype=float) for n in latent},
        dims={n: tuple(str(d) for d in posterior[n].dims[2:]) for n in latent},
        coords={
            str(d): list(posterior.coords[d].values)
            for d in posterior.dims
            if d in posterior.coords
        },
        observed=observed,
        divergent=divergent,
        fit=fit,
    )


# ------------------------------------------------------------------- divergences


def _shift(values: np.ndarray, divergent: np.ndarray) -> float:
    """Standardised difference of divergent draws' median from the others'."""
    spread = values.std()
    if spread == 0 or divergent.all() or not divergent.any():
        return 0.0
    return float((np.median(values[divergent]) - np.median(values[~divergent])) / spread)


def _divergence_locations(ctx: _Context, limit: int = 4) -> list[tuple[str, float]]:
    """Entries whose divergent draws sit furthest from the others, as (label, shift)."""
    assert ctx.divergent is not None
    divergent = ctx.divergent.reshape(-1)
    shifts: list[tuple[str, float]] = []
    for name in ctx.posterior:
        flat = ctx.flat(name)
        for entry in range(flat.shape[1]):
            shift = _shift(flat[:, entry], divergent)
            if abs(shift) >= DIVERGENCE_SHIFT:
                shifts.append((ctx.label(name, entry), shift))
    shifts.sort(key=lambda item: -abs(item[1]))
    return shifts[:limit]


# ------------------------------------------------------------------------ funnels


@dataclass(frozen=True)
class _Funnel:
    scale: str
    effects: str
    correlation: float  # log(scale) vs log(spread of effects)
    centered: bool
    divergence_shift: float  # of log(scale) in divergent draws


def _spread(values: np.ndarray, columns: int | None) -> np.ndarray:
    """Per-draw log sd of the effects across levels (one column per scale entry)."""
    if columns is None:
        flat = values.reshape(values.shape[0], -1)
        return np.log(flat.std(axis=1) + 1e-300)[:, None]
    levels = values.reshape(values.shape[0], -1, columns)
    return np.log(levels.std(axis=1) + 1e-300)


def _scale_columns(scale_shape: tuple[int, ...], effect_shape: tuple[int, ...]) -> int | None:
    if not scale_shape:
        return None
    if len(scale_shape) == 1 and effect_shape and effect_shape[-1] == scale_shape[0]:
        return scale_shape[0]
    return -1


def _funnel_pairs(ctx: _Context) -> list[tuple[str, str, bool]]:
    """(scale, effects, centered) candidates from the model's dependencies."""
    pairs: list[tuple[str, str, bool]] = []
    vectors = [n for n in ctx.posterior if np.prod(ctx.posterior[n].shape[2:], dtype=int) > 1]
    for effects in vectors:
        scales = [p for p in ctx.parents.get(effects, []) if p in ctx.posterior and ctx.positive(p)]
        pairs += [(s, effects, True) for s in scales]
    # non-centered offsets: z ~ Normal(0, 1) and a positive scale that feed the same site
    for parents in ctx.parents.values():
        known = [p for p in parents if p in ctx.posterior]
        for effects in known:
            if effects not in vectors or ctx.parents.get(effects):
                continue
            for scale in known:
                if scale != effects and ctx.positive(scale) and ctx.posterior[scale].size > 0:
                    pair = (scale, effects, False)
                    if pair not in pairs and not any(p[:2] == pair[:2] for p in pairs):
                        pairs.append(pair)
    return pairs


def _funnels(ctx: _Context) -> list[_Funnel]:
    found: list[_Funnel] = []
    divergent = ctx.divergent.reshape(-1) if ctx.divergent is not None else None
    # effects drawn exactly from their conditional Gaussian were never seen by the sampler
    marginalized = set(ctx.fit.info.get("marginalized", []))
    # ... and so were the non-centered offsets z_<g> derived from marginalized r_<g>
    marginalized |= {f"z_{name[2:]}" for name in marginalized if name.startswith("r_")}
    for scale, effects, centered in _funnel_pairs(ctx):
        if scale == effects or effects in marginalized:
            continue
        s_draws = ctx.posterior[scale]
        e_draws = ctx.posterior[effects]
        columns = _scale_columns(s_draws.shape[2:], e_draws.shape[2:])
        if columns == -1:
            continue
        log_scale = np.log(s_draws.reshape(s_draws.shape[0] * s_draws.shape[1], -1))
        spread = _spread(e_draws.reshape((-1,) + e_draws.shape[2:]), columns)
        for j in range(log_scale.shape[1]):
            x, y = log_scale[:, j], spread[:, min(j, spread.shape[1] - 1)]
            if x.std() == 0 or y.std() == 0:
                continue
            correlation = float(np.corrcoef(x, y)[0, 1])
            shift = _shift(x, divergent) if divergent is not None else 0.0
            label = ctx.label(scale, j) if log_scale.shape[1] > 1 else scale
            found.append(_Funnel(label, effects, correlation, centered, shift))
    return found


def _explain_divergences(finding: Finding, ctx: _Context) -> list[Finding]:
    """The divergence finding, rewritten to say where they are and what to change."""
    assert ctx.divergent is not None
    n_div = int(ctx.divergent.sum())
    total = ctx.divergent.size
    head = f"{n_div} divergent transition(s) of {total} draws ({100 * n_div / total:.1f} %)"
    funnels = [
        f
        for f in _funnels(ctx)
        if f.centered and f.correlation > FUNNEL_CORRELATION and f.divergence_shift < 0
    ]
    # a handful of divergent draws is too few to say where they concentrate
    locations = _divergence_locations(ctx) if n_div >= MIN_DIVERGENCES_TO_LOCATE else []
    variables: list[str] = []
    if funnels:
        funnel = max(funnels, key=lambda f: (-f.divergence_shift, f.correlation))
        scale_name = funnel.scale.partition("[")[0]
        s_draws = np.exp(ctx.flat(scale_name)).reshape(-1, ctx.flat(scale_name).shape[1])
        entry = 0 if "[" not in funnel.scale else _entry_of(ctx, funnel.scale)
        values = s_draws[:, entry]
        divergent = ctx.divergent.reshape(-1)
        dims = ctx.dims.get(funnel.effects, ())
        over = f" across {dims[0]}" if dims else ""
        message = (
            f"{head}. They concentrate where the group sd {funnel.scale} is small (median "
            f"{np.median(values[divergent]):.3g} in divergent draws against "
            f"{np.median(values):.3g} overall), and the group effects {funnel.effects} shrink "
            f"with it (their spread{over} follows {funnel.scale}: correlation of the logs "
            f"{funnel.correlation:.2f}). This is a funnel: where {funnel.scale} is small the "
            f"effects must sit in a narrow neck that NUTS cannot enter with one step size, so "
            f"that part of the posterior is missed and the estimates of {funnel.scale} are "
            f"biased upwards. {_noncenter_fix(ctx, funnel)} Raising target_accept only "
            "hides a funnel."
        )
        variables = [funnel.scale, funnel.effects]
        return [Finding("divergences", message, tuple(variables))]
    if locations:
        where = ", ".join(
            f"{label} ({'lower' if shift < 0 else 'higher'} by {abs(shift):.1f} sd)"
            for label, shift in locations
        )
        message = (
            f"{head}: the sampler missed part of the posterior. Divergent draws differ most "
            f"from the others in {where}, so the trouble is in the geometry around these "
            "parameters: look for a group sd whose effects are centered (non-center them), a "
            "parameter pushed against a bound, or a strong nonlinear correlation (pair plot of "
            "these). With only a few divergences, target_accept=0.95-0.99 may be enough."
        )
        variables = [label for label, _ in locations]
        return [Finding("divergences", message, tuple(variables))]
    return [finding]


def _noncenter_fix(ctx: _Context, funnel: _Funnel) -> str:
    """'Non-center theta: theta = mu + tau * z ...' for a centered funnel."""
    scale_name = funnel.scale.partition("[")[0]
    locations_of = [
        p for p in ctx.parents.get(funnel.effects, []) if p != scale_name and p in ctx.posterior
    ]
    location = locations_of[0] if locations_of else "mean"
    return (
        f"Non-center {funnel.effects}: {funnel.effects} = {location} + {scale_name} * z with "
        "z ~ Normal(0, 1) (in hierax formula models: centered=False for that term)."
    )


def _entry_of(ctx: _Context, label: str) -> int:
    name = label.partition("[")[0]
    size = int(np.prod(ctx.posterior[name].shape[2:], dtype=int))
    for entry in range(size):
        if ctx.label(name, entry) == label:
            return entry
    return 0


def _centering_advice(
    ctx: _Context, troubled: bool, explained: Sequence[str] = ()
) -> list[Finding]:
    """Advice on the parameterization of group effects (only when the fit is troubled).

    Non-centered offsets that the data pin down: center them. Centered effects
    that shrink with their sd, in a fit that struggles without divergences to
    show for it (the chains stuck at different depths of the funnel's neck,
    with long trajectories): non-center them. ``explained`` are the effects a
    divergence finding already covers.
    """
    if not troubled:
        return []
    findings: list[Finding] = []
    for funnel in _funnels(ctx):
        if funnel.centered:
            if funnel.correlation < FUNNEL_CORRELATION or funnel.effects in explained:
                continue
            if any(f.check == "funnel" and funnel.effects in f.variables for f in findings):
                continue
            findings.append(
                Finding(
                    "funnel",
                    f"The group effects {funnel.effects} shrink with their sd {funnel.scale} "
                    f"(correlation of log {funnel.scale} with the log spread of "
                    f"{funnel.effects}: {funnel.correlation:.2f}) and the sampler struggles: "
                    f"a funnel. Where {funnel.scale} is small the effects sit in a narrow "
                    f"neck that NUTS enters poorly, so chains stall at different depths of it "
                    f"and the estimates of {funnel.scale} are biased upwards. "
                    + _noncenter_fix(ctx, funnel),
                    (funnel.scale, funnel.effects),
                )
            )
            continue
        if funnel.correlation > -FUNNEL_CORRELATION:
            continue
        findings.append(
            Finding(
                "funnel",
                f"The non-centered offsets {funnel.effects} grow as the group sd {funnel.scale} "
                f"shrinks (correlation of log {funnel.scale} with the log spread of "
                f"{funnel.effects}: {funnel.correlation:.2f}): the data fix the group effects "
                f"themselves, so in non-centered form the sampler must follow an inverted "
                f"funnel, which costs divergences or long trajectories. Center this term "
                f"(sample the effects as Normal(mean, {funnel.scale}); in hierax formula models "
                f"centered=True for it).",
                (funnel.scale, funnel.effects),
            )
        )
    return findings


# ------------------------------------------------------------ non-identifiability


def _columns(
    draws: Mapping[str, np.ndarray], names: Sequence[str], positive: Mapping[str, bool]
) -> tuple[np.ndarray, list[str]]:
    """(n, k) matrix: scalar sites, and per vector site its mean over the first axis."""
    columns: list[np.ndarray] = []
    labels: list[str] = []
    for name in names:
        values = np.asarray(draws[name], dtype=float)
        values = values.reshape((values.shape[0] * values.shape[1],) + values.shape[2:])
        if positive[name]:
            values = np.log(np.maximum(values, 1e-300))
        if values.ndim == 1:
            columns.append(values)
            labels.append(name)
            continue
        mean = values.mean(axis=1).reshape(values.shape[0], -1)
        if mean.shape[1] > 10:
            mean = mean.mean(axis=1, keepdims=True)
        for j in range(mean.shape[1]):
            columns.append(mean[:, j])
            suffix = f"[:, {j}]" if mean.shape[1] > 1 else ""
            labels.append(f"{name}{suffix} (mean over levels)")
    return np.column_stack(columns), labels


def _robust_cov(matrix: np.ndarray) -> np.ndarray:
    low, high = np.percentile(matrix, [1, 99], axis=0)
    return np.atleast_2d(np.cov(np.clip(matrix, low, high), rowvar=False))


def _prior_draws(ctx: _Context, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    idata = ctx.fit.idata
    if "prior" in idata.groups() and all(n in idata["prior"] for n in names):
        return {n: np.asarray(idata["prior"][n], dtype=float) for n in names}
    fit = ctx.fit
    if fit.model_fn is None or fit.model_info is None:
        return None
    try:
        prior, _ = prior_draws(
            fit.model_fn,
            fit.data,
            fit.model_info,
            prng_key(0),
            PRIOR_DRAWS,
            predictive_too=False,
        )
    except Exception:  # a model whose prior cannot be drawn: fall back to correlations
        return None
    _keep_prior(fit, prior)
    return {n: np.asarray(prior[n], dtype=float) for n in names if n in prior}


def _keep_prior(fit: Fit, prior: Mapping[str, np.ndarray]) -> None:
    """Store the prior draws as the fit's ``prior`` group, so a saved fit keeps them."""
    import xarray as xr

    idata = fit.idata
    if "prior" in idata.groups():
        return
    posterior = idata["posterior"]
    variables = {}
    for name, values in prior.items():
        if name not in posterior or np.shape(values)[2:] != posterior[name].shape[2:]:
            continue
        dims = posterior[name].dims[2:]
        variables[name] = xr.DataArray(
            np.asarray(values),
            dims=("chain", "draw", *dims),
            coords={d: posterior.coords[d].values for d in dims if d in posterior.coords},
        )
    if variables:
        idata.add_groups(prior=xr.Dataset(variables))


def _combination(a: str, b: str, sign: float) -> str:
    return f"{a} {'+' if sign > 0 else '-'} {b}"


def _plain(label: str) -> str:
    return label.replace(" (mean over levels)", "")


def _non_identified(ctx: _Context) -> list[Finding]:
    names = [n for n in ctx.posterior if ctx.posterior[n].ndim >= 2]
    info = ctx.fit.model_info
    if info is not None:
        # deterministic sites are functions of the latent ones: they add no direction,
        # only correlations with what they are computed from
        latent = set(info.names("latent"))
        names = [n for n in names if n in latent] or names
    if len(names) < 1:
        return []
    positive = {n: ctx.positive(n) for n in names}
    post, labels = _columns(ctx.posterior, names, positive)
    # constants (fixed values, a correlation matrix's unit diagonal) carry no information
    keep = post.std(axis=0) > 1e-9 * np.maximum(1.0, np.abs(post.mean(axis=0)))
    post, labels = post[:, keep], [lab for lab, k in zip(labels, keep, strict=True) if k]
    if post.shape[1] < 2:
        return []
    correlation = np.corrcoef(post, rowvar=False)
    np.fill_diagonal(correlation, 0.0)
    if np.abs(correlation).max() < RIDGE_CORRELATION:
        return []
    prior = _prior_draws(ctx, names)
    if prior is None or set(prior) != set(names):
        return _ridge_without_prior(ctx, post, labels, correlation)
    prior_matrix, prior_labels = _columns(prior, names, positive)
    prior_matrix = prior_matrix[:, keep]
    scale = prior_matrix.std(axis=0)
    scale[scale == 0] = 1.0
    c_post = _robust_cov(post / scale)
    c_prior = _robust_cov(prior_matrix / scale)
    c_prior += 1e-9 * np.eye(len(c_prior))
    ratios, vectors = scipy.linalg.eigh(c_post, c_prior)
    findings: list[Finding] = []
    used: set[str] = set()
    for index in np.argsort(ratios)[::-1]:
        ratio = float(ratios[index])
        if ratio < UNIDENTIFIED_VARIANCE_RATIO:
            break
        vector = vectors[:, index] / np.linalg.norm(vectors[:, index])
        weights = vector**2
        involved = [i for i in np.argsort(weights)[::-1] if weights[i] >= 0.05]
        if len(involved) < 2:
            continue  # one weakly informed parameter is not a ridge
        tied = max(abs(correlation[i, j]) for i in involved for j in involved if i != j)
        if tied < RIDGE_CORRELATION:
            continue
        involved_labels = [labels[i] for i in involved]
        if used & set(involved_labels):
            continue
        used |= set(involved_labels)
        findings.append(
            _non_identified_finding(ctx, post, prior_matrix, labels, involved, correlation, ratio)
        )
    return findings


def _non_identified_finding(
    ctx: _Context,
    post: np.ndarray,
    prior: np.ndarray,
    labels: list[str],
    involved: list[int],
    correlation: np.ndarray,
    ratio: float,
) -> Finding:
    # Centered effects move with their mean (alpha_g with mu_alpha): on the ridge, a
    # vector's mean over levels and that scalar are interchangeable, and which of the two
    # the eigenvector weights more is up to the draws. Name the scalar as well.
    for i in [i for i in involved if "(mean over levels)" in labels[i]]:
        for j in np.argsort(-np.abs(correlation[i])):
            if abs(correlation[i, j]) < RIDGE_CORRELATION:
                break
            if j not in involved and "(mean over levels)" not in labels[j]:
                involved = [*involved, int(j)]
                break
    scalars = [i for i in involved if "(mean over levels)" not in labels[i]] or involved
    if len(scalars) >= 2:
        a, b = scalars[0], scalars[1]
    else:
        a, b = involved[0], next(i for i in involved if i != involved[0])
    sign = float(np.sign(correlation[a, b]) or 1.0)
    name_a, name_b = _plain(labels[a]), _plain(labels[b])
    identified = post[:, a] - sign * post[:, b]
    free = post[:, a] + sign * post[:, b]
    free_prior = prior[:, a] + sign * prior[:, b]
    others = [_plain(labels[i]) for i in involved if i not in (a, b)]
    together = f" (with {', '.join(others)} moving along)" if others else ""
    message = (
        f"{name_a} and {name_b} are not identified separately: they are almost perfectly "
        f"correlated in the posterior (r = {correlation[a, b]:.3f}). The data inform only "
        f"{_combination(name_a, name_b, -sign)} (posterior sd {identified.std():.3g}); "
        f"{_combination(name_a, name_b, sign)}{together} is set by the prior alone "
        f"(posterior sd {free.std():.3g}, prior sd {free_prior.std():.3g}; the posterior is "
        f"{np.sqrt(ratio):.2f} times as wide as the prior in that direction). This makes NUTS "
        f"slow (long trajectories, maximum tree depth) and the separate estimates meaningless. "
        + _identifiability_fix(ctx, labels[a], labels[b])
    )
    variables = tuple(_plain(labels[i]).partition("[")[0] for i in involved)
    return Finding("non_identified", message, variables)


def _group_of(ctx: _Context, intercept: str) -> str | None:
    """The group dim of a vector site that depends on ``intercept`` (e.g. gene)."""
    for site, parents in ctx.parents.items():
        if intercept in parents and site in ctx.dims and ctx.dims[site]:
            dim = ctx.dims[site][0]
            return dim
    return None


def _identifiability_fix(ctx: _Context, a: str, b: str) -> str:
    groups = [_group_of(ctx, _plain(a)), _group_of(ctx, _plain(b))]
    response = ctx.observed[0] if ctx.observed else "y"
    if all(groups):
        formula = f"{response} ~ 1 + (1 | {groups[0]}) + (1 | {groups[1]})"
        return (
            f"Fix: keep one global intercept and give each grouping zero-mean offsets, e.g. "
            f"hx.Model({formula!r}, data) (group effects ~ Normal(0, sd), no separate "
            f"means), or constrain the offsets to sum to zero (zero_sum=True); or drop one of "
            f"{_plain(a)}, {_plain(b)}."
        )
    return (
        f"Fix: drop one of {_plain(a)}, {_plain(b)} (or fix it), keep one global intercept with "
        "zero-mean group offsets, or constrain offsets to sum to zero (zero_sum=True); an "
        "informative prior on one of them also identifies the other."
    )


def _ridge_without_prior(
    ctx: _Context, post: np.ndarray, labels: list[str], correlation: np.ndarray
) -> list[Finding]:
    """Without prior draws: only scalar pairs that are almost perfectly correlated."""
    scalars = [i for i, lab in enumerate(labels) if "(mean over levels)" not in lab]
    best: tuple[float, int, int] | None = None
    for i in scalars:
        for j in scalars:
            if i < j and abs(correlation[i, j]) >= RIDGE_CORRELATION_WITHOUT_PRIOR:
                if best is None or abs(correlation[i, j]) > best[0]:
                    best = (abs(correlation[i, j]), i, j)
    if best is None:
        return []
    _, a, b = best
    sign = float(np.sign(correlation[a, b]) or 1.0)
    name_a, name_b = labels[a], labels[b]
    message = (
        f"{name_a} and {name_b} are almost perfectly correlated in the posterior "
        f"(r = {correlation[a, b]:.3f}): the data inform "
        f"{_combination(name_a, name_b, -sign)} (posterior sd "
        f"{(post[:, a] - sign * post[:, b]).std():.3g}) much better than "
        f"{_combination(name_a, name_b, sign)} (posterior sd "
        f"{(post[:, a] + sign * post[:, b]).std():.3g}); they are probably not identified "
        "separately (no prior draws were available to compare). "
        + _identifiability_fix(ctx, name_a, name_b)
    )
    return [Finding("non_identified", message, (name_a, name_b))]


def _merge_funnel_and_modes(findings: list[Finding]) -> list[Finding]:
    """Chains stuck at different depths of a funnel are not separate modes: say so once."""
    funnel = next(
        (
            f
            for f in findings
            if (f.check == "divergences" and "funnel" in f.message)
            or (f.check == "funnel" and "Non-center" in f.message)
        ),
        None,
    )
    modes = next((f for f in findings if f.check == "modes"), None)
    if funnel is None or modes is None:
        return findings
    if not set(v.partition("[")[0] for v in modes.variables) & set(funnel.variables):
        return findings
    merged = Finding(
        funnel.check,
        funnel.message + " The chains also disagree about these parameters: some got stuck "
        "in the neck of the funnel, which is not a second mode.",
        funnel.variables,
    )
    return [merged if f is funnel else f for f in findings if f is not modes]


# ---------------------------------------------------------------------- the entry


def diagnose(fit: Fit, findings: Sequence[Finding] | None = None) -> Diagnosis:
    """Diagnose a fit: convergence, where divergences are, funnels, non-identifiability.

    Parameters
    ----------
    fit : Fit
    findings : list of Finding, optional
        Baseline convergence findings already computed for this fit.

    Returns
    -------
    Diagnosis
        ``str(diagnosis)`` is one paragraph per finding; empty for a healthy fit.
    """
    idata = fit.idata
    table = convergence_table(idata)
    baseline = (
        list(findings)
        if findings is not None
        else check_convergence(idata, fit.info.get("max_tree_depth"), table)
    )
    ctx = _context(fit)
    result: list[Finding] = []
    for finding in baseline:
        if finding.check == "divergences" and ctx.divergent is not None:
            result += _explain_divergences(finding, ctx)
        else:
            result.append(finding)
    troubled = any(
        f.check in ("divergences", "tree_depth", "ess_bulk", "ess_tail", "e_bfmi") for f in result
    )
    explained = [v for f in result if f.check == "divergences" for v in f.variables]
    result += _centering_advice(ctx, troubled, explained)
    result = _merge_funnel_and_modes(result)
    result += _non_identified(ctx)
    return Diagnosis(findings=result, table=table)
