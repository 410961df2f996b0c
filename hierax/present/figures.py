"""Matplotlib plumbing shared by the plots: pyplot on demand, the headless
backend, and saving a figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["pyplot", "save_figure", "use_headless_backend"]


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use (it picks a backend when imported)."""
    import matplotlib.pyplot as plt

    return plt


def use_headless_backend() -> None:
    """Switch to the non-interactive Agg backend (for the CLI and tests)."""
    matplotlib.use("Agg", force=True)


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return path
