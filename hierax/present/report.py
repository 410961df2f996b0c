"""A self-contained HTML report of a fit, and the compact summary shown in Jupyter.

:func:`write_report` writes ``out/report.html``: one page with the model
(formula or function, family, priors, data), the diagnostics with their
advice, the summary table (``id="summary"``) and the plots, every image
embedded as a base64 PNG. The page needs no network: no external CSS,
scripts, fonts or images. It works for a Fit loaded with :func:`hierax.load`
(no model function): the plots then use only what the InferenceData holds.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hierax.core.files import atomic_write
from hierax.core.version import __version__
from hierax.diagnostics.diagnose import Diagnosis
from hierax.present import diagram, posterior_plots, predictive_plots
from hierax.present.figures import pyplot, use_headless_backend

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hierax.results.fit import Fit

__all__ = ["compact_html", "describe", "render_report", "write_report"]

#: Scalar variables shown in the trace, rank, forest, pair and prior plots.
MAX_SCALARS = 8
#: Variables in the corner plot.
MAX_PAIR = 4
#: Vector variables drawn as caterpillar plots.
MAX_VECTORS = 4
#: Rows of the forest plot.
MAX_FOREST_ROWS = 40
#: Rows of the summary table on the page.
MAX_SUMMARY_ROWS = 300
#: Resolution of the embedded images.
DPI = 80

PLATE_NOTE = "plate diagram skipped: install graphviz (the Python package and the dot program)"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.15em 0.5em; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.note { color: #777; font-style: italic; }
.hierax-findings li { margin-bottom: 0.4em; } .hierax-ok { color: #1a7f37; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass(frozen=True)
class ReportImage:
    """One plot of the report: a PNG (or a note when it could not be drawn)."""

    title: str
    png: bytes | None = None
    note: str | None = None


# ------------------------------------------------------------------- public
def write_report(
    fit: Fit,
    out: str | os.PathLike[str] = "hierax-report",
    *,
    title: str | None = None,
    truth: Mapping[str, Any] | None = None,
) -> Path:
    """Write the report of ``fit`` to ``out/report.html`` (atomically).

    Parameters
    ----------
    fit : Fit
        A fit, made in this session or loaded with :func:`hierax.load`.
    out : path
        Folder of the report (created when missing).
    title : str, optional
        Page title; the model's name by default.
    truth : dict, optional
        True values by variable name, marked in the pair and caterpillar plots.

    Returns
    -------
    Path
        ``out/report.html``.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.html"
    page = render_report(fit, title=title, truth=truth)
    atomic_write(path, lambda temporary: temporary.write_text(page, encoding="utf-8"))
    return path


def render_report(
    fit: Fit, *, title: str | None = None, truth: Mapping[str, Any] | None = None
) -> str:
    """The report page of ``fit`` as one HTML string (see :func:`write_report`)."""
    description = describe(fit)
    name = title or _model_name(description)
    sections = [
        _header(fit, name),
        _section("Model", _model_html(description)),
        _section("Diagnostics", _diagnostics_html(fit)),
        _section("Summary", _summary_html(fit)),
        _section("Plots", _plots_html(make_figures(fit, truth=truth))),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(name)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def describe(fit: Fit) -> dict[str, Any]:
    """The model description of a fit (JSON-able).

    Formula and nonlinear fits record theirs in ``fit.info["description"]``
    (kind, formula, family, priors, data). For a model function it is built
    here: ``{"kind": "function", "name": ..., "data": {"arguments": {name:
    "float64[50]"}, "rows": ...}}``, from ``fit.data`` or, for a loaded fit,
    from the observed and constant data.
    """
    recorded = fit.info.get("description")
    if isinstance(recorded, Mapping):
        return dict(recorded)
    name = fit.info.get("model") or fit.posterior.attrs.get("model") or "model"
    arguments = _argument_shapes(fit)
    rows = _observation_count(fit)
    return {
        "kind": "function",
        "name": str(name),
        "data": {"arguments": arguments, "rows": rows},
    }


def compact_html(fit: Fit, max_rows: int = 15) -> str:
    """A compact HTML summary of a fit (``Fit._repr_html_``): header, problems, first rows."""
    findings = "".join(
        f"<li><b>{html.escape(f.check)}</b>"
        + (f": {html.escape(_names(f.variables))}" if f.variables else "")
        + "</li>"
        for f in fit.findings
    )
    status = (
        f"<b>{len(fit.findings)} problem(s)</b><ul>{findings}</ul>"
        if fit.findings
        else '<span style="color:#1a7f37">no problems found</span>'
    )
    table = fit.summary()
    shown = table.iloc[:max_rows]
    more = (
        f"<p><i>{len(table) - max_rows} more rows: fit.summary()</i></p>"
        if len(table) > max_rows
        else ""
    )
    return (
        f'<div class="hierax-fit"><b>hierax.Fit</b>: {html.escape(_run_line(fit))}<br>'
        f"{status}{_table_html(shown)}{more}</div>"
    )


# ---------------------------------------------------------------- describe
def _argument_shapes(fit: Fit) -> dict[str, str]:
    if fit.data:
        return {str(k): _shape_text(v) for k, v in fit.data.items()}
    shapes: dict[str, str] = {}
    for group in ("observed_data", "constant_data"):
        if group in fit.idata.groups():
            for key, value in fit.idata[group].data_vars.items():
                shapes[str(key)] = _shape_text(value.values)
    return shapes


def _shape_text(value: Any) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        return repr(array.item()) if array.dtype.kind in "biuf" else type(value).__name__
    return f"{array.dtype}[{', '.join(str(n) for n in array.shape)}]"


def _observation_count(fit: Fit) -> int | None:
    if "observed_data" not in fit.idata.groups():
        return None
    sizes = [int(v.size) for v in fit.idata["observed_data"].data_vars.values()]
    return max(sizes) if sizes else None


def _model_name(description: Mapping[str, Any]) -> str:
    if description.get("formula"):
        return f"hierax report: {description['formula']}"
    return f"hierax report: {description.get('name', 'model')}"


# ------------------------------------------------------------------ header
def _run_line(fit: Fit) -> str:
    posterior = fit.posterior
    parts = [
        f"{posterior.sizes['chain']} chains x {posterior.sizes['draw']} draws",
        f"{fit.divergences} divergences",
    ]
    seconds = [fit.info.get(k) for k in ("preparation_seconds", "sampling_seconds")]
    known = [float(s) for s in seconds if isinstance(s, int | float)]
    if known:
        parts.append(f"{sum(known):.1f} s")
    return "; ".join(parts)


def _header(fit: Fit, name: str) -> str:
    created = fit.posterior.attrs.get("created_at", "")
    seed = fit.info.get("seed")
    details = [
        _run_line(fit),
        f"seed {seed}" if seed is not None else "",
        f"fitted {created}" if created else "",
        f"report by hierax {__version__}, "
        f"{_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}",
    ]
    line = " &middot; ".join(html.escape(d) for d in details if d)
    return f"<h1>{html.escape(name)}</h1><p>{line}</p>"


def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f'<section id="section-{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


# ------------------------------------------------------------------- model
def _model_html(description: Mapping[str, Any]) -> str:
    kind = description.get("kind", "function")
    rows: list[tuple[str, str]] = []
    if kind == "function":
        rows.append(("model function", f"<code>{html.escape(str(description.get('name')))}</code>"))
    else:
        label = "formula" if kind == "formula" else f"{kind} formula"
        rows.append((label, f"<code>{html.escape(str(description.get('formula')))}</code>"))
    for key in ("family", "link"):
        if description.get(key):
            rows.append((key, html.escape(str(description[key]))))
    for name, spec in (description.get("params") or {}).items():
        rows.append((f"parameter {name}", f"<code>{html.escape(str(spec))}</code>"))
    parts = [_key_value_table(rows)]
    priors = description.get("priors") or []
    if priors:
        parts.append("<h3>Priors</h3>" + _records_table(priors, "priors"))
    parts.append("<h3>Data</h3>" + _data_html(description.get("data") or {}))
    return "".join(parts)


def _data_html(data: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    if data.get("rows") is not None:
        rows.append(("rows", str(data["rows"])))
    if data.get("columns"):
        rows.append(("columns", html.escape(", ".join(str(c) for c in data["columns"]))))
    for group, levels in (data.get("groups") or {}).items():
        rows.append((f"levels of {group}", str(levels)))
    for argument, shape in (data.get("arguments") or {}).items():
        rows.append((f"argument {argument}", f"<code>{html.escape(str(shape))}</code>"))
    return _key_value_table(rows) if rows else '<p class="note">no data recorded</p>'


def _key_value_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column table; values must already be escaped HTML."""
    body = "".join(
        f'<tr><th class="text">{html.escape(k)}</th><td class="text">{v}</td></tr>' for k, v in rows
    )
    return f"<table>{body}</table>"


def _records_table(records: Sequence[Mapping[str, Any]], table_id: str) -> str:
    columns = list(dict.fromkeys(k for r in records for k in r))
    head = "".join(f'<th class="text">{html.escape(str(c))}</th>' for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="text">{html.escape(str(r.get(c, "")))}</td>' for c in columns)
        + "</tr>"
        for r in records
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# ------------------------------------------------------------- diagnostics
def _diagnostics_html(fit: Fit) -> str:
    parts = []
    try:
        diagnosis = fit.diagnose()
    except Exception as error:  # the report must still show what the fit holds
        parts.append(
            f'<p class="note">the full diagnosis failed ({html.escape(type(error).__name__)}: '
            f"{html.escape(str(error))}); the convergence findings of the fit follow.</p>"
        )
        diagnosis = Diagnosis(findings=list(fit.findings))
    parts.append(f'<div id="diagnostics">{diagnosis.to_html()}</div>')
    table = getattr(diagnosis, "table", None)
    if isinstance(table, pd.DataFrame) and not table.empty and "r_hat" in table:
        worst = table.sort_values("r_hat", ascending=False).iloc[:10]
        parts.append(
            "<h3>Worst entries by R-hat</h3>"
            "<p>Healthy: R-hat at most 1.01 and bulk and tail ESS at least 100 per chain.</p>"
            + _table_html(worst, table_id="convergence")
        )
    return "".join(parts)


# ------------------------------------------------------------------ summary
def _summary_html(fit: Fit) -> str:
    table = fit.summary()
    note = ""
    if len(table) > MAX_SUMMARY_ROWS:
        note = (
            f'<p class="note">The first {MAX_SUMMARY_ROWS} of {len(table)} rows '
            "(fit.summary() has them all).</p>"
        )
        table = table.iloc[:MAX_SUMMARY_ROWS]
    return _table_html(table, table_id="summary") + note


def _table_html(table: pd.DataFrame, table_id: str | None = None) -> str:
    return table.to_html(
        table_id=table_id,
        float_format=lambda v: f"{v:.4g}",
        border=0,
        na_rep="",
        escape=True,
    )


def _names(variables: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(variables[:limit])
    return shown + (f" and {len(variables) - limit} more" if len(variables) > limit else "")


# -------------------------------------------------------------------- plots
def make_figures(fit: Fit, *, truth: Mapping[str, Any] | None = None) -> list[ReportImage]:
    """Every plot of the report as PNG bytes, or a note where one was skipped or failed."""
    use_headless_backend()
    scalars, vectors = _scalar_variables(fit), _vector_variables(fit)
    shown = scalars[:MAX_SCALARS] or vectors[:1]
    plans: list[tuple[str, Callable[[], Figure | None]]] = []
    if shown:
        plans += [
            ("trace", lambda: posterior_plots.plot_trace(fit, shown)),
            ("rank", lambda: posterior_plots.plot_rank(fit, shown)),
        ]
    forest = _forest_variables(fit, scalars, vectors)
    if forest:
        plans.append(
            ("forest (94 % HDI)", lambda: posterior_plots.plot_forest(fit, forest, truth=truth))
        )
    if len(scalars) >= 2:
        paired = scalars[:MAX_PAIR]
        plans.append(("pair", lambda: posterior_plots.plot_pair(fit, paired, truth=truth)))
    for name in vectors[:MAX_VECTORS]:
        plans.append((f"caterpillar: {name}", _caterpillar(fit, name, truth)))
    figures = [_draw(title, make) for title, make in plans]
    figures += _ppc_figures(fit)
    covariates = predictive_plots.band_covariates(fit)
    if covariates:
        figures.append(
            _draw(
                f"predictive band over {covariates[0]}",
                lambda: predictive_plots.plot_predictive_band(fit, covariates[0]),
            )
        )
    if "prior" in fit.idata.groups():
        prior_vars = [n for n in scalars if n in fit.idata["prior"]][:MAX_SCALARS]
        if prior_vars:
            figures.append(
                _draw(
                    "prior vs posterior",
                    lambda: posterior_plots.plot_prior_posterior(fit, prior_vars),
                )
            )
    figures.append(_plate(fit))
    return figures


def _caterpillar(
    fit: Fit, name: str, truth: Mapping[str, Any] | None
) -> Callable[[], Figure | None]:
    return lambda: posterior_plots.plot_caterpillar(fit, name, truth=truth)


def _draw(title: str, make: Callable[[], Figure | None]) -> ReportImage:
    """Run one plot function; a failure becomes a note instead of breaking the report."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig = make()
    except Exception as error:  # a plot that fails must not lose the whole report
        return ReportImage(title, note=f"{title} plot failed: {type(error).__name__}: {error}")
    if fig is None:
        return ReportImage(title, note=f"{title}: nothing to draw")
    return ReportImage(title, png=_png(fig))


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


def _ppc_figures(fit: Fit) -> list[ReportImage]:
    if "observed_data" not in fit.idata.groups():
        return []
    if "posterior_predictive" not in fit.idata.groups():
        if fit.model_fn is None:
            return [
                ReportImage(
                    "posterior predictive check",
                    note="posterior predictive check skipped: this fit has no posterior_predictive "
                    "group and no model function (refit with posterior_predictive=True)",
                )
            ]
        try:
            fit = fit.with_posterior_predictive(seed=0)
        except Exception as error:  # a model that cannot simulate is still reported
            return [
                ReportImage(
                    "posterior predictive check",
                    note=f"posterior predictive check failed: {type(error).__name__}: {error}",
                )
            ]
    figures = [_draw("posterior predictive check", lambda: predictive_plots.plot_ppc(fit))]
    group = _group_variable(fit)
    if group is not None:
        figures.append(
            _draw(
                f"posterior predictive check per {_group_stem(group)}",
                lambda: predictive_plots.plot_ppc(fit, kind="intervals", group=group),
            )
        )
    return figures


def _plate(fit: Fit) -> ReportImage:
    title = "plate diagram"
    if not diagram.graphviz_available():
        return ReportImage(title, note=PLATE_NOTE)
    if fit.model_fn is None:
        return ReportImage(
            title, note="plate diagram skipped: it needs the model function (a loaded fit)"
        )
    try:
        png = diagram.plate_diagram(fit)
    except Exception as error:  # graphviz can fail on unusual models
        return ReportImage(title, note=f"plate diagram failed: {type(error).__name__}: {error}")
    return ReportImage(title, png=png) if png else ReportImage(title, note=PLATE_NOTE)


def _plots_html(figures: Sequence[ReportImage]) -> str:
    parts = []
    for figure in figures:
        if figure.png is not None:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(figure.title)}">'
                f"<figcaption>{html.escape(figure.title)}</figcaption></figure>"
            )
        elif figure.note:
            parts.append(f'<p class="note">{html.escape(figure.note)}</p>')
    return "".join(parts) or '<p class="note">no plots</p>'


# -------------------------------------------------------- variable selection
def _observation_dims(fit: Fit) -> set[str]:
    if "observed_data" not in fit.idata.groups():
        return set()
    return {str(d) for v in fit.idata["observed_data"].data_vars.values() for d in v.dims}


def _varies(fit: Fit, name: str) -> bool:
    values = np.asarray(fit.posterior[name])
    return bool(np.all(np.isfinite(values))) and float(np.ptp(values)) > 0


def _scalar_variables(fit: Fit) -> list[str]:
    """Scalar posterior variables (the hyperparameters first in every plot)."""
    return [
        str(n) for n, v in fit.posterior.data_vars.items() if v.ndim == 2 and _varies(fit, str(n))
    ]


def _vector_variables(fit: Fit) -> list[str]:
    """Vector variables: per group level first, then per observation, raw offsets last."""
    per_obs = _observation_dims(fit)
    vectors = [
        str(n) for n, v in fit.posterior.data_vars.items() if v.ndim > 2 and _varies(fit, str(n))
    ]

    def rank(name: str) -> int:
        if name.startswith(("z_", "L_")):
            return 2
        return 1 if set(map(str, fit.posterior[name].dims[2:])) & per_obs else 0

    return sorted(vectors, key=rank)


def _forest_variables(fit: Fit, scalars: Sequence[str], vectors: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    rows = 0
    for name in [*scalars[:MAX_SCALARS], *vectors]:
        size = int(np.prod(fit.posterior[name].shape[2:]))
        if rows + size > MAX_FOREST_ROWS:
            continue
        chosen.append(name)
        rows += size
    return chosen


def _group_variable(fit: Fit) -> str | None:
    """A data variable holding the group code of every observation, if there is one."""
    if "constant_data" not in fit.idata.groups():
        return None
    n_obs = _observation_count(fit)
    dims = set(map(str, fit.posterior.dims))
    description = fit.info.get("description") or {}
    preferred = [f"index_{g}" for g in (description.get("data") or {}).get("groups") or {}]
    for name in [*preferred, *map(str, fit.idata["constant_data"].data_vars)]:
        if name not in fit.idata["constant_data"]:
            continue
        values = np.asarray(fit.idata["constant_data"][name])
        stem = _group_stem(name)
        named = name in preferred or stem in dims or name.startswith("index_")
        if named and values.ndim == 1 and values.size == n_obs and values.dtype.kind in "iu":
            return name
    return None


def _group_stem(name: str) -> str:
    """``index_school``, ``school_idx`` -> ``school``."""
    return name.removeprefix("index_").removesuffix("_idx").removesuffix("_index")
