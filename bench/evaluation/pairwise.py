"""Distances between every predicted and every observed mean, for the metrics that rank a prediction
among the test conditions (centroid accuracy, the discrimination score).

Squared Euclidean distances come from one matrix product. The L1 distances of cell-eval's
discrimination score have no matrix-product form; a compiled loop computes them in float64, about 2x
faster than ``scipy.spatial.distance.cdist(..., "cityblock")`` on one thread at 300 x 5,000 (sums are
reassociated so that the loop vectorises: values differ from cdist's in the last bits only).
"""

from __future__ import annotations

import numba
import numpy as np


def sqeuclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``‖a_i − b_j‖²`` for every row pair, by ``‖a_i‖² + ‖b_j‖² − 2 a_i·b_j`` (clipped at 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    squares_a = np.einsum("ij,ij->i", a, a)
    squares_b = np.einsum("ij,ij->i", b, b)
    return np.maximum(squares_a[:, None] + squares_b[None, :] - 2.0 * (a @ b.T), 0.0)


@numba.njit(fastmath={"reassoc", "nsz"}, cache=True, nogil=True)
def _manhattan(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            total = 0.0
            for k in range(a.shape[1]):
                total += abs(a[i, k] - b[j, k])
            out[i, j] = total


def manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Σ_k |a_ik − b_jk|`` for every row pair, in float64."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    out = np.empty((a.shape[0], b.shape[0]))
    _manhattan(a, b, out)
    return out
