"""The statistics of simulation-based calibration (Talts et al. 2018): thinning
posterior draws, the rank of each true value among them (ties broken at random),
and the chi-square test of uniform ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from hierax.errors import ModelError

__all__ = ["chi_square_uniformity", "rank_statistics", "ranks_table", "thin_draws"]


def thin_draws(draws: np.ndarray, n_kept: int) -> np.ndarray:
    """``n_kept`` draws spread evenly over all chains, to cut autocorrelation.

    Parameters
    ----------
    draws : ndarray, shape (chain, draw, ...)
    n_kept : int
        Number of draws to keep (``L``).

    Returns
    -------
    ndarray, shape (n_kept, ...)
        Every ``stride``-th draw of the chains laid end to end, with
        ``stride = chains * draws // n_kept``, the last draw of each stride
        kept (furthest from the previous kept one across a chain boundary).
    """
    draws = np.asarray(draws)
    if draws.ndim < 2:
        raise ModelError(f"draws must have shape (chain, draw, ...), got {draws.shape}.")
    total = draws.shape[0] * draws.shape[1]
    if n_kept < 1 or total < n_kept:
        raise ModelError(
            f"cannot keep {n_kept} draws from {draws.shape[0]} chains x {draws.shape[1]} "
            f"draws ({total} in all); fit with more draws or keep fewer (draws_kept)."
        )
    flat = draws.reshape((total,) + draws.shape[2:])
    stride = total // n_kept
    return flat[stride - 1 :: stride][:n_kept]


def rank_statistics(truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of each true value among posterior draws, ties broken at random.

    Talts et al. (2018), algorithm 1: the rank is the number of draws below
    the true value. Draws equal to it (a discrete parameter, a value the
    sampler can hit exactly) add a uniform share: with ``e`` ties the rank is
    ``below + U{0, ..., e}``, which keeps it uniform on ``0 .. L``.

    Parameters
    ----------
    truth : ndarray, shape (parameter,)
    draws : ndarray, shape (L, parameter)
    rng : numpy Generator
        Source of the tie-breaking draws.

    Returns
    -------
    ndarray of int, shape (parameter,)
        Values in ``0 .. L``.
    """
    truth = np.asarray(truth, dtype=float)
    draws = np.asarray(draws, dtype=float)
    below = np.sum(draws < truth[None, :], axis=0)
    ties = np.sum(draws == truth[None, :], axis=0)
    return below + rng.integers(0, ties + 1)


def chi_square_uniformity(ranks: np.ndarray, n_kept: int, bins: int) -> tuple[float, float]:
    """Chi-square test that ranks in ``0 .. n_kept`` are uniform, on ``bins`` equal bins.

    ``n_kept + 1`` must be divisible by ``bins`` so that every bin holds the
    same number of rank values. Returns ``(statistic, p_value)``; ``bins - 1``
    degrees of freedom. Choose ``bins`` so that about 5 or more ranks fall in
    each bin (``len(ranks) / bins >= 5``).
    """
    if (n_kept + 1) % bins:
        raise ModelError(
            f"draws_kept + 1 = {n_kept + 1} is not divisible by bins = {bins}; choose e.g. "
            f"draws_kept = {bins * max(1, round((n_kept + 1) / bins)) - 1}."
        )
    ranks = np.asarray(ranks)
    ranks = ranks[~np.isnan(ranks.astype(float))].astype(np.int64)
    if ranks.size == 0:
        return math.nan, math.nan
    if ranks.min() < 0 or ranks.max() > n_kept:
        raise ModelError(f"ranks must lie in 0 .. {n_kept}; got {ranks.min()} .. {ranks.max()}.")
    counts = np.bincount(ranks // ((n_kept + 1) // bins), minlength=bins)
    result = stats.chisquare(counts)
    return float(result.statistic), float(result.pvalue)


def ranks_table(
    truth: np.ndarray, draws: np.ndarray, fits: pd.DataFrame, labels: Sequence[str]
) -> pd.DataFrame:
    """Ranks (simulation, parameter) from truths and kept draws; <NA> where a fit failed."""
    n_simulations, n_parameters = truth.shape
    ranks = np.zeros((n_simulations, n_parameters), dtype=np.int64)
    failed = (fits["error"] != "").to_numpy()
    seeds = fits["seed"].to_numpy()
    for index in range(n_simulations):
        if failed[index]:
            continue
        # a tie-breaking stream per fit: reproducible, and the same in a combined study
        rng = np.random.default_rng([int(seeds[index]), 1])
        ranks[index] = rank_statistics(truth[index], draws[index], rng)
    table = pd.DataFrame(ranks, index=fits.index, columns=list(labels)).astype("Int64")
    table.loc[failed, :] = pd.NA
    return table
