"""The README's calibration section runs as written; plot_model draws its panels."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from hierax.calibration import CalibrationModel
from hierax.errors import ModelError

README = Path(__file__).resolve().parents[2] / "README.md"


def _calibration_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Calibration models", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_readme_calibration_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _calibration_blocks()
    assert len(blocks) >= 6  # fit, plot, inverse prediction, save, hierarchical, fixed theta
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert (tmp_path / "cal.json").exists() and (tmp_path / "cal.png").exists()
    fit = namespace["fit"]
    assert "concentration" in fit.posterior  # type: ignore[attr-defined]


def test_plot_model_draws_data_bands_log_x_and_residuals() -> None:
    cal = CalibrationModel("exponential", "lognormal", scale_degree=1)
    x = np.linspace(0.1, 8, 60)
    y = cal.simulate(x, [0.5, 3.0, 0.6, 0.05, 0.01], seed=2)
    fig = cal.fit_mle(x, y).plot_model()
    linear, log, residual = fig.axes
    assert log.get_xscale() == "log" and linear.get_xscale() == "linear"
    assert len(linear.collections) == 4  # three bands and the data
    assert residual.get_title() == "residuals"
    plt.close(fig)
    with pytest.raises(ModelError, match="fit_mle"):
        CalibrationModel("linear", "normal").plot_model()
