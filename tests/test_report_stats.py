"""reports.stats: the paired bootstrap, the sign-flip permutation test and Holm, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reports import stats


def test_exact_sign_flip_p_matches_hand_enumeration():
    # d = (1, 2, 3): the 8 signed sums are +-6, +-4, +-2, 0, 0; |sum| >= 6 twice -> 2/8
    assert stats.sign_flip_p(np.array([1.0, 2.0, 3.0])) == 0.25
    # d = (0.5, -1, 2, 3), sum 4.5; flipping a subset S gives 4.5 - 2 sum(S), and |.| >= 4.5 iff
    # sum(S) <= 0 or >= 4.5: S in {}, {-1}, {0.5, -1}, {2, 3}, {0.5, 2, 3}, all four -> 6 of 16
    r = np.array([10.0, 20.0, 30.0, 40.0])
    res = stats.paired_test(r + np.array([0.5, -1.0, 2.0, 3.0]), r)
    assert res.p == 0.375
    assert res.n == 4 and res.n_dropped == 0 and res.mean_diff == pytest.approx(4.5 / 4, abs=1e-12)
    # one pair: both signs give the same |sum|
    assert stats.sign_flip_p(np.array([2.0])) == 1.0


def test_exact_enumeration_up_to_the_limit_then_monte_carlo_with_plus_one():
    d = np.arange(1.0, stats.EXACT_MAX_N + 1)  # all positive: only the all-plus and all-minus signs hit
    assert stats.sign_flip_p(d) == 2 / 2**stats.EXACT_MAX_N
    d = np.arange(1.0, stats.EXACT_MAX_N + 2)  # one more item: random signs, (1 + hits) / (B + 1)
    p = stats.sign_flip_p(d)
    assert p * (stats.PERMUTATION_RESAMPLES + 1) == pytest.approx(round(p * (stats.PERMUTATION_RESAMPLES + 1)), abs=1e-9)
    assert 1 / (stats.PERMUTATION_RESAMPLES + 1) <= p < 0.01


def test_identical_systems_give_p_one_and_a_zero_interval():
    x = np.random.default_rng(3).normal(size=200)
    res = stats.paired_test(x, x.copy())
    assert res.p == 1.0 and res.mean_diff == 0.0 and (res.ci_lo, res.ci_hi) == (0.0, 0.0)
    small = stats.paired_test(x[:5], x[:5])  # exact path too
    assert small.p == 1.0


def test_a_clearly_shifted_system_is_significant_and_the_test_is_two_sided():
    rng = np.random.default_rng(7)
    ref = rng.normal(2.0, 1.0, size=200)
    x = ref + 0.5 + rng.normal(0.0, 1.0, size=200)
    better, worse = stats.paired_test(x, ref), stats.paired_test(ref, x)
    assert better.p < 0.01 and better.p >= 1 / (stats.PERMUTATION_RESAMPLES + 1)
    assert worse.p == better.p  # |sum| is symmetric in the sign of d
    assert worse.mean_diff == pytest.approx(-better.mean_diff, abs=1e-12)
    assert (worse.ci_lo, worse.ci_hi) == pytest.approx((-better.ci_hi, -better.ci_lo), abs=1e-12)
    # a normal-theory interval of the same mean difference, within 10% in width
    d = x - ref
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert better.ci_lo < d.mean() < better.ci_hi
    assert (better.ci_hi - better.ci_lo) / 2 == pytest.approx(half, rel=0.1)


def test_no_difference_in_distribution_is_not_significant():
    rng = np.random.default_rng(11)
    ref = rng.normal(size=200)
    d = rng.normal(0.0, 1.0, size=200)
    x = ref + (d - d.mean())  # differences with mean 0: almost every sign vector gives a larger |sum|
    assert stats.paired_test(x, ref).p > 0.9


def test_bootstrap_interval_of_a_two_item_difference():
    # resampled means of d = (0, 1) are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5th and
    # 97.5th percentiles are 0 and 1
    assert stats.bootstrap_ci(np.array([0.0, 1.0])) == (0.0, 1.0)
    assert stats.bootstrap_ci(np.array([4.0])) == (4.0, 4.0)
    assert all(math.isnan(v) for v in stats.bootstrap_ci(np.array([])))


def test_pairs_with_a_nan_are_dropped_and_counted():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=30)
    x = ref + 1.0
    x[[2, 7]] = np.nan
    ref[11] = np.inf  # a non-finite value counts as missing too
    res = stats.paired_test(x, ref)
    assert res.n == 27 and res.n_dropped == 3
    assert res.mean_diff == pytest.approx(1.0, abs=1e-12)
    empty = stats.paired_test(np.array([np.nan]), np.array([1.0]))
    assert empty.n == 0 and math.isnan(empty.p) and math.isnan(empty.mean_diff)
    with pytest.raises(ValueError):
        stats.paired_test(np.zeros(3), np.zeros(4))


def test_results_are_deterministic():
    rng = np.random.default_rng(2)
    ref, x = rng.normal(size=150), rng.normal(size=150)
    a, b = stats.paired_test(x, ref), stats.paired_test(x.copy(), ref.copy())
    assert a == b
    other_seed = stats.paired_test(x, ref, seed=1)
    assert other_seed.ci_lo != a.ci_lo  # the seed is what fixes the draws


def test_holm_against_hand_examples():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # a test that could not run is not counted: m = 2
    out = stats.holm([0.02, float("nan"), 0.5])
    assert out[0] == pytest.approx(0.04) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)
    assert list(stats.holm([0.6, 0.7])) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]).shape == (0,)


def test_batched_comparisons_equal_one_at_a_time():
    rng = np.random.default_rng(4)
    ref = rng.normal(size=60)
    x = ref[:, None] + rng.normal(0.2, 1.0, size=(60, 4))
    x[5, 1] = np.nan  # one column misses an item: it gets its own pass
    batch = stats.paired_tests(x, ref)
    for j, res in enumerate(batch):
        one = stats.paired_test(x[:, j], ref)
        assert (res.n, res.n_dropped, res.p) == (one.n, one.n_dropped, one.p)
        assert (res.mean_diff, res.ci_lo, res.ci_hi) == pytest.approx((one.mean_diff, one.ci_lo, one.ci_hi), abs=1e-12)
    assert batch[1].n == 59 and batch[0].n == 60
