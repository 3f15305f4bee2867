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

from bench.core.did_you_mean import unknown
from bench.core.errors import BenchError
from bench.evaluation import pairwise

METRICS_VERSION = "4"  # 4: gi_class_agreement is the bootstrap probability of the predicted class; 3: cell-eval's discrimination_score_l1 replaces pds, gi_* metrics; 2: float64 Pearson
TOP_EXPRESSED = 1000
ENERGY_PCS = 50
ENERGY_MAX_CELLS = 500


@dataclass(frozen=True)
class Metric:
    name: str
    direction: str  # "max" or "min": which way is better
    definition: str
    bounds: tuple[float, float] = (0.0, float("inf"))  # the values it can take: plots clip intervals to them

    @property
    def sign(self) -> float:
        """+1 where higher is better, −1 where lower is: ``sign * (a − b) > 0`` when a is the better value."""
        return 1.0 if self.direction == "max" else -1.0

    @property
    def goal(self) -> str:
        return "higher is better" if self.direction == "max" else "lower is better"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("mse", "min", "mean over all genes of (x̂ − x)²"),
        Metric("mse_de20", "min", "mean over DE20 genes of (x̂ − x)²"),
        Metric("pearson", "max", "Pearson correlation of x̂ and x over all genes", (-1.0, 1.0)),
        Metric("pearson_delta", "max", "Pearson correlation of δ̂ and δ over all genes (GEARS)", (-1.0, 1.0)),
        Metric("pearson_delta_de20", "max", "Pearson correlation of δ̂ and δ over DE20 genes (GEARS' headline)",
               (-1.0, 1.0)),
        Metric("direction_acc_de20", "max", "share of DE20 genes where sign(δ̂) equals sign(δ)", (0.0, 1.0)),
        Metric("l2_top1000", "min", "L2 distance of x̂ and x over the 1,000 genes most expressed in control"),
        Metric(
            "pearson_delta_pert",
            "max",
            "Pearson correlation of x̂ − m and x − m, m the mean of training-perturbation centroids (Systema)",
            (-1.0, 1.0),
        ),
        Metric(
            "centroid_accuracy",
            "max",
            "1 if x̂ is closer (Euclidean) to its own observed centroid than to every other test "
            "condition's, else 0 (Systema)",
            (0.0, 1.0),
        ),
        Metric(
            "discrimination_score_l1",
            "max",
            "1 − r/n (1 best): n test conditions, r of them with an observed mean strictly closer to x̂ by "
            "L1 distance than the true condition's; the gene named by the whole condition (a single's "
            "target, none for a double) left out, as cell-eval's discrimination_score_l1",
            (0.0, 1.0),
        ),
        Metric(
            "energy_distance",
            "min",
            "energy distance (V-statistic) of predicted and observed cells in the first 50 principal "
            "components of the training cells, at most 500 cells of each; only for models that return cells",
        ),
        Metric(
            "gi_magnitude_error",
            "min",
            "|ŝ − s| for a double whose singles are observed: s = median|δ_AB| / median|δ_A + δ_B| over the "
            "100 genes its singles change most (how much stronger than additive; bench.evaluation.interactions) "
            "from all of the observed cells, ŝ the same with the predicted double",
        ),
        Metric(
            "gi_class_agreement",
            "max",
            "the probability of the predicted double's interaction class (additive, synergy, buffering, "
            "epistasis) as the observed double's true class: the share of 200 resamples of the double's cells, "
            "reflected about the observed scores (basic bootstrap; bench.evaluation.interaction_truth), in that "
            "class; an exact copy of a double whose class is uncertain scores below 1",
            (0.0, 1.0),
        ),
    )
}
CELL_METRICS = ("energy_distance",)
GI_METRICS = ("gi_magnitude_error", "gi_class_agreement")  # of doubles whose singles are observed: bench.evaluation.interactions
NOT_EVALUATED = CELL_METRICS + GI_METRICS  # computed beside ``evaluate``, by the runner


def check_names(names: list[str]) -> list[str]:
    for name in names:
        if name not in METRICS:
            raise BenchError(unknown("metric", name, METRICS, "see `bench list metrics`"))
    return names


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
    """Every metric of predicted means (all but ``NOT_EVALUATED``), one row per test perturbation."""
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


CURVE = "training/validation"  # the run metric whose history holds the values a model reported while it trained
NOT_TEST = ("val/", "diagnostic/", "halving/", "training/")  # prefixes of run metrics that are not test-subgroup
# scores (validation scores, a model's diagnostics, a data ceiling's standard errors over halvings:
# ``bench.evaluation.ceiling``, the curve)


def is_test_metric(key: str) -> bool:
    """Whether a run metric ``<subgroup>/<metric>`` scores test conditions (not validation or diagnostics)."""
    return not key.startswith(NOT_TEST)


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
