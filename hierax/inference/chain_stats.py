"""Convergence statistics of MCMC draws, vectorized over all entries at once.

This module reproduces ArviZ 0.23's definitions of the rank-normalized split
R-hat, the bulk and tail effective sample sizes (ESS) and the Monte Carlo
standard errors of the mean and of the sd (Vehtari et al. 2021), as
``az.summary(idata, kind="diagnostics")`` computes them, including its special
cases: constant entries, entries containing NaN, fewer than 4 draws or fewer
than 2 chains, odd numbers of draws (the split drops the middle draw) and ties.

Why not call ArviZ: ArviZ evaluates these statistics with a Python loop over
every scalar entry of the posterior, about 2 ms per entry, which dominates the
time of a fit with hundreds of latent parameters. Here the statistics of all
entries are computed together, by array operations over an ``entry`` axis.

Internally the draws are laid out as ``(entry, chain, draw)``, each chain's
draws contiguous, so that every reduction over draws adds the numbers in the
same order as ArviZ does on one entry's ``(chain, draw)`` array; results then
agree with ArviZ to rounding, and mostly bit for bit.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. Bayesian Analysis, 16(2), 667-718.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import pandas as pd
from arviz.labels import BaseLabeller
from numpy.typing import ArrayLike, NDArray
from scipy import fft, special

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

MIN_DRAWS = 4
"""Fewer draws per chain than this give NaN for every statistic (as in ArviZ)."""

MIN_CHAINS_RHAT = 2
"""Fewer chains than this give a NaN R-hat (as in ArviZ)."""

TAIL_PROBS = (0.05, 0.95)
"""Quantiles whose indicator ESS gives the tail ESS."""

BLOM_OFFSET = 3 / 8
"""Fractional offset of the rank back-transformation (Blom 1958)."""

BLOCK_VALUES = 2**17
"""Draws (entries times chains times draws) processed together by :func:`diagnostics`."""

COLUMNS = ("mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
"""Columns of ``az.summary(..., kind="diagnostics")``, in its order."""


# ------------------------------------------------------------ public statistics
# Every public function takes draws of shape (chain, draw, entry) and returns one
# value per entry, NaN for entries containing NaN or with fewer than 4 draws.


def ess_bulk(draws: ArrayLike) -> FloatArray:
    """Bulk ESS: ESS of the rank-normalized split chains (``az.ess(method="bulk")``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)

    Returns
    -------
    ndarray, shape (entry,)
    """
    return _per_entry(draws, lambda rows: _ess(_z_scale(_split_chains(rows))))


def ess_tail(draws: ArrayLike) -> FloatArray:
    """Tail ESS: the smaller of the 5 % and 95 % quantile ESS (``az.ess(method="tail")``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)

    Returns
    -------
    ndarray, shape (entry,)
    """
    return _per_entry(draws, lambda rows: _ess_tail(rows))


def ess_quantile(draws: ArrayLike, prob: float) -> FloatArray:
    """ESS of the indicator ``draw <= quantile(prob)`` (``az.ess(method="quantile")``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)
    prob : float

    Returns
    -------
    ndarray, shape (entry,)
    """
    return _per_entry(draws, lambda rows: _ess_quantile(rows, _type7_quantiles(rows, (prob,))[0]))


def ess_mean(draws: ArrayLike) -> FloatArray:
    """ESS of the mean: ESS of the split chains (``az.ess(method="mean")``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)

    Returns
    -------
    ndarray, shape (entry,)
    """
    return _per_entry(draws, lambda rows: _ess(_split_chains(rows)))


def rhat(draws: ArrayLike, fold_around: Literal["draws", "split"] = "draws") -> FloatArray:
    """Rank-normalized split R-hat: the larger of the bulk and folded (tail) R-hat.

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)
    fold_around : {"draws", "split"}
        Median the tail R-hat folds around: of all draws (as ``az.summary``
        does) or of the split chains, i.e. without the middle draw of an odd
        number of draws (as ``az.rhat`` does). They differ only for odd
        numbers of draws.

    Returns
    -------
    ndarray, shape (entry,)
        Also NaN with fewer than 2 chains.
    """
    return _per_entry(draws, lambda rows: _rhat_rank(rows, fold_around), min_chains=MIN_CHAINS_RHAT)


def mcse_mean(draws: ArrayLike) -> FloatArray:
    """Monte Carlo standard error of the mean (``az.mcse(method="mean")``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)

    Returns
    -------
    ndarray, shape (entry,)
    """
    return _per_entry(draws, lambda rows: _mcse_mean(rows, _centred_squares(rows)))


def mcse_sd(draws: ArrayLike) -> FloatArray:
    """Monte Carlo standard error of the sd (``az.mcse(method="sd")``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)

    Returns
    -------
    ndarray, shape (entry,)
        Also NaN for constant entries (0 / 0), as in ArviZ.
    """
    return _per_entry(draws, lambda rows: _mcse_sd(_centred_squares(rows)))


def effective_sample_size(draws: ArrayLike) -> FloatArray:
    """ESS of the chains as given, without splitting or ranking (ArviZ's ``_ess``).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)
        At least 2 draws per chain.

    Returns
    -------
    ndarray, shape (entry,)
        NaN for entries containing NaN; ``chain * draw`` for constant entries.
    """
    rows, invalid = _entry_rows(draws)
    if rows.shape[2] < 2:
        raise ValueError("the ESS needs at least 2 draws per chain")
    return _mask(_ess(rows), invalid)


def diagnostics(draws: ArrayLike) -> dict[str, FloatArray]:
    """All columns of ``az.summary(kind="diagnostics")``, plus ``sd``.

    Entries are processed in blocks of about ``BLOCK_VALUES`` draws, which
    bounds the memory used and keeps the work in cache; the results do not
    depend on the blocks. Blocks run in threads (see :func:`_in_threads`).

    Parameters
    ----------
    draws : array_like, shape (chain, draw, entry)

    Returns
    -------
    dict of str to ndarray, shape (entry,)
        ``mcse_mean``, ``mcse_sd``, ``ess_bulk``, ``ess_tail``, ``r_hat`` and
        ``sd`` (``np.std`` over all chains and draws, ddof 0).
    """
    array = np.asarray(draws, dtype=float)
    if array.ndim != 3:
        raise ValueError(f"draws must have shape (chain, draw, entry), got {array.shape}")
    n_chain, n_draw, n_entry = array.shape
    block = max(1, BLOCK_VALUES // max(1, n_chain * n_draw))
    pieces = [array[:, :, start : start + block] for start in range(0, n_entry, block)]
    blocks = _in_threads(_diagnostics_block, pieces)
    names = [*COLUMNS, "sd"]
    if not blocks:
        return {name: np.empty(0) for name in names}
    return {name: np.concatenate([result[name] for result in blocks]) for name in names}


def _in_threads(
    function: Callable[[FloatArray], dict[str, FloatArray]], blocks: list[FloatArray]
) -> list[dict[str, FloatArray]]:
    """``[function(block) for block in blocks]``, the blocks in threads, one per CPU core.

    NumPy's sorts, FFTs and array arithmetic release the GIL: the star
    cluster's 258 entries of 4000 draws take 0.28 s in one thread, 0.16 s in
    two.
    """
    workers = min(len(blocks), os.cpu_count() or 1)
    if workers < 2:
        return [function(block) for block in blocks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, blocks))


def _diagnostics_block(draws: FloatArray) -> dict[str, FloatArray]:
    """:func:`diagnostics` of a block of entries, all at once."""
    rows, invalid = _entry_rows(draws)
    sd = np.where(invalid, np.nan, np.std(_flatten_chains(rows), axis=1))
    if _too_few_draws(rows):
        return {**{column: _all_nan(rows) for column in COLUMNS}, "sd": sd}
    squares = _centred_squares(rows)
    bulk_z = _z_scale(_split_chains(rows))
    enough_chains = rows.shape[1] >= MIN_CHAINS_RHAT
    columns = {
        "mcse_mean": _mcse_mean(rows, squares),
        "mcse_sd": _mcse_sd(squares),
        "ess_bulk": _ess(bulk_z),
        "ess_tail": _ess_tail(rows),
        "r_hat": _rhat_rank(rows, bulk_z=bulk_z) if enough_chains else _all_nan(rows),
    }
    return {**{name: _mask(values, invalid) for name, values in columns.items()}, "sd": sd}


def diagnostics_table(idata: Any) -> pd.DataFrame:
    """``az.summary(idata, kind="diagnostics", round_to="none")`` plus a column ``sd``.

    Integer and boolean variables are cast to float, as ArviZ's arithmetic
    does. Float32 variables are also computed in float64, whereas ArviZ keeps
    float32 for part of the MCSE arithmetic: their ``mcse_mean`` and
    ``mcse_sd`` then agree with ArviZ's to about 1e-7 only.

    Parameters
    ----------
    idata : arviz.InferenceData
        Only the ``posterior`` group is used.

    Returns
    -------
    pandas.DataFrame
        One row per scalar entry, labelled like ArviZ (``mu``, ``r[3]``,
        ``Sigma[0, 1]``) and in its order; columns ``mcse_mean``, ``mcse_sd``,
        ``ess_bulk``, ``ess_tail``, ``r_hat``, ``sd``.
    """
    posterior = idata["posterior"]
    labels: list[str] = []
    arrays: list[FloatArray] = []
    for name in posterior.data_vars:
        variable = posterior[name]
        entry_dims = [str(dim) for dim in variable.dims if dim not in ("chain", "draw")]
        values = np.asarray(variable.transpose("chain", "draw", *entry_dims).values, dtype=float)
        arrays.append(values.reshape(values.shape[0], values.shape[1], -1))
        labels.extend(_entry_labels(variable, str(name), entry_dims))
    columns = [*COLUMNS, "sd"]
    if not arrays:
        return pd.DataFrame(columns=columns, dtype=float)
    draws_per_entry = max(1, arrays[0].shape[0] * arrays[0].shape[1])
    results = _in_threads(diagnostics, _batches(arrays, BLOCK_VALUES // draws_per_entry))
    return pd.DataFrame(
        {column: np.concatenate([result[column] for result in results]) for column in columns},
        index=labels,
    )


def _batches(arrays: list[FloatArray], entries: int) -> list[FloatArray]:
    """Variables' draws (chain, draw, entry) joined into batches of about ``entries``.

    Small variables are concatenated along the entry axis; a variable with
    ``entries`` or more entries stays alone and is not copied.
    """
    batches: list[FloatArray] = []
    pending: list[FloatArray] = []

    def flush() -> None:
        if pending:
            batches.append(pending[0] if len(pending) == 1 else np.concatenate(pending, axis=2))
            pending.clear()

    for array in arrays:
        if array.shape[2] >= entries:
            flush()
            batches.append(array)
            continue
        pending.append(array)
        if sum(item.shape[2] for item in pending) >= entries:
            flush()
    flush()
    return batches


# --------------------------------------------------------------- building blocks
# Private functions work on draws laid out as (entry, chain, draw), contiguous.


def _per_entry(
    draws: ArrayLike, statistic: Callable[[FloatArray], FloatArray], min_chains: int = 1
) -> FloatArray:
    """``statistic`` of the ``(entry, chain, draw)`` rows, NaN where ArviZ gives NaN.

    NaN for every entry with too few draws or chains, and for entries containing NaN.
    """
    rows, invalid = _entry_rows(draws)
    if _too_few_draws(rows) or rows.shape[1] < min_chains:
        return _all_nan(rows)
    return _mask(statistic(rows), invalid)


def _entry_rows(draws: ArrayLike) -> tuple[FloatArray, BoolArray]:
    """Draws as contiguous float ``(entry, chain, draw)``, NaN entries zeroed.

    Returns
    -------
    rows : ndarray, shape (entry, chain, draw)
    invalid : ndarray of bool, shape (entry,)
        Which entries contain NaN (their statistics are NaN).
    """
    array = np.asarray(draws, dtype=float)
    if array.ndim != 3:
        raise ValueError(f"draws must have shape (chain, draw, entry), got {array.shape}")
    rows = np.moveaxis(array, 2, 0)
    invalid = np.isnan(rows).any(axis=(1, 2))
    return np.ascontiguousarray(np.where(invalid[:, None, None], 0.0, rows)), invalid


def _too_few_draws(rows: FloatArray) -> bool:
    """Fewer than 4 draws per chain: every statistic is NaN."""
    return rows.shape[2] < MIN_DRAWS


def _all_nan(rows: FloatArray) -> FloatArray:
    """NaN for every entry."""
    return np.full(rows.shape[0], np.nan)


def _mask(values: FloatArray, invalid: BoolArray) -> FloatArray:
    """``values`` with NaN where ``invalid``."""
    return np.where(invalid, np.nan, values)


def _flatten_chains(rows: FloatArray) -> FloatArray:
    """All draws of each entry in one row, chain after chain: (entry, chain * draw)."""
    return rows.reshape(rows.shape[0], -1)


def _split_chains(rows: FloatArray) -> FloatArray:
    """Split every chain into two halves stacked as chains: (entry, 2 * chain, draw // 2).

    With an odd number of draws the middle draw is dropped, as in ArviZ.
    """
    n_draw = rows.shape[2]
    half = n_draw // 2
    return np.concatenate((rows[:, :, :half], rows[:, :, n_draw - half :]), axis=1)


def _z_scale(rows: FloatArray) -> FloatArray:
    """Rank-normalize each entry over all its chains and draws.

    Average ranks for ties, back-transformed as ``(rank - 3/8) / (size + 1/4)``
    (Blom), then mapped through the standard normal quantile function.
    """
    flat = _flatten_chains(rows)
    size = flat.shape[1]
    uniform = (_average_ranks(flat) - BLOM_OFFSET) / (size - 2 * BLOM_OFFSET + 1)
    return np.asarray(special.ndtri(uniform), dtype=float).reshape(rows.shape)


def _average_ranks(flat: FloatArray) -> FloatArray:
    """Ranks (from 1) within each row, ties given their average rank.

    The same numbers as ``scipy.stats.rankdata(method="average", axis=1)``,
    computed with an unstable sort, which is faster and cannot change average
    ranks; only the (few) tied draws are visited a second time.
    """
    n_row, size = flat.shape
    order = np.argsort(flat, axis=1)
    ordered = np.sort(flat, axis=1)
    sorted_ranks = np.broadcast_to(np.arange(1.0, size + 1.0), (n_row, size)).copy()
    # flat indices (into the sorted rows) of draws equal to the draw before them
    repeats = np.flatnonzero(
        np.pad(ordered[:, 1:] == ordered[:, :-1], ((0, 0), (1, 0)), constant_values=False)
    )
    if repeats.size:
        run_starts = np.ones(repeats.size, dtype=bool)
        run_starts[1:] = np.diff(repeats) != 1
        run = np.cumsum(run_starts) - 1
        first = repeats[run_starts] - 1  # the draw before the first repeat
        last = repeats[np.r_[run_starts[1:], True]]
        average = (first % size + last % size) / 2 + 1
        ranks_of_sorted = sorted_ranks.reshape(-1)
        ranks_of_sorted[repeats] = average[run]
        ranks_of_sorted[first] = average
    ranks = np.empty((n_row, size))
    np.put_along_axis(ranks, order, sorted_ranks, axis=1)
    return ranks


def _autocovariance(rows: FloatArray) -> FloatArray:
    """Autocovariance of every chain at every lag by FFT (biased: divided by the draws)."""
    n_draw = rows.shape[2]
    n_fft = fft.next_fast_len(2 * n_draw)
    centred = rows - rows.mean(axis=2, keepdims=True)
    transform = np.fft.rfft(centred, n=n_fft, axis=2)
    transform *= np.conjugate(transform)
    cov = np.fft.irfft(transform, n=n_fft, axis=2)[:, :, :n_draw]
    cov /= n_draw
    return cov


def _type7_quantiles(rows: FloatArray, probs: tuple[float, ...]) -> FloatArray:
    """Quantiles of each entry over all chains and draws, R's type 7.

    Uses the arithmetic of ``scipy.stats.mstats.mquantiles(alphap=1, betap=1)``
    (what ArviZ calls), so draws equal to a quantile compare as in ArviZ.

    Returns
    -------
    ndarray, shape (len(probs), entry)
    """
    ordered = np.sort(_flatten_chains(rows), axis=1)
    size = ordered.shape[1]
    p = np.asarray(probs, dtype=float)
    m = 1.0 + p * (1.0 - 1.0 - 1.0)  # alphap + p * (1 - alphap - betap)
    aleph = size * p + m
    k = np.floor(aleph.clip(1, size - 1)).astype(int)
    gamma = (aleph - k).clip(0, 1)
    return (1.0 - gamma[:, None]) * ordered[:, k - 1].T + gamma[:, None] * ordered[:, k].T


def _autocorrelations(rows: FloatArray) -> FloatArray:
    """Combined-chain autocorrelation estimates, shape (entry, lag); lag 0 is 1.

    ``rho[t] = 1 - (W - mean over chains of acov[t]) / var_plus`` with ``W``
    the mean within-chain variance and ``var_plus`` the pooled variance.
    """
    n_chain, n_draw = rows.shape[1:]
    acov = _autocovariance(rows)
    mean_var = np.mean(acov[:, :, 0], axis=1) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + np.var(rows.mean(axis=2), axis=1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    return np.asarray(rho, dtype=float)


def _geyer_tau(rho: FloatArray) -> FloatArray:
    """Integrated autocorrelation time by Geyer's initial monotone sequence.

    Reproduces ArviZ's loop without looping: the pair sums
    ``P_j = rho[2j] + rho[2j+1]`` are looked at while the previous one is
    positive and ``2j - 1 < n_draw - 3``; ``J`` is the last pair looked at.
    Pairs ``0 .. J-1`` enter as their running minimum (the initial monotone
    sequence); of pair ``J`` only ``rho[2J]`` enters, when ``P_J >= 0`` or
    ``rho[2J] > 0``. Returns ``-1 + 2 * sum(pairs before J) + rho[2J]``,
    not yet floored.
    """
    n_entry, n_draw = rho.shape
    last_pair = max((n_draw - 3) // 2, 0)
    pairs = rho[:, 0 : 2 * last_pair + 1 : 2] + rho[:, 1 : 2 * last_pair + 2 : 2]
    stops = ~(pairs > 0.0)  # NaN stops too
    stop = np.where(stops.any(axis=1), stops.argmax(axis=1), last_pair)
    monotone = np.minimum.accumulate(pairs, axis=1)
    before_stop = np.arange(last_pair + 1) < stop[:, None]
    head = np.where(before_stop, monotone, 0.0).sum(axis=1)
    entries = np.arange(n_entry)
    even = rho[entries, 2 * stop]
    kept = (pairs[entries, stop] >= 0.0) | (even > 0.0)
    return -1.0 + 2.0 * head + np.where(kept, even, 0.0)


def _ess(rows: FloatArray) -> FloatArray:
    """ESS of each entry's chains as given (ArviZ's ``_ess``), shape (entry,).

    Constant entries (range below ``np.finfo(float).resolution``) get
    ``chain * draw``; the autocorrelation time is floored at
    ``1 / log10(chain * draw)``.
    """
    size = rows.shape[1] * rows.shape[2]
    flat = _flatten_chains(rows)
    constant = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = _autocorrelations(np.where(constant[:, None, None], 0.0, rows))
        tau = _geyer_tau(rho)
        floor = 1 / np.log10(size)
        tau = np.where(floor > tau, floor, tau)  # Python's max(tau, floor)
        ess = np.where(np.isnan(rho[:, 1]), np.nan, size / tau)
    return np.where(constant, float(size), ess)


def _ess_quantile(rows: FloatArray, quantile: FloatArray) -> FloatArray:
    """ESS of the indicator ``draw <= quantile`` over split chains."""
    below = rows <= quantile[:, None, None]
    return _ess(_split_chains(below.astype(float)))


def _ess_tail(rows: FloatArray) -> FloatArray:
    """Smaller of the 5 % and 95 % quantile ESS (Python's ``min``, NaN first wins)."""
    low, high = (_ess_quantile(rows, q) for q in _type7_quantiles(rows, TAIL_PROBS))
    return np.where(high < low, high, low)


def _split_rhat(split: FloatArray) -> FloatArray:
    """Classic R-hat of chains already split (ArviZ's ``_rhat``), shape (entry,)."""
    n_draw = split.shape[2]
    between = n_draw * np.var(split.mean(axis=2), axis=1, ddof=1)
    within = np.mean(np.var(split, axis=2, ddof=1), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.sqrt((between / within + n_draw - 1) / n_draw), dtype=float)


def _rhat_rank(
    rows: FloatArray,
    fold_around: Literal["draws", "split"] = "draws",
    bulk_z: FloatArray | None = None,
) -> FloatArray:
    """Larger of the bulk and tail (folded) rank-normalized split R-hat.

    ``bulk_z`` is ``_z_scale(_split_chains(rows))`` when already computed.
    """
    split = _split_chains(rows)
    bulk = _split_rhat(_z_scale(split) if bulk_z is None else bulk_z)
    if fold_around == "split":
        median = np.median(_flatten_chains(split), axis=1)
        folded = np.abs(split - median[:, None, None])
    else:
        median = np.median(_flatten_chains(rows), axis=1)
        folded = _split_chains(np.abs(rows - median[:, None, None]))
    tail = _split_rhat(_z_scale(folded))
    return np.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail)


def _centred_squares(rows: FloatArray) -> FloatArray:
    """``(draw - mean)**2``, the mean of each entry over all chains and draws."""
    mean = _flatten_chains(rows).mean(axis=1)
    return (rows - mean[:, None, None]) ** 2


def _mcse_mean(rows: FloatArray, squares: FloatArray) -> FloatArray:
    """``sqrt(var / ess_mean)``, the variance with ddof 1."""
    flat = _flatten_chains(squares)
    variance = flat.sum(axis=1) / (flat.shape[1] - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.sqrt(variance / _ess(_split_chains(rows))), dtype=float)


def _mcse_sd(squares: FloatArray) -> FloatArray:
    """``sqrt(var(squares) / ess_mean(squares) / mean(squares) / 4)``."""
    flat = _flatten_chains(squares)
    mean_square = flat.sum(axis=1) / flat.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        var_of_var = ((flat**2).mean(axis=1) - mean_square**2) / _ess(_split_chains(squares))
        return np.asarray(np.sqrt(var_of_var / mean_square / 4), dtype=float)


def _entry_labels(variable: Any, name: str, dims: list[str]) -> list[str]:
    """ArviZ's flat labels (``r[3]``, ``Sigma[0, 1]``) of every entry, row-major."""
    labeller = BaseLabeller()
    coords = [variable[dim].values for dim in dims]
    return [
        labeller.make_label_flat(
            name,
            {dim: values[i] for dim, values, i in zip(dims, coords, index, strict=True)},
            dict(zip(dims, index, strict=True)),
        )
        for index in np.ndindex(*(len(values) for values in coords))
    ]
