"""``interactions.theil_sen`` for many targets on the same two predictors at once: the bootstrap of an
observed double (``interaction_truth``) fits hundreds of resampled means against the same singles.

Each pair of rows has an exact solution that is linear in the target (the inverse of the pair's 2x2
system, or its pseudo-inverse where the system is nearly singular, as LAPACK's minimum-norm least squares
gives), so the solutions of every pair and every target are one product. Their spatial medians are
scikit-learn's modified Weiszfeld iteration (``sklearn/linear_model/_theil_sen.py``, ``_spatial_median``;
Kärkkäinen & Äyrämö 2005) run for every target together, each target stopping on its own when its step is
below ``tol``, as scikit-learn's loop does. For 200 targets on 100 genes it took 0.6 s against 5.2 s for
one fit at a time (2 cores, load 2.8), and agrees with it to 1e-14 (``tests/test_interaction_truth.py``).
"""

from __future__ import annotations

import numpy as np

EPSILON = np.finfo(np.float64).eps  # scikit-learn's _EPSILON


def pair_inverses(singles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of rows (in ``itertools.combinations`` order) and, per pair, the matrix taking the pair's
    two target values to its exact solution."""
    first, second = np.triu_indices(len(singles), 1)
    systems = np.stack([singles[first], singles[second]], axis=1)  # pairs x 2 x 2
    a, b = singles[first], singles[second]
    det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    singular = np.abs(det) <= 4 * EPSILON * ((a**2).sum(axis=1) + (b**2).sum(axis=1))
    inverses = np.empty_like(systems)
    regular = ~singular
    with np.errstate(divide="ignore", invalid="ignore"):
        inverses[regular] = np.stack([np.stack([b[regular, 1], -a[regular, 1]], axis=1),
                                      np.stack([-b[regular, 0], a[regular, 0]], axis=1)], axis=1) / det[regular, None, None]
    inverses[singular] = np.linalg.pinv(systems[singular]) if singular.any() else inverses[singular]
    return first, second, inverses


def spatial_medians(xs: np.ndarray, ys: np.ndarray, max_iter: int = 1000, tol: float = 1e-3) -> np.ndarray:
    """The spatial median (sets x 2) of each set of 2-d points, given as their coordinates (sets x points
    each; kept apart, which numpy handles about 4x faster than a trailing axis of 2), by the modified
    Weiszfeld step."""
    current = np.column_stack([xs.mean(axis=1), ys.mean(axis=1)])
    active = np.arange(len(xs))
    for _ in range(max_iter):
        if not len(active):
            break
        x, y = (xs, ys) if len(active) == len(xs) else (xs[active], ys[active])
        old = current[active]
        dx, dy = x - old[:, :1], y - old[:, 1:]
        norm = np.sqrt(dx * dx + dy * dy)
        keep = norm >= EPSILON
        inverse = np.divide(1.0, norm, out=np.zeros_like(norm), where=keep)
        at_a_point = (~keep).any(axis=1).astype(np.float64)
        quotient = np.hypot((dx * inverse).sum(axis=1), (dy * inverse).sum(axis=1))
        weight = inverse.sum(axis=1)
        direction = np.column_stack([(x * inverse).sum(axis=1), (y * inverse).sum(axis=1)]) / weight[:, None]
        flat = quotient <= EPSILON
        direction[flat], quotient[flat] = 1.0, 1.0
        share = at_a_point / quotient
        new = np.maximum(0.0, 1.0 - share)[:, None] * direction + np.minimum(1.0, share)[:, None] * old
        current[active] = new
        active = active[((old - new) ** 2).sum(axis=1) >= tol**2]
    return current


def theil_sen_many(singles: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The Theil–Sen coefficients (targets x 2) of every row of ``targets`` (targets x genes) on ``singles``
    (genes x 2), without intercept."""
    first, second, inverses = pair_inverses(singles)
    y_a, y_b = targets[:, first], targets[:, second]  # targets x pairs
    xs = inverses[:, 0, 0] * y_a + inverses[:, 0, 1] * y_b
    ys = inverses[:, 1, 0] * y_a + inverses[:, 1, 1] * y_b
    return spatial_medians(xs, ys)
