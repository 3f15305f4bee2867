"""Principal axes by an exact SVD, shared by the energy distance, scBIG's PCA latent and data-derived gene
embeddings, GeneFeatures and the linear baseline; and the seeded subsample of rows they (and validation) draw.

In-house on purpose: ``np.linalg.svd`` of the centred matrix in the caller's dtype. sklearn's and scanpy's
PCA give the same subspace but flip the signs of some axes and differ by up to 5.7e-5 (scanpy in float32),
which would change what models train on and every committed number.
"""

from __future__ import annotations

import numpy as np


def sample_rows(pool: int | np.ndarray, rng: np.random.Generator, limit: int = 5000) -> np.ndarray:
    """At most ``limit`` distinct rows drawn by ``rng``, sorted: of ``range(pool)``, or of the rows ``pool``
    lists (the same draw: numpy picks positions either way)."""
    size = int(pool) if np.ndim(pool) == 0 else len(pool)
    return np.sort(rng.choice(pool, size=min(size, limit), replace=False))


def principal_axes(x: np.ndarray, k: int, scale: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, singular values, axes)`` of the top ``k`` principal axes of the rows of dense ``x``
    (``axes``: k x columns); with ``scale`` each column is also divided by its sd (z-scores; constant
    columns are only centred)."""
    mean = x.mean(axis=0)
    centred = x - mean
    if scale:
        sd = x.std(axis=0)
        centred = centred / np.where(sd > 0, sd, 1.0)
    _, values, axes = np.linalg.svd(centred, full_matrices=False)
    return mean, values[:k], axes[:k]
