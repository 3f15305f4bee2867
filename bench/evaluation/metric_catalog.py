"""What each metric is: its name, which way is better, its definition and range, and the names of the run
metrics that score test conditions. Kept apart from the code that computes them (``bench.evaluation.metrics``)
so that ``bench list``, the leaderboard and option checks read it without importing NumPy or SciPy.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.did_you_mean import unknown
from bench.core.errors import BenchError

METRICS_VERSION = "4"  # 4: gi_class_agreement is the bootstrap probability of the predicted class; 3: cell-eval's discrimination_score_l1 replaces pds, gi_* metrics; 2: float64 Pearson


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


CURVE = "training/validation"  # the run metric whose history holds the values a model reported while it trained
NOT_TEST = ("val/", "diagnostic/", "halving/", "training/")  # prefixes of run metrics that are not test-subgroup
# scores (validation scores, a model's diagnostics, a data ceiling's standard errors over halvings:
# ``bench.evaluation.ceiling``, the curve)


def is_test_metric(key: str) -> bool:
    """Whether a run metric ``<subgroup>/<metric>`` scores test conditions (not validation or diagnostics)."""
    return not key.startswith(NOT_TEST)
