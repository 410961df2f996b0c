"""Open an HTML page in headless Chromium and report what rendered.

Helper for the report tests (not a test module). Tests import it as
``from browser import render_report, require_browser`` (pytest puts ``tests/``
on ``sys.path``, as for ``models``).

* ``require_browser() -> str``: the Chromium executable; skips the calling test
  when Chromium or the ``playwright`` package is missing, and fails it instead
  when the environment variable ``CI`` is set.
* ``render_report(path, *, timeout_ms=30000) -> Rendered``: loads the local file
  ``path`` (a ``report.html``) with Chromium and returns, per ``<img>``, its
  ``alt`` text and natural width and height, and the number of body rows of the
  table with ``id="summary"`` (``-1`` when there is no such table).

Chromium is the system package (``/usr/bin/chromium``; ``.ci/run`` installs
it); no browser is ever downloaded. The flags keep it off the (closed) network.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_INSPECT = """() => {
    const images = Array.from(document.images).map((img) => ({
        alt: img.alt,
        width: img.naturalWidth,
        height: img.naturalHeight,
        complete: img.complete,
    }));
    const table = document.querySelector("table#summary");
    const rows = table ? table.querySelectorAll("tbody tr").length : -1;
    return {images: images, summary_rows: rows, title: document.title};
}"""


@dataclass(frozen=True)
class RenderedImage:
    """One ``<img>`` as the browser decoded it."""

    alt: str
    width: int
    height: int
    complete: bool


@dataclass(frozen=True)
class Rendered:
    """What Chromium rendered of a page."""

    images: list[RenderedImage] = field(default_factory=list)
    summary_rows: int = -1
    title: str = ""

    @property
    def broken_images(self) -> list[RenderedImage]:
        """Images with a zero natural width or height (not decoded)."""
        return [i for i in self.images if not (i.complete and i.width > 0 and i.height > 0)]


def chromium_executable() -> str | None:
    """Path of the system Chromium, or None."""
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser() -> str:
    """The Chromium executable; skip (or, with ``CI`` set, fail) the test without one."""
    executable = chromium_executable()
    reason = None
    if executable is None:
        reason = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is missing (pip install -e '.[test]')"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {reason}")
        pytest.skip(reason)
    assert executable is not None
    return executable


def render_report(path: str | os.PathLike[str], *, timeout_ms: int = 30_000) -> Rendered:
    """Open the local HTML file ``path`` in headless Chromium and inspect it."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    url = Path(path).resolve().as_uri()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=timeout_ms
        )
        try:
            page = browser.new_page()
            page.goto(url, wait_until="load", timeout=timeout_ms)
            found = page.evaluate(_INSPECT)
        finally:
            browser.close()
    return Rendered(
        images=[RenderedImage(**image) for image in found["images"]],
        summary_rows=int(found["summary_rows"]),
        title=str(found["title"]),
    )
