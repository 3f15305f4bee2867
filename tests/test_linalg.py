"""The shared principal axes: the exact SVD of the centred (or z-scored) rows, in the caller's dtype."""

from __future__ import annotations

import numpy as np

from bench.core import linalg


def test_principal_axes_are_the_svd_of_the_centred_rows_bit_for_bit():
    x = np.random.default_rng(0).normal(size=(30, 8)) + 5.0
    mean, values, axes = linalg.principal_axes(x, 3)
    _, expected_values, expected_axes = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    assert np.array_equal(mean, x.mean(axis=0))
    assert np.array_equal(values, expected_values[:3]) and np.array_equal(axes, expected_axes[:3])
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-12)


def test_all_axes_rebuild_the_rows_and_k_beyond_the_rank_gives_all():
    x = np.random.default_rng(1).normal(size=(6, 10))
    mean, values, axes = linalg.principal_axes(x, 50)
    assert axes.shape == (6, 10) and values.shape == (6,)
    np.testing.assert_allclose(((x - mean) @ axes.T) @ axes + mean, x, atol=1e-12)


def test_scaled_axes_are_those_of_z_scores_and_a_constant_column_is_only_centred():
    x = np.random.default_rng(2).normal(size=(40, 5)) * [1.0, 10.0, 100.0, 0.1, 1.0]
    x[:, 4] = 3.0
    _, values, axes = linalg.principal_axes(x, 5, scale=True)
    sd = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    _, expected_values, expected_axes = np.linalg.svd(z, full_matrices=False)
    assert np.array_equal(values, expected_values) and np.array_equal(axes, expected_axes)
    assert np.all(np.abs(axes[:4, 4]) < 1e-12)


def test_float32_rows_stay_float32():
    x = np.random.default_rng(3).normal(size=(20, 4)).astype(np.float32)
    mean, values, axes = linalg.principal_axes(x, 2, scale=True)
    assert mean.dtype == values.dtype == axes.dtype == np.float32


def test_sample_rows_are_sorted_distinct_and_at_most_the_limit():
    rows = linalg.sample_rows(100, np.random.default_rng(0), limit=30)
    assert len(rows) == 30 and len(set(rows)) == 30 and np.all(np.diff(rows) > 0) and rows.max() < 100
    assert np.array_equal(linalg.sample_rows(10, np.random.default_rng(0), limit=30), np.arange(10))
    expected = np.sort(np.random.default_rng(5).choice(100, size=30, replace=False))
    assert np.array_equal(linalg.sample_rows(100, np.random.default_rng(5), limit=30), expected)


def test_sample_rows_of_listed_rows_are_the_same_draw_as_of_their_positions():
    pool = np.array([3, 8, 9, 20, 41, 42, 77])
    positions = linalg.sample_rows(len(pool), np.random.default_rng(4), limit=4)
    assert np.array_equal(linalg.sample_rows(pool, np.random.default_rng(4), limit=4), pool[positions])
    assert len(linalg.sample_rows(np.array([], dtype=int), np.random.default_rng(0), limit=3)) == 0
