"""Pinned metric definitions, computed per test perturbation, vectorised over perturbations.

Notation for a test condition p: ``x̂`` predicted mean, ``x`` observed mean, ``c`` training-control
mean (same cell type), ``δ̂ = x̂ − c``, ``δ = x − c``. DE20(p): the top 20 genes of p against control by
scanpy's t-test ranked by absolute score (``bench.evaluation.de``), as GEARS does. A Pearson correlation that is
undefined (a constant vector, e.g. the ``control`` baseline's zero change) counts as 0, as in GEARS'
``gears/inference.py``; so does one of a vector that differs from a constant by rounding noise only
(``rowwise_pearson``), e.g. the ``mean`` baseline's x̂ − m. Sources: GEARS (Roohani et al., Nat
Biotech 2024) for mse/pearson/DE20 and direction; Ahlmann-Eltze et al. (Nat Methods 2025) for
``l2_top1000``; Systema (Viñas Torné et al., Nat Biotech 2025) for ``pearson_delta_pert`` and
``centroid_accuracy``; cell-eval (Arc Institute, ``cell_eval/metrics/_anndata.py``) for
``discrimination_score_l1``, tested equal to cell-eval's own; the energy distance (Székely & Rizzo 2013)
as scPerturBench and cell-eval use it for distributional comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from bench.evaluation import pairwise
from bench.evaluation.metric_catalog import METRICS

TOP_EXPRESSED = 1000
ENERGY_PCS = 50
ENERGY_MAX_CELLS = 500


# A centred vector whose norm is at most NOISE times the norm of the values it was computed from is
# rounding noise. float32 keeps a value to eps/2 ≈ 6e-8 of its size; a prediction made by a few dozen
# float32 operations (means, sums, a difference) is off by at most some 64 eps ≈ 8e-6 of its size. A
# real change of a prediction is orders of magnitude larger (1e-3 on log-expression of size ~1 is 1e-3).
NOISE = 64 * float(np.finfo(np.float32).eps)


def rowwise_pearson(
    a: np.ndarray, b: np.ndarray, scale_a: np.ndarray | None = None, scale_b: np.ndarray | None = None
) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``, in float64; undefined values are 0.

    A row is constant, its correlation undefined, when its centred norm is at most ``NOISE`` times its
    scale: the row's own norm by default, or ``scale_a``/``scale_b`` (one per row) for rows that are
    differences, whose own norm can be that of the noise (``change_pearson``).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale_a = _norms(a) if scale_a is None else scale_a
    scale_b = _norms(b) if scale_b is None else scale_b
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norm_a, norm_b = _norms(a), _norms(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->i", a, b) / (norm_a * norm_b)
    return np.where((norm_a > NOISE * scale_a) & (norm_b > NOISE * scale_b), r, 0.0)


def change_pearson(predicted: np.ndarray, observed: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of predicted − reference and observed − reference, in float64; a
    change is judged against the norms of the two vectors it is the difference of."""
    predicted, observed, reference = (np.asarray(v, dtype=np.float64) for v in (predicted, observed, reference))
    return rowwise_pearson(
        predicted - reference,
        observed - reference,
        _norms(predicted) + _norms(reference),
        _norms(observed) + _norms(reference),
    )


def _norms(rows: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", rows, rows))


@dataclass
class EvaluationInput:
    """Row i of every matrix is test perturbation i; ``group`` marks rows comparable with each other
    (the same cell type): centroid accuracy and the discrimination score rank a prediction among its
    group only."""

    predicted: np.ndarray  # (n, genes) x̂
    observed: np.ndarray  # (n, genes) x
    control: np.ndarray  # (n, genes) c, the training-control mean of the row's cell type
    perturbation_mean: np.ndarray  # (n, genes) m, mean of training-perturbation centroids
    de20: np.ndarray  # (n, k<=20) int gene indices
    top_expressed: np.ndarray  # (n, k<=1000) int gene indices
    label_gene: np.ndarray  # (n,) int, the measured gene whose name is the row's condition, −1 for none
    group: np.ndarray  # (n,) group labels


def _discrimination(data: EvaluationInput) -> tuple[np.ndarray, np.ndarray]:
    """Centroid accuracy and discrimination score per row; undefined (NaN) in a group of one condition,
    where cell-eval reports a discrimination score of 1."""
    n = len(data.predicted)
    centroid = np.full(n, np.nan)
    discrimination = np.full(n, np.nan)
    for group in np.unique(data.group):
        rows = np.flatnonzero(data.group == group)
        if len(rows) < 2:
            continue
        predicted, observed = data.predicted[rows], data.observed[rows]
        euclidean = pairwise.sqeuclidean(predicted, observed)
        own = np.diag(euclidean)
        others = euclidean + np.diag(np.full(len(rows), np.inf))
        centroid[rows] = (own < others.min(axis=1)).astype(float)
        l1 = pairwise.manhattan(predicted, observed)
        labelled = np.flatnonzero(data.label_gene[rows] >= 0)
        genes = data.label_gene[rows][labelled]
        l1[labelled] -= np.abs(predicted[labelled, genes][:, None] - observed[:, genes].T)
        closer = (l1 < np.diag(l1)[:, None]).sum(axis=1)
        discrimination[rows] = 1 - closer / len(rows)
    return centroid, discrimination


def _row_metrics(x_hat: np.ndarray, x: np.ndarray, c: np.ndarray, m: np.ndarray, de20: np.ndarray,
                 top_expressed: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics that compare each row with itself only."""
    x_hat, x, c, m = (np.asarray(v, dtype=np.float64) for v in (x_hat, x, c, m))
    take = np.take_along_axis
    de_hat, de, de_c = (take(v, de20, axis=1) for v in (x_hat, x, c))
    top_hat, top = take(x_hat, top_expressed, axis=1), take(x, top_expressed, axis=1)
    return {
        "mse": ((x_hat - x) ** 2).mean(axis=1),
        "mse_de20": ((de_hat - de) ** 2).mean(axis=1),
        "pearson": rowwise_pearson(x_hat, x),
        "pearson_delta": change_pearson(x_hat, x, c),
        "pearson_delta_de20": change_pearson(de_hat, de, de_c),
        "direction_acc_de20": (np.sign(de_hat - de_c) == np.sign(de - de_c)).mean(axis=1),
        "l2_top1000": np.sqrt(((top_hat - top) ** 2).sum(axis=1)),
        "pearson_delta_pert": change_pearson(x_hat, x, m),
    }


# Rows per block of ``_row_metrics``: small temporaries are reused from the heap and stay in cache, where
# whole-matrix ones are fresh pages (at 300 x 5,000, blocks halve the time of the row-wise metrics).
BLOCK_ROWS = 32


def evaluate(data: EvaluationInput) -> pd.DataFrame:
    """Every metric of predicted means (all but ``metric_catalog.NOT_EVALUATED``), one row per test perturbation."""
    blocks = [
        _row_metrics(*(v[start : start + BLOCK_ROWS] for v in (
            data.predicted, data.observed, data.control, data.perturbation_mean, data.de20, data.top_expressed)))
        for start in range(0, max(len(data.predicted), 1), BLOCK_ROWS)
    ]
    table = pd.DataFrame({name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]})
    table["centroid_accuracy"], table["discrimination_score_l1"] = _discrimination(data)
    return table


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """2·E‖A−B‖ − E‖A−A′‖ − E‖B−B′‖ over all pairs (the V-statistic, zero distances included)."""
    return float(2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean())


def top_expressed(control_mean: np.ndarray, k: int = TOP_EXPRESSED) -> np.ndarray:
    """Indices of the ``k`` genes most expressed in control (all genes when there are fewer)."""
    k = min(k, len(control_mean))
    return np.sort(np.argsort(-control_mean, kind="stable")[:k])


def aggregate(per_perturbation: pd.DataFrame, subgroup_column: str = "subgroup") -> dict[str, float]:
    """Means over each subgroup's perturbations and over all of them: ``{'<subgroup>/<metric>': value}``.

    Undefined per-perturbation values (NaN, e.g. centroid accuracy with a single test condition) are
    left out of the mean; a subgroup where a metric is undefined everywhere has no entry for it.
    """
    result = {}
    groups = [("all", per_perturbation)] + list(per_perturbation.groupby(subgroup_column, sort=True))
    for subgroup, table in groups:
        for name in METRICS:
            if name not in table:
                continue
            values = table[name].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if len(values):
                result[f"{subgroup}/{name}"] = float(values.mean())
    return result
