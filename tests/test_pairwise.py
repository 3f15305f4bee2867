"""The pairwise distances behind centroid accuracy and the discrimination score, against scipy's cdist."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from bench.evaluation import pairwise


def _means(rows: int, genes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).gamma(1.0, 1.0, (rows, genes))


def test_manhattan_is_scipys_cityblock():
    a, b = _means(7, 301, 0), _means(5, 301, 1)
    np.testing.assert_allclose(pairwise.manhattan(a, b), cdist(a, b, "cityblock"), rtol=1e-12)


def test_sqeuclidean_is_scipys():
    a, b = _means(7, 301, 2), _means(5, 301, 3)
    np.testing.assert_allclose(pairwise.sqeuclidean(a, b), cdist(a, b, "sqeuclidean"), rtol=1e-10)


def test_distances_take_float32_and_non_contiguous_rows():
    a = _means(8, 50, 4).astype(np.float32)[::2]
    b = _means(3, 50, 5)
    expected = cdist(a.astype(np.float64), b, "cityblock")
    np.testing.assert_allclose(pairwise.manhattan(a, b), expected, rtol=1e-12)


def test_identical_rows_are_at_distance_zero():
    """Exactly for L1; for the matrix-product form, to rounding of the squared norms (about 1e-16 of them)."""
    a = _means(4, 100, 6)
    assert np.all(np.diag(pairwise.manhattan(a, a)) == 0.0)
    squares = (a**2).sum(axis=1)
    assert np.all(np.diag(pairwise.sqeuclidean(a, a)) <= 1e-13 * squares)
