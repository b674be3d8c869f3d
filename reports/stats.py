"""Paired comparisons of two systems on the same items: what the report's significance marks mean.

Every comparison works on per-item differences ``d_i = x_i - r_i`` (the compared system
minus the reference system) over the items both scored; a pair with a NaN on either side is
dropped and counted (``n_dropped``).

* **Confidence interval of the mean difference**: paired percentile bootstrap. Items are
  resampled with replacement, the pairs kept together, ``BOOTSTRAP_RESAMPLES`` = 10,000
  times; the interval is the 2.5th and 97.5th percentiles (``numpy.percentile``, linear
  interpolation) of the resampled means. One item gives the degenerate interval [d, d].
* **p-value**: paired sign-flip permutation test of "no difference" (under H0 each pair's
  two values are exchangeable, so each ``d_i`` is equally likely to have either sign).
  Statistic: ``|sum(d)|`` (equivalently ``|mean(d)|``); two-sided. Up to
  ``EXACT_MAX_N`` = 12 items every one of the ``2**n`` sign vectors is enumerated and
  ``p = #{|sum(s * d)| >= |sum(d)|} / 2**n`` exactly (the observed signs are among them, so
  no correction is needed). Above that, ``PERMUTATION_RESAMPLES`` = 10,000 random sign vectors
  and ``p = (1 + #{|sum(s * d)| >= |sum(d)|}) / (10,000 + 1)``: the +1 correction counts the
  observed assignment, so p is never 0 (smallest 1/10,001) and the test stays valid
  (Phipson and Smyth, 2010). Ties are counted as "at least as extreme" with a relative
  tolerance of 1e-9 of ``sum|d|``, so rounding cannot split identical sums: identical systems
  give p = 1 exactly.
* **Multiple tests**: Holm's step-down correction across all tests of one table
  (``holm``): sorted p-values ``p_(1) <= ... <= p_(m)`` become
  ``max_{j <= i} min(1, (m - j + 1) p_(j))``; tests that could not run (no pairs) are not
  counted in ``m``.

Randomness comes only from ``numpy.random.default_rng(SeedSequence([seed, stream]))``
(stream 0: bootstrap, 1: permutation; ``seed`` = 0 by default), so every number is
reproducible. Because the seed is fixed, every comparison with the same number of items
uses the same resampling and sign matrices: they are built once per ``n``, and all systems
compared with one reference on the same items go through them in one matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
PERMUTATION_RESAMPLES = 10_000
EXACT_MAX_N = 12
SEED = 0
LEVEL = 0.95
TIE_RTOL = 1e-9

METHOD = (
    "paired per-item differences (system minus reference) on the items both scored; 95% CI: paired "
    f"percentile bootstrap of the mean difference ({BOOTSTRAP_RESAMPLES:,} resamples); p: two-sided paired "
    f"sign-flip permutation test of |mean difference| (exact up to {EXACT_MAX_N} items, else "
    f"{PERMUTATION_RESAMPLES:,} random sign vectors with p = (1 + hits) / ({PERMUTATION_RESAMPLES:,} + 1)); "
    f"Holm correction across the table; seed {SEED}"
)


@dataclass(frozen=True)
class PairedResult:
    n: int  # pairs used
    n_dropped: int  # pairs with a NaN on either side
    mean_diff: float  # mean of (x - reference)
    ci_lo: float
    ci_hi: float
    p: float  # two-sided; NaN when n == 0


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


@lru_cache(maxsize=16)
def _bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) matrix: how often each item is drawn in each resample, divided by n, so that
    ``weights @ d`` are the resampled means."""
    rng = _rng(seed, 0)
    w = np.empty((resamples, n))
    for k in range(0, resamples, 2000):  # bounded memory for the index draws
        m = min(2000, resamples - k)
        idx = rng.integers(0, n, size=(m, n))
        offsets = (np.arange(m) * n)[:, None]
        w[k : k + m] = np.bincount((idx + offsets).ravel(), minlength=m * n).reshape(m, n)
    w /= n
    w.setflags(write=False)
    return w


@lru_cache(maxsize=16)
def _signs(n: int, resamples: int, seed: int) -> tuple[np.ndarray, bool]:
    """Sign vectors as rows and whether they are the complete enumeration."""
    if n <= EXACT_MAX_N:
        codes = np.arange(2**n)[:, None] >> np.arange(n)[None, :]
        s, exact = (1.0 - 2.0 * (codes & 1)), True
    else:
        s, exact = 1.0 - 2.0 * _rng(seed, 1).integers(0, 2, size=(resamples, n)), False
    s.setflags(write=False)
    return s, exact


def _ci_columns(d: np.ndarray, resamples: int, seed: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap intervals of the column means of ``d`` [n, m], one resampling for all."""
    n = d.shape[0]
    if n == 0:
        return np.full(d.shape[1], np.nan), np.full(d.shape[1], np.nan)
    if n == 1:
        return d[0].copy(), d[0].copy()
    means = _bootstrap_weights(n, resamples, seed) @ d
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    return lo, hi


def _p_columns(d: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Sign-flip p-values of the columns of ``d`` [n, m] (see the module docstring)."""
    n = d.shape[0]
    if n == 0:
        return np.full(d.shape[1], np.nan)
    s, exact = _signs(n, resamples, seed)
    observed = np.abs(d.sum(axis=0))
    tol = TIE_RTOL * np.abs(d).sum(axis=0)
    hits = np.count_nonzero(np.abs(s @ d) >= observed - tol, axis=0)
    if exact:
        return hits / len(s)
    return (1 + hits) / (len(s) + 1)


def bootstrap_ci(d: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap interval of the mean of ``d`` (finite values, pairs already formed)."""
    lo, hi = _ci_columns(np.asarray(d, dtype=np.float64).reshape(-1, 1), resamples, seed, level)
    return float(lo[0]), float(hi[0])


def sign_flip_p(d: np.ndarray, resamples: int = PERMUTATION_RESAMPLES, seed: int = SEED) -> float:
    """Two-sided paired sign-flip permutation p-value of mean(d) = 0 (see the module docstring)."""
    return float(_p_columns(np.asarray(d, dtype=np.float64).reshape(-1, 1), resamples, seed)[0])


def paired_tests(x: np.ndarray, reference: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                 permutations: int = PERMUTATION_RESAMPLES, seed: int = SEED) -> list[PairedResult]:  # fmt: skip
    """Compare each column of ``x`` [items, systems] with ``reference`` [items], item by item (NaN = no
    value). Columns missing the same items share one pass over the resampling matrices."""
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != r.shape[0] or r.ndim != 1:
        raise ValueError(f"paired values need the same items: {x.shape} vs {r.shape}")
    keep = np.isfinite(x) & np.isfinite(r)[:, None]
    out: list[PairedResult | None] = [None] * x.shape[1]
    patterns: dict[bytes, list[int]] = {}
    for j in range(x.shape[1]):
        patterns.setdefault(keep[:, j].tobytes(), []).append(j)
    for cols in patterns.values():
        rows = keep[:, cols[0]]
        d = x[rows][:, cols] - r[rows, None]
        lo, hi = _ci_columns(d, resamples, seed, LEVEL)
        p = _p_columns(d, permutations, seed)
        n = d.shape[0]
        for k, j in enumerate(cols):
            out[j] = PairedResult(n=n, n_dropped=int(len(r) - n), mean_diff=float(d[:, k].mean()) if n else math.nan,
                                  ci_lo=float(lo[k]), ci_hi=float(hi[k]), p=float(p[k]))  # fmt: skip
    return out  # type: ignore[return-value]


def paired_test(x: np.ndarray, reference: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                permutations: int = PERMUTATION_RESAMPLES, seed: int = SEED) -> PairedResult:  # fmt: skip
    """Compare ``x`` with ``reference`` item by item (same order, NaN = no value)."""
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if x.shape != r.shape or x.ndim != 1:
        raise ValueError(f"paired values need the same items: {x.shape} vs {r.shape}")
    return paired_tests(x[:, None], r, resamples, permutations, seed)[0]


def holm(p: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values in the input order; NaN stays NaN and is not counted."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


__all__ = ["PairedResult", "paired_test", "paired_tests", "bootstrap_ci", "sign_flip_p", "holm", "METHOD",
           "BOOTSTRAP_RESAMPLES", "PERMUTATION_RESAMPLES", "EXACT_MAX_N", "SEED"]  # fmt: skip
