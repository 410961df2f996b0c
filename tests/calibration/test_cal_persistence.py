"""Saving and loading calibration models: round trips, and the named errors for
files of another model type or an incompatible major version."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from hierax.calibration import CalibrationModel, MeanFunction
from hierax.errors import FileFormatError, IncompatibleModelError, IncompatibleVersionError


@pytest.fixture(scope="module")
def fitted() -> CalibrationModel:
    cal = CalibrationModel(
        "logistic", "studentt", scale_degree=1, independent_key="conc", dependent_key="absorbance"
    )
    x = np.random.default_rng(0).uniform(0, 10, 300)
    y = cal.simulate(x, [5.0, 1.0, 2.0, 0.4, 0.03, 0.01, 3.0], seed=1)
    return cal.fit_mle(x, y, bounds={"df": (1.0, 100.0)})


def test_round_trip_compares_equal(fitted: CalibrationModel, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "cal.json")
    loaded = CalibrationModel.load(path)
    assert loaded == fitted
    assert loaded is not fitted and loaded.theta_fitted is not fitted.theta_fitted
    np.testing.assert_array_equal(loaded.theta_fitted, fitted.theta_fitted)  # bit for bit
    assert loaded.theta_bounds is not None and loaded.theta_bounds[0] == (-np.inf, np.inf)
    x = np.linspace(0, 10, 7)
    np.testing.assert_array_equal(loaded.predict_dependent(x)[1], fitted.predict_dependent(x)[1])
    content = json.loads(path.read_text())
    for key in (
        "model_type",
        "theta_names",
        "theta_fitted",
        "theta_bounds",
        "theta_guess",
        "cal_independent",
        "cal_dependent",
        "format_version",
        "hierax_version",
        "created_at",
    ):
        assert key in content, key
    assert content["theta_bounds"][0] == [None, None]  # infinite bounds as null


def test_equality_notices_differences(fitted: CalibrationModel) -> None:
    assert fitted != fitted.with_theta(fitted.theta_fitted + 1e-12)
    assert fitted != CalibrationModel("logistic", "normal", scale_degree=1)


def test_unfitted_and_custom_models_round_trip(tmp_path: Path) -> None:
    plain = CalibrationModel("polynomial", "poisson", degree=3)
    assert CalibrationModel.load(plain.save(tmp_path / "plain.json")) == plain
    hill = MeanFunction(
        "hill",
        lambda x, t: t[0] * x / (t[1] + x),
        ("vmax", "K"),
        inverse=lambda y, t: t[1] * y / (t[0] - y),
    )
    custom = CalibrationModel(hill, "normal").with_theta([2.0, 0.5, 0.1])
    path = custom.save(tmp_path / "hill.json")
    with pytest.raises(IncompatibleModelError, match="custom mean function 'hill'"):
        CalibrationModel.load(path)
    loaded = CalibrationModel.load(path, mean=hill)
    assert loaded == custom
    assert float(loaded.predict_independent(loaded.predict_mean(1.5))) == pytest.approx(1.5)


def test_another_model_type_raises(fitted: CalibrationModel, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "cal.json")

    class OtherCalibration(CalibrationModel):
        pass

    with pytest.raises(
        IncompatibleModelError, match="'CalibrationModel', not a 'OtherCalibration'"
    ):
        OtherCalibration.load(path)
    with pytest.raises(IncompatibleModelError, match="'logistic'.*not a 'polynomial'"):
        CalibrationModel.load(path, mean="linear")
    with pytest.raises(IncompatibleModelError, match="'studentt' noise, not 'normal'"):
        CalibrationModel.load(path, noise="normal")
    # what the file holds loads with matching expectations
    assert CalibrationModel.load(path, mean="logistic", noise="studentt") == fitted
    # a model of another class saved, then loaded as the base class
    other = OtherCalibration("linear", "normal").with_theta([0.0, 1.0, 0.1])
    other_path = other.save(tmp_path / "other.json")
    with pytest.raises(
        IncompatibleModelError, match="'OtherCalibration', not a 'CalibrationModel'"
    ):
        CalibrationModel.load(other_path)
    assert OtherCalibration.load(other_path) == other


def test_incompatible_major_version_raises(fitted: CalibrationModel, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "cal.json")
    content = json.loads(path.read_text())
    content["format_version"] = "2.0"
    path.write_text(json.dumps(content))
    with pytest.raises(IncompatibleVersionError, match="format version '2.0'") as info:
        CalibrationModel.load(path)
    assert isinstance(info.value, FileFormatError)
    content["format_version"] = "1.7"  # a newer minor version of the same major loads
    path.write_text(json.dumps(content))
    assert CalibrationModel.load(path) == fitted


def test_not_a_calibration_file(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"model_type": "LinearCalibration", "theta_fitted": [1, 2]}))
    with pytest.raises(FileFormatError, match="not a hierax calibration file"):
        CalibrationModel.load(path)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(FileFormatError, match="not a JSON file"):
        CalibrationModel.load(tmp_path / "broken.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CalibrationModel.load(tmp_path / "missing.json")


def test_saving_does_not_leave_partial_files(fitted: CalibrationModel, tmp_path: Path) -> None:
    fitted.save(tmp_path / "cal.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.json"]
    assert jnp.isfinite(fitted.loglikelihood(y=fitted.cal_dependent, x=fitted.cal_independent))


class LinearCalibration(CalibrationModel):
    """The seed's calibr8 subclass, written the same way on hierax."""

    def __init__(self, **kwargs):
        super().__init__(
            "linear",
            "normal",
            theta_names=["intercept", "slope", "sigma"],
            independent_key="P",
            dependent_key="readout",
            **kwargs,
        )


def test_subclass_fits_saves_and_loads(tmp_path: Path) -> None:
    cal = LinearCalibration()
    x = np.linspace(0, 5, 40)
    fitted = cal.fit_mle(x, cal.simulate(x, [0.15, 0.3, 0.08], seed=2))
    assert type(fitted) is LinearCalibration
    path = fitted.save(tmp_path / "linear.json")
    loaded = LinearCalibration.load(path)
    assert type(loaded) is LinearCalibration and loaded == fitted
    with pytest.raises(
        IncompatibleModelError, match="'LinearCalibration', not a 'CalibrationModel'"
    ):
        CalibrationModel.load(path)
