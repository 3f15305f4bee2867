"""Seed aggregation and the paired bootstrap on synthetic values with a known difference."""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation.stats import over_seeds, paired_bootstrap


def test_over_seeds_is_mean_and_sample_sd():
    summary = over_seeds([1.0, 2.0, 3.0, float("nan")])
    assert (summary.mean, summary.sd, summary.n) == (2.0, 1.0, 3)
    assert str(summary) == "2.000 ± 1.000"


def test_bootstrap_interval_covers_a_known_difference():
    rng = np.random.default_rng(1)
    truth = 0.3
    covered = 0
    for trial in range(200):
        base = rng.normal(0, 1, 60)
        a = base + truth + rng.normal(0, 0.5, 60)
        b = base
        interval = paired_bootstrap(a, b, n_boot=2000, seed=trial)
        covered += interval.low <= truth <= interval.high
    assert 0.90 <= covered / 200 <= 0.99


def test_bootstrap_pairs_rather_than_pooling():
    """A tiny consistent gain on noisy values is detected only because values are paired."""
    rng = np.random.default_rng(2)
    base = rng.normal(0, 5, 80)
    result = paired_bootstrap(base + 0.1, base, seed=0)
    assert result.significant and result.mean == pytest.approx(0.1)


def test_no_difference_is_not_significant():
    rng = np.random.default_rng(3)
    result = paired_bootstrap(rng.normal(0, 1, 100), rng.normal(0, 1, 100), seed=0)
    assert result.low < 0 < result.high and not result.significant


def test_shapes_must_match():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_rounding_ties_one_pair_and_no_pairs():
    tie = paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0 + 1e-13, 3.0 - 1e-13])
    assert (tie.mean, tie.low, tie.high, tie.n) == (0.0, 0.0, 0.0, 3) and not tie.significant
    one = paired_bootstrap([0.5, np.nan], [0.25, 1.0])
    assert (one.mean, one.n) == (0.25, 1) and np.isnan(one.low) and np.isnan(one.high) and not one.significant
    assert paired_bootstrap([np.nan], [1.0]).n == 0 and np.isnan(paired_bootstrap([], []).mean)


def test_float32_noise_is_a_tie_not_a_star():
    """Two models that differ by 1e-7 (float32 rounding of the same prediction) tie: no star, Δ 0."""
    rng = np.random.default_rng(4)
    base = rng.uniform(0, 1, 12)
    noise = paired_bootstrap(base + 1e-7, base, seed=0)
    assert (noise.mean, noise.low, noise.high) == (0.0, 0.0, 0.0) and not noise.significant


def test_detectable_difference_is_the_80_percent_power_size():
    """The smallest difference detected 80% of the time at a two-sided 5% level is (z_0.975 + z_0.8) ≈ 2.80
    standard errors; the standard error of a mean of n unit-sd differences is 1/sqrt(n)."""
    rng = np.random.default_rng(5)
    diff = rng.normal(0, 1, 400)
    diff = (diff - diff.mean()) / diff.std()
    result = paired_bootstrap(diff, np.zeros_like(diff), seed=0)
    assert result.detectable == pytest.approx(2.8016 / np.sqrt(400), rel=0.05)
    assert np.isnan(paired_bootstrap([1.0], [0.5]).detectable)


def test_interval_covers_at_small_n():
    """Six normal differences: the plain percentile interval covers the mean about 88% of the time (too
    narrow by sqrt(5/6), and z where t_5 fits); the expanded percentile interval about 95%."""
    rng = np.random.default_rng(6)
    trials = 600
    intervals = [paired_bootstrap(diff, np.zeros(6), n_boot=2000, seed=trial)
                 for trial, diff in enumerate(rng.normal(0, 1, (trials, 6)))]
    covered = sum(interval.low <= 0 <= interval.high for interval in intervals)
    assert 0.93 <= covered / trials <= 0.97
