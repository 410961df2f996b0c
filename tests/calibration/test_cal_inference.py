"""Inverse prediction: normalisation, exactness of the grid HDI, multimodal HDIs,
and frequentist coverage of the 95 % intervals over 1000 simulated cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hierax.calibration import CalibrationModel
from hierax.errors import DataError, ModelError

LOGISTIC_T = CalibrationModel("logistic", "studentt").with_theta(
    [5.0, 1.0, 2.0, 0.4, 0.05, 5.0]  # I_x, I_y, Lmax, s, scale, df
)


def test_density_integrates_to_one_for_every_case() -> None:
    y = np.array([[0.52, 0.55, 0.51], [1.2, 1.25, np.nan], [1.9, np.nan, np.nan]])
    result = LOGISTIC_T.infer_independent(y, lower=0.0, upper=10.0, steps=1500)
    assert result.pdf.shape == (3, 1500)
    np.testing.assert_allclose(np.trapezoid(result.pdf, result.grid, axis=1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(result.cdf[:, -1], 1.0, rtol=1e-9)
    assert np.all(result.eti_lower < result.median) and np.all(result.median < result.eti_upper)


def test_single_case_gives_scalars_and_matches_the_batched_row() -> None:
    one = LOGISTIC_T.infer_independent([1.2, 1.25], 0.0, 10.0)
    many = LOGISTIC_T.infer_independent([[0.6, 0.65], [1.2, 1.25]], 0.0, 10.0)
    assert np.ndim(one.median) == 0 and one.pdf.shape == (1000,)
    assert float(one.median) == pytest.approx(float(many.median[1]), rel=1e-9)
    assert one.hdi_intervals == many.hdi_intervals[1]


def test_posterior_matches_a_direct_computation() -> None:
    cal = CalibrationModel("linear", "normal").with_theta([0.1, 0.5, 0.08])
    readouts = np.array([1.3, 1.42, 1.35])
    result = cal.infer_independent(readouts, 0.0, 6.0, steps=3001)
    # uniform prior, linear mean, Normal noise: the posterior is a normal truncated to [0, 6]
    centre = (readouts.mean() - 0.1) / 0.5
    sd = 0.08 / 0.5 / np.sqrt(3)
    reference = stats.truncnorm((0 - centre) / sd, (6 - centre) / sd, loc=centre, scale=sd)
    np.testing.assert_allclose(result.pdf, reference.pdf(result.grid), rtol=1e-4, atol=1e-8)
    assert float(result.median) == pytest.approx(reference.median(), abs=1e-4)
    assert float(result.eti_lower) == pytest.approx(reference.ppf(0.025), abs=1e-4)
    assert float(result.eti_upper) == pytest.approx(reference.ppf(0.975), abs=1e-4)
    # symmetric and unimodal: the HDI is the ETI (to a grid cell)
    cell = 6.0 / 3000
    assert float(result.hdi_lower) == pytest.approx(float(result.eti_lower), abs=cell)
    assert float(result.hdi_upper) == pytest.approx(float(result.eti_upper), abs=cell)


def test_hdi_is_the_smallest_set_of_cells_with_the_probability() -> None:
    y = np.array([[0.52, 0.55, 0.51], [1.0, 1.9, np.nan], [1.05, 1.1, 1.08]])
    result = LOGISTIC_T.infer_independent(y, 0.0, 10.0, steps=800, ci_prob=0.9)
    widths = np.diff(result.edges)
    for pdf, mask, mass in zip(result.pdf, result.hdi_mask, result.hdi_mass, strict=True):
        cells = pdf * widths
        assert cells[mask].sum() == pytest.approx(mass, rel=1e-9)
        assert mass >= 0.9
        # every included cell is at least as dense as every excluded one
        assert pdf[mask].min() >= pdf[~mask].max()
        # dropping the least dense included cell falls below the probability
        assert mass - cells[mask][np.argmin(pdf[mask])] < 0.9


def test_multimodal_posterior_gives_a_union_of_intervals() -> None:
    # a parabola: the readout cannot tell x from -x
    cal = CalibrationModel("polynomial", "normal", degree=2).with_theta([0.0, 0.0, 1.0, 0.05])
    result = cal.infer_independent([4.0, 4.02], -3.0, 3.0, steps=2001)
    assert bool(result.multimodal) and int(result.n_hdi_intervals) == 2
    (a_lo, a_hi), (b_lo, b_hi) = result.hdi_intervals
    assert a_lo < -2.0 < a_hi < 0 < b_lo < 2.0 < b_hi
    assert result.hdi_lower == a_lo and result.hdi_upper == b_hi
    assert bool(result.hdi_contains(2.0)) and not bool(result.hdi_contains(0.0))
    assert "∪" in result.summary()


def test_coverage_of_95_percent_intervals_over_1000_cases() -> None:
    rng = np.random.default_rng(2024)
    lower, upper, n_cases = 0.0, 10.0, 1000
    x_true = rng.uniform(lower, upper, n_cases)  # drawn from the inference prior
    replicates = rng.integers(1, 4, n_cases)
    y = LOGISTIC_T.simulate(np.repeat(x_true[:, None], 3, axis=1), seed=5)
    y[np.arange(3)[None, :] >= replicates[:, None]] = np.nan  # 1 to 3 replicates per case
    result = LOGISTIC_T.infer_independent(y, lower, upper, steps=2000, ci_prob=0.95)
    eti = result.eti_contains(x_true).mean()
    hdi = result.hdi_contains(x_true).mean()
    # binomial sd of a 95 % coverage over 1000 cases is 0.0069: +-3 % is 4.4 sd
    assert abs(eti - 0.95) <= 0.03, eti
    assert abs(hdi - 0.95) <= 0.03, hdi
    # the HDI is never wider than the ETI (both hold 95 % on the same grid)
    hdi_width = np.diff(result.edges)[None, :] * result.hdi_mask
    assert np.all(hdi_width.sum(axis=1) <= result.eti_upper - result.eti_lower + 2 * 10 / 1999)


def test_user_prior_shifts_the_posterior() -> None:
    flat = LOGISTIC_T.infer_independent([1.5], 0.0, 10.0)
    informed = LOGISTIC_T.infer_independent(
        [1.5], 0.0, 10.0, log_prior=lambda x: -0.5 * ((x - 3.0) / 0.5) ** 2
    )
    assert float(informed.median) < float(flat.median)


def test_bad_inference_input() -> None:
    with pytest.raises(ModelError, match="lower < upper"):
        LOGISTIC_T.infer_independent([1.0], 5.0, 1.0)
    with pytest.raises(DataError, match=r"case\(s\) \[1\]"):
        LOGISTIC_T.infer_independent([[1.0, 1.1], [np.nan, np.nan]], 0.0, 10.0)
    lognormal = CalibrationModel("linear", "lognormal").with_theta([0.1, 0.5, 0.1])
    with pytest.raises(DataError, match="impossible for every x"):
        lognormal.infer_independent([-0.5], 0.0, 10.0)
