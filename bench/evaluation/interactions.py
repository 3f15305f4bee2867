"""Genetic-interaction scores of a double perturbation, from its mean change and those of its singles.

Norman et al. (Science 2019) fit a double's mean change from control as a combination of its singles'
changes, ``δ_AB ≈ c_A·δ_A + c_B·δ_B``, by robust (Theil–Sen) regression without intercept, and read
interaction scores off the fit; GEARS (Roohani et al., Nat Biotech 2024) computes the same scores for
its predicted doubles (``gears/utils.py``, ``get_coeffs``). The scores follow GEARS' definitions:

* ``magnitude`` ``√(c_A² + c_B²)``: how strong the double is against its singles;
* ``model_fit``: Pearson correlation of the fit ``c_A·δ_A + c_B·δ_B`` with ``δ_AB``;
* ``dominance`` ``|log10(|c_A| / |c_B|)|``: one gene masking the other (GEARS takes the log of the
  signed ratio, undefined when the coefficients differ in sign; the absolute values keep it defined);
* ``equality`` ``min(dcor(δ_A, δ_AB), dcor(δ_B, δ_AB)) / max(…)``: equality of contribution;
* ``similarity`` ``dcor(δ_A, δ_B)``: similarity of the singles (dcor: distance correlation);
* ``strength`` (ours, below).

Genes: GEARS fits on a file of highly expressed genes. Where a perturbation moves few genes, pairs of
unchanged genes dominate Theil–Sen's median of pairwise solutions and pull both coefficients to 0
(on norman_subset, all 500 genes gave c ≈ 0.0003 where the 100 most changed give 0.2–0.7). The scores
use the 100 genes the two singles change most (|δ_A| + |δ_B|), the double's own genes left out; they
are chosen from the singles alone, so an observed and a predicted double are scored on the same genes.

Classes read the fit's dominance and one further score, ``strength`` ``median|δ_AB| / median|δ_A + δ_B|``
on the same genes: how much stronger the double is than the sum of its singles, 1 for the additive
rule, and as robust to a few outlying genes as the fit. The magnitude would serve as well on exact
changes, but measured singles carry noise, and a regression on noisy predictors shrinks its
coefficients (regression dilution): on the simulator the magnitudes of planted additive doubles have
median 1.13, not √2, while an additive prediction made from the same singles scores exactly √2. Noise
widens both sides of the strength alike, so planted additive doubles keep a median of 0.86 (buffering
0.45, synergy 1.38). The class is ``epistasis`` when one coefficient is at least 3 times the other
(dominance > log10 3), otherwise ``synergy`` when the strength is above 1.25, ``buffering`` when below
0.75, else ``additive``. The thresholds are ours: Norman et al. group doubles by clustering the scores
rather than by fixed cuts. The classes are the types the simulator plants (``bench.data.simulator``), so
they can be checked against its ground truth; Norman's "neomorphic" class (a poor fit) is left out, as
the simulator plants none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
from scipy.spatial.distance import cdist

from bench.core.conditions import CONTROL, genes_of, is_double, is_single
from bench.core.pseudobulk import pseudobulk

DOMINANCE = math.log10(3.0)
SYNERGY = 1.25  # strength above which a double is synergistic
BUFFERING = 0.75  # strength below which it is buffering
GENES = 100  # 4,950 pairs of genes: Theil–Sen solves every one (GEARS' bound is 100,000 pairs)
KINDS = ("additive", "synergy", "buffering", "epistasis")


@dataclass(frozen=True)
class Scores:
    c_a: float
    c_b: float
    magnitude: float
    model_fit: float
    dominance: float
    equality: float
    similarity: float
    strength: float

    @property
    def kind(self) -> str:
        return classify(self.dominance, self.strength)


def classify(dominance: float, strength: float) -> str:
    """The interaction class (see the module docstring)."""
    if dominance > DOMINANCE:
        return "epistasis"
    if strength > SYNERGY:
        return "synergy"
    if strength < BUFFERING:
        return "buffering"
    return "additive"


def dominance_of(c_a: float, c_b: float) -> float:
    return abs(math.log10(abs(c_a) / abs(c_b))) if c_a and c_b else math.inf


def strength_of(delta_a: np.ndarray, delta_b: np.ndarray, delta_ab: np.ndarray) -> float:
    size = np.median(np.abs(delta_a + delta_b))
    return float(np.median(np.abs(delta_ab)) / size) if size else math.inf


@dataclass(frozen=True)
class Truth:
    """An observed double: its scores (``point``), and the probability of each class and the strength's 95%
    interval over resamples of its cells (``bench.evaluation.interaction_truth``). A double scored
    without resamples (``certain``) has its point class with probability 1."""

    point: Scores
    probabilities: dict[str, float]
    strength_interval: tuple[float, float]

    @classmethod
    def certain(cls, point: Scores) -> Truth:
        return cls(point, {kind: float(kind == point.kind) for kind in KINDS}, (point.strength, point.strength))

    @property
    def confidence(self) -> float:
        """The probability of the point estimate's class."""
        return self.probabilities[self.point.kind]


def distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Distance correlation of two samples (rows are observations), the V-statistic of Székely et al.
    (Ann Stat 2007), as ``dcor.distance_correlation`` computes it. Written here because importing dcor
    compiles its numba code, about 11 s per process."""
    def centred(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64).reshape(len(v), -1)
        d = cdist(v, v)
        return d - d.mean(axis=0) - d.mean(axis=1, keepdims=True) + d.mean()

    a, b = centred(x), centred(y)
    covariance, variances = (a * b).mean(), math.sqrt((a * a).mean() * (b * b).mean())
    return math.sqrt(max(covariance, 0.0) / variances) if variances > 0 else 0.0


def theil_sen(singles: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The coefficients of scikit-learn's ``TheilSenRegressor(fit_intercept=False, max_iter=1000)`` over
    every pair of rows: the spatial median of the pairs' exact solutions. scikit-learn solves the pairs
    one LAPACK call at a time (16 ms for 100 genes); here Cramer's rule solves them at once, and the
    nearly singular ones (where LAPACK's least-squares answer differs) go to the same LAPACK routine."""
    # scikit-learn's own spatial median: private, but its release line is pinned (pyproject) and the
    # parity tests (tests/test_interactions.py) hold this function to scikit-learn's and GEARS' results.
    from sklearn.linear_model._theil_sen import _spatial_median

    first, second = np.triu_indices(len(target), 1)  # the pairs in itertools.combinations' order
    a, b = singles[first], singles[second]
    y_a, y_b = target[first], target[second]
    det = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    singular = np.abs(det) <= 4 * np.finfo(np.float64).eps * ((a**2).sum(axis=1) + (b**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.column_stack([(y_a * b[:, 1] - a[:, 1] * y_b) / det, (a[:, 0] * y_b - y_a * b[:, 0]) / det])
    for k in np.flatnonzero(singular):
        system, values = np.stack([a[k], b[k]]), np.array([y_a[k], y_b[k]])
        weights[k] = scipy.linalg.lstsq(system, values, lapack_driver="gelss")[0]
    return _spatial_median(weights, max_iter=1000, tol=1e-3)[1]


def scores(delta_a: np.ndarray, delta_b: np.ndarray, delta_ab: np.ndarray) -> Scores:
    """The interaction scores of one double from the three mean changes over the same genes."""
    singles = np.column_stack([delta_a, delta_b]).astype(np.float64)
    coefficients = theil_sen(singles, np.asarray(delta_ab, dtype=np.float64))
    c_a, c_b = (float(c) for c in coefficients)
    fitted = singles @ coefficients
    first, second = distance_correlation(delta_a, delta_ab), distance_correlation(delta_b, delta_ab)
    return Scores(
        c_a=c_a,
        c_b=c_b,
        magnitude=math.hypot(c_a, c_b),
        model_fit=float(np.corrcoef(fitted, delta_ab)[0, 1]) if np.ptp(fitted) and np.ptp(delta_ab) else 0.0,
        dominance=dominance_of(c_a, c_b),
        equality=min(first, second) / max(first, second) if max(first, second) > 0 else 0.0,
        similarity=distance_correlation(delta_a, delta_b),
        strength=strength_of(delta_a, delta_b, delta_ab),
    )


def scorable(condition: str, singles: pd.DataFrame) -> bool:
    """Whether ``condition`` is a double whose two singles are observed (rows of ``singles``)."""
    return is_double(condition) and all(gene in singles.index for gene in genes_of(condition))


def fitted_genes(condition: str, singles: pd.DataFrame, control: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The singles' changes from control and the ``GENES`` genes they change most (the double's own genes
    left out): what a double is scored on."""
    a, b = genes_of(condition)
    change_a, change_b = (singles.loc[name].to_numpy(dtype=np.float64) - control for name in (a, b))
    size = np.abs(change_a) + np.abs(change_b)
    own = singles.columns.get_indexer([a, b])
    size[own[own >= 0]] = -np.inf
    genes = np.sort(np.argsort(-size, kind="stable")[: min(GENES, int(np.isfinite(size).sum()))])
    return change_a, change_b, genes


def double_scores(condition: str, double_mean: np.ndarray, singles: pd.DataFrame, control: np.ndarray) -> Scores:
    """The scores of a double from its mean (observed or predicted), its singles' observed means and the
    control mean, on the ``GENES`` genes its singles change most (its own genes left out)."""
    change_a, change_b, genes = fitted_genes(condition, singles, control)
    change_ab = np.asarray(double_mean, dtype=np.float64) - control
    return scores(change_a[genes], change_b[genes], change_ab[genes])


def _means(cells, keep) -> dict[str, pd.DataFrame]:
    """Per cell type, the mean of every condition that ``keep`` accepts (a DataFrame, conditions x genes)."""
    chosen = np.array([keep(c) for c in cells.obs["condition"].astype(str)], dtype=bool)
    table = pseudobulk(cells, chosen)
    return {cell_type: table.xs(cell_type, level="cell_type") for cell_type in table.index.unique("cell_type")}


def observed_singles(cells) -> dict[str, pd.DataFrame]:
    """Per cell type, the observed mean of every single perturbation over all of a dataset's cells."""
    return _means(cells, is_single)


def observed_doubles(cells, singles: dict[str, pd.DataFrame]) -> dict[str, dict[str, Scores]]:
    """Per cell type, the scores of every double whose singles are observed, over all of the dataset's
    cells with all of its control cells."""
    means = _means(cells, lambda c: c == CONTROL or is_double(c))
    result = {}
    for cell_type, table in means.items():
        if CONTROL not in table.index:
            continue
        control, known = table.loc[CONTROL].to_numpy(), singles.get(cell_type, pd.DataFrame())
        result[cell_type] = {c: double_scores(c, table.loc[c].to_numpy(), known, control)
                             for c in table.index if scorable(c, known)}
    return result


def gi_metrics(keys: list[tuple[str, str]], predicted: np.ndarray, observed: np.ndarray, control: np.ndarray,
               singles: dict[str, pd.DataFrame], known: dict[tuple[str, str], Truth] | None = None) -> pd.DataFrame:
    """Per (cell_type, condition) row: ``gi_magnitude_error``, the absolute difference of the predicted
    and the observed double's strength (how much stronger than additive: the fit's magnitude would fault
    an exact additive prediction for the dilution of the observed fit), and ``gi_class_agreement``, the
    probability of the predicted double's class among the observed double's resamples (``known``; 1 or
    0 for a double scored without resamples); NaN for a row that is not a double with observed singles.
    ``control`` is each row's control mean. ``known`` keeps the observed doubles' ``Truth`` by
    (cell_type, condition) between calls that score the same observed means (every model run on one
    split); a double it lacks is scored from ``observed`` without resamples, and kept there."""
    error, agreement = np.full(len(keys), np.nan), np.full(len(keys), np.nan)
    known = {} if known is None else known
    for i, (cell_type, condition) in enumerate(keys):
        table = singles.get(cell_type)
        if table is None or not scorable(condition, table):
            continue
        if (cell_type, condition) not in known:
            known[cell_type, condition] = Truth.certain(double_scores(condition, observed[i], table, control[i]))
        truth = known[cell_type, condition]
        guess = double_scores(condition, predicted[i], table, control[i])
        error[i] = abs(guess.strength - truth.point.strength)
        agreement[i] = truth.probabilities[guess.kind]
    return pd.DataFrame({"gi_magnitude_error": error, "gi_class_agreement": agreement})
