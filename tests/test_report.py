"""The HTML report: one self-contained page, for live and loaded fits, checked in Chromium."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import browser
import numpy as np
import pandas as pd
import pytest
from browser import render_report
from models import SCHOOLS, hierarchical_data, hierarchical_model, normal_data, normal_model

import hierax as hx
import hierax.frontends.model
import hierax.frontends.nonlinear.model
from hierax.diagnostics.diagnose import Diagnosis
from hierax.frontends.model import describe_formula_model
from hierax.frontends.nonlinear import param
from hierax.frontends.nonlinear.model import NonlinearModel
from hierax.present import diagram, report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Image sources, figure captions and external references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.captions: list[str] = []
        self.external: list[str] = []
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for key in ("src", "href"):
            if tag != "img" and values.get(key):
                self.external.append(f"{tag} {key}={values[key]}")
        if tag == "figcaption":
            self._in_caption = True

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def fit() -> hx.Fit:
    """Hierarchical model with a prior group and no posterior predictive group."""
    return hx.fit(
        hierarchical_model,
        hierarchical_data(),
        coords={"school": SCHOOLS},
        chains=2,
        draws=200,
        warmup=200,
        seed=3,
        prior=True,
        progress=False,
        warn=False,
    )


@pytest.fixture(scope="module")
def report_path(fit, tmp_path_factory):
    return fit.report(tmp_path_factory.mktemp("report") / "out")


@pytest.fixture(scope="module")
def page(report_path) -> str:
    return report_path.read_text(encoding="utf-8")


def test_report_is_one_self_contained_page(report_path, page):
    assert report_path.name == "report.html"
    assert [p.name for p in report_path.parent.iterdir()] == ["report.html"]
    parsed = _parse(page)
    assert parsed.external == []
    assert 'src="http' not in page and "url(" not in page and "@import" not in page
    assert len(parsed.images) >= 8
    for source in parsed.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix) :]).startswith(PNG_SIGNATURE)


def test_report_has_model_diagnostics_summary_and_plots(fit, page):
    for section in ("Model", "Diagnostics", "Summary", "Plots"):
        assert f"<h2>{section}</h2>" in page
    assert "hierarchical_model" in page
    assert 'id="summary"' in page
    body = re.search("<tbody>(.*?)</tbody>", _section_of(page, "summary"), re.S)
    assert body
    labels = re.findall(r"<tr>\s*<th>([^<]*)</th>", body.group(1))
    assert labels == list(fit.summary().index)
    captions = _parse(page).captions
    for expected in (
        "trace",
        "rank",
        "forest (94 % HDI)",
        "pair",
        "caterpillar: theta",
        "posterior predictive check",
        "posterior predictive check per school",
        "prior vs posterior",
    ):
        assert expected in captions
    assert "caterpillar: z" in captions  # raw offsets after the group effects
    assert captions.index("caterpillar: theta") < captions.index("caterpillar: z")


def _section_of(page: str, name: str) -> str:
    match = re.search(f'<section id="section-{name}">(.*?)</section>', page, re.S)
    assert match, f"no section {name}"
    return match.group(1)


def test_diagnostics_list_the_findings_of_a_bad_fit(monkeypatch):
    bad = hx.fit(
        normal_model,
        normal_data(),
        chains=2,
        draws=20,
        warmup=20,
        seed=1,
        precondition="none",
        progress=False,
        warn=False,
    )
    diagnosis = bad.diagnose()
    assert diagnosis.findings, "a 20-draw fit should have findings"
    monkeypatch.setattr(diagram, "graphviz_available", lambda: False)
    page = report.render_report(bad)
    diagnostics = _section_of(page, "diagnostics")
    assert diagnostics.count('class="hierax-finding"') == len(diagnosis.findings)
    for check in diagnosis.checks():
        assert f"<b>{check}</b>" in diagnostics
    assert report.PLATE_NOTE in page


def test_diagnostics_say_when_nothing_was_found(fit, monkeypatch):
    monkeypatch.setattr(type(fit), "diagnose", lambda self: Diagnosis())
    monkeypatch.setattr(report, "make_figures", lambda fit, truth=None: [])
    assert "No problems found" in _section_of(report.render_report(fit), "diagnostics")


def test_report_of_a_loaded_fit(fit, tmp_path):
    loaded = hx.load(fit.save(tmp_path / "fit.nc"))
    assert loaded.model_fn is None
    path = report.write_report(loaded, tmp_path / "loaded")
    page = path.read_text(encoding="utf-8")
    parsed = _parse(page)
    assert len(parsed.images) >= 6 and parsed.external == []
    assert "hierarchical_model" in page and 'id="summary"' in page
    assert "prior vs posterior" in parsed.captions
    assert "posterior predictive check skipped" in page  # no group stored, no model to make one
    assert "plate diagram skipped" in page


def test_report_is_replaced_atomically(fit, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "make_figures", lambda fit, truth=None: [])
    (tmp_path / "report.html").write_text("old")
    path = report.write_report(fit, tmp_path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def _formula_model() -> hx.Model:
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"g": np.repeat(list("abcdef"), 6), "x": rng.normal(size=36)})
    table["y"] = 1 + 0.5 * table.x + np.repeat(rng.normal(size=6), 6) + rng.normal(size=36)
    return hx.Model("y ~ x + (1 | g)", data=table)


def _nonlinear_model() -> NonlinearModel:
    table = pd.DataFrame({"t": np.linspace(0, 5, 12), "batch": list("ab") * 6})
    table["y"] = 2.0 * np.exp(-0.5 * table["t"]) + 0.01 * np.arange(12)
    return NonlinearModel(
        "y ~ A * exp(-k * t)",
        table,
        params={"A": "1 + (1 | batch)", "k": param("1", link="log")},
        priors={"A": "Normal(2, 1)", "k_Intercept": "Normal(0, 1)", "sd_A_batch": "HalfNormal(1)"},
    )


def _check_formula_description(description, model):
    assert description["kind"] == "formula" and description["formula"] == "y ~ x + (1 | g)"
    assert description["family"] == "gaussian" and description["link"] == "identity"
    assert description["data"] == {"rows": 36, "columns": ["g", "x", "y"], "groups": {"g": 6}}
    assert [row["parameter"] for row in description["priors"]] == list(model.priors.index)
    assert [row["prior"] for row in description["priors"]] == list(model.priors["prior"])


def _no_sampling(fit):
    """A stand-in for hierax.fit that returns a copy of an existing fit."""

    def stand_in(*args, **kwargs):
        return hx.Fit(fit.idata, findings=[], info={**fit.info, "stand_in": True})

    return stand_in


def test_formula_fit_records_its_description_and_keeps_it_on_disk(fit, tmp_path, monkeypatch):
    monkeypatch.setattr(hierax.frontends.model, "fit_description", _no_sampling(fit))
    model = _formula_model()
    result = model.fit(seed=2, marginalize=False)
    assert result.info["stand_in"]
    description = result.info["description"]
    _check_formula_description(description, model)
    loaded = hx.load(result.save(tmp_path / "fit.nc"))
    assert loaded.info["description"] == description
    monkeypatch.setattr(report, "make_figures", lambda fit, truth=None: [])
    page = report.render_report(loaded)
    assert 'id="priors"' in page and "y ~ x + (1 | g)" in page
    assert "levels of g" in page and "gaussian" in page


def test_nonlinear_fit_records_its_description(fit, monkeypatch):
    monkeypatch.setattr(hierax.frontends.nonlinear.model, "fit_description", _no_sampling(fit))
    result = _nonlinear_model().fit(seed=1, marginalize=False)
    assert result.info["stand_in"]
    description = result.info["description"]
    assert json.loads(json.dumps(description)) == description
    assert description["kind"] == "nonlinear" and description["family"] == "gaussian"
    assert description["params"] == {"A": "1 + (1 | batch)", "k": "1 (log link)"}
    assert description["data"]["groups"] == {"A_batch": 2}
    assert description["data"]["rows"] == 12
    assert {row["parameter"] for row in description["priors"]} >= {"A", "k_Intercept"}


@pytest.mark.slow
def test_report_of_a_sampled_formula_fit(tmp_path):
    model = _formula_model()
    result = model.fit(chains=2, draws=200, warmup=200, seed=2, progress=False, warn=False)
    _check_formula_description(result.info["description"], model)
    path = hx.load(result.save(tmp_path / "fit.nc")).report(tmp_path / "out")
    page = path.read_text(encoding="utf-8")
    assert "caterpillar: r_g" in _parse(page).captions
    rendered = render_report(result.report(tmp_path / "live"))
    assert rendered.broken_images == [] and rendered.summary_rows > 0
    captions = [image.alt for image in rendered.images]
    assert "posterior predictive check per g" in captions
    assert "predictive band over x" in captions


def test_formula_description_without_fitting_is_json():
    table = pd.DataFrame({"g": list("aabbcc"), "y": np.arange(6.0)})
    description = describe_formula_model(hx.Model("y ~ 1 + (1 | g)", data=table))
    assert json.loads(json.dumps(description)) == description


def test_function_fit_is_described_by_its_arguments(fit):
    description = report.describe(fit)
    assert description["kind"] == "function" and description["name"] == "hierarchical_model"
    assert description["data"]["arguments"] == {
        "school": "int64[50]",
        "n_school": "5",
        "y": "float64[50]",
    }
    assert description["data"]["rows"] == 50


def test_jupyter_shows_a_compact_summary(fit):
    shown = fit._repr_html_()
    assert "2 chains x 200 draws" in shown and "divergences" in shown
    assert shown.count("<tr>") <= 15  # body rows (the header row has a style)
    short = report.compact_html(fit, max_rows=4)
    assert short.count("<tr>") == 4
    assert f"{len(fit.summary()) - 4} more rows" in short
    for finding in fit.findings:
        assert finding.check in shown


def test_the_report_renders_in_a_browser(fit, report_path):
    rendered = render_report(report_path)
    assert len(rendered.images) >= 8
    assert rendered.broken_images == []
    assert all(image.width > 0 and image.height > 0 for image in rendered.images)
    assert rendered.summary_rows == len(fit.summary())


def test_missing_browser_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setattr(browser, "chromium_executable", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium is not installed"):
        browser.require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run under CI"):
        browser.require_browser()
