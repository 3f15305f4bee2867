"""The contracts between the harness and a model: what a model is given and what it must return.

A model (an *adapter*) is any class with ``fit(TrainData)`` and ``predict(PredictQuery)``, constructed
from its card's parameters. The harness never shows a model the observed cells of a test condition:
``PredictQuery`` carries only the names of the conditions to predict and held-out control cells.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anndata as ad
import numpy as np
import pandas as pd

from bench.core.conditions import is_double
from bench.core.errors import ModelError


class GoAnnotations(Protocol):
    """Every gene with a Gene Ontology annotation, for a model that builds its own gene graph (GEARS)."""

    gene2go: dict[str, set[str]]
    """Official symbol -> its GO terms, for every annotated gene."""

    def official(self, gene: str) -> str | None:
        """The official symbol of ``gene`` (an outdated symbol or unique synonym mapped), None without annotation."""
        ...

    def similarity_graph(self, genes: Sequence[str], threshold: float, top_k: int) -> pd.DataFrame:
        """GEARS' GO graph among the annotated ``genes``: columns ``source``, ``target``, ``importance`` (the
        Jaccard index of their GO-term sets, above ``threshold``), each target's ``top_k`` sources, no self loops."""
        ...


@runtime_checkable
class GeneKnowledge(Protocol):
    """Prior knowledge about genes that does not come from the expression data (Gene Ontology)."""

    def embeddings(self, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A ``(len(genes), dim)`` float32 matrix and a boolean mask of the genes that have one.

        Rows of genes without prior knowledge are zero.
        """
        ...

    def graph(self, genes: Sequence[str]) -> pd.DataFrame:
        """Weighted gene-gene edges among ``genes``: columns ``source``, ``target``, ``importance``."""
        ...

    def gene_sets(self, genes: Sequence[str]) -> dict[str, list[str]]:
        """Biological-process gene sets: ``{set name: member genes among genes}`` (pathway priors)."""
        ...

    def go_annotations(self) -> GoAnnotations | None:
        """Every annotated gene and their GO graph; None without a Gene Ontology."""
        ...


class StopTraining(Exception):
    """Raised by a ``report`` callback to end training early (a pruned sweep trial); not a model failure."""


def _no_report(step: int, value: float) -> None:
    return None


def no_progress(phase: str, done: int = 0, total: int | None = None) -> None:
    return None


# The diagnostic of a run whose parameters name official prior-knowledge files (a paper preset) that were not
# given: how many priors it replaced by offline substitutes. The leaderboard labels such rows "offline priors".
OFFLINE_PRIORS = "offline_priors"


@dataclass
class TrainData:
    """Everything a model may learn from.

    ``cells``: training cells (training controls and training perturbations), canonical AnnData
    (``obs['condition']``, ``obs['cell_type']``, ``X`` log-normalised). ``val``: the validation cells
    (validation conditions, or held-out cells of training conditions for the ``seen`` split).
    ``report(step, value)`` feeds progress bars and sweep pruning with a validation value (higher is
    better) at a training step; models that train iteratively should call it. ``progress(phase, done,
    total)`` says where a long fit is (e.g. ``progress("pre-training", 12, 100)``); the harness shows it
    as a bar in a terminal and as timestamped lines in a log; it is cheap enough to call every step.
    ``diagnostics``: values a
    model records about itself while it fits (e.g. how well its latent space can represent the
    validation effects); they are logged with the run as metrics ``diagnostic/<name>``.

    ``cells`` and ``val`` may be AnnData views of the whole dataset (the harness's are): reading their
    ``X`` copies the part's rows, so read it once; ``copy()`` a view before changing it. ``bulk``: the
    training pseudobulk when the harness has computed it (``pseudobulk()`` returns it).
    """

    cells: ad.AnnData
    val: ad.AnnData
    gene_knowledge: GeneKnowledge | None = None
    seed: int = 0
    device: str = "cpu"
    report: Callable[[int, float], None] = _no_report
    progress: Callable[..., None] = no_progress
    dataset: str = ""
    diagnostics: dict[str, float] = field(default_factory=dict)
    bulk: pd.DataFrame | None = None

    @property
    def genes(self) -> list[str]:
        return list(self.cells.var_names)

    @property
    def conditions(self) -> list[str]:
        """The training conditions, control included."""
        return sorted(self.cells.obs["condition"].unique())

    def pseudobulk(self) -> pd.DataFrame:
        """Mean expression of every (cell_type, condition) in training: a DataFrame indexed by both."""
        if self.bulk is not None:
            return self.bulk.copy()
        from bench.core.pseudobulk import pseudobulk

        return pseudobulk(self.cells)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class DataProperties:
    """What a model may check before it trains, to decline data it cannot use (an adapter's ``skip``):
    the dataset and split names, whether the training cells carry raw counts (``layers['counts']``, loaded
    for cards with ``counts = true``), the training cell types, the number of genes, and whether the
    training and the test conditions include doubles."""

    dataset: str
    split: str
    counts: bool
    cell_types: tuple[str, ...]
    n_genes: int
    train_doubles: bool
    test_doubles: bool

    @classmethod
    def of(cls, dataset: str, split: str, train: ad.AnnData, test_conditions: Iterable[str]) -> DataProperties:
        obs = train.obs
        return cls(dataset, split, "counts" in train.layers, tuple(sorted(obs["cell_type"].astype(str).unique())),
                   train.n_vars, any(map(is_double, obs["condition"].astype(str).unique())),
                   any(map(is_double, test_conditions)))


@dataclass
class PredictQuery:
    """Predict ``conditions`` in ``cell_type``, starting from held-out control cells of that cell type.
    ``progress(phase, done, total)`` as in ``TrainData``, for a model whose prediction takes long."""

    conditions: list[str]
    control: ad.AnnData
    cell_type: str
    seed: int = 0
    progress: Callable[..., None] = no_progress

    @property
    def genes(self) -> list[str]:
        return list(self.control.var_names)


@dataclass
class Prediction:
    """``means``: predicted mean log-expression, one row per queried condition, one column per gene.
    Any finite value is scored as given, a negative one included: a linear or additive rule can cross
    0 on a gene near 0, and clipping it is the model's choice, not the harness's (it changes scores).
    cell-eval refuses negative log-expression, so clip at 0 before scoring such predictions there.

    ``cells`` (optional): predicted single cells, an AnnData with ``obs['condition']`` and the same genes.
    """

    means: pd.DataFrame
    cells: ad.AnnData | None = None


@runtime_checkable
class PerturbationModel(Protocol):
    def fit(self, train: TrainData) -> None: ...

    def predict(self, query: PredictQuery) -> Prediction: ...


def check_prediction(prediction: object, query: PredictQuery, model: str) -> Prediction:
    """Fail with a clear message when a model's output breaks the contract; return it row-ordered."""
    where = f"model '{model}'"
    if not isinstance(prediction, Prediction):
        raise ModelError(f"{where} returned {type(prediction).__name__}, not a bench.core.api.Prediction")
    means = prediction.means
    if not isinstance(means, pd.DataFrame):
        raise ModelError(f"{where}: Prediction.means must be a pandas DataFrame (conditions x genes)")
    missing = [c for c in query.conditions if c not in means.index]
    if missing:
        raise ModelError(f"{where} did not predict {len(missing)} queried condition(s), e.g. {missing[0]!r}")
    if list(means.columns) != query.genes:
        if set(means.columns) != set(query.genes) or len(means.columns) != len(query.genes):
            raise ModelError(
                f"{where} predicted {means.shape[1]} genes, but the query has {len(query.genes)}; "
                "Prediction.means columns must be the query's genes"
            )
        raise ModelError(f"{where} returned genes in a different order than the query's genes")
    means = means.loc[query.conditions]
    values = means.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = means.index[~np.isfinite(values).all(axis=1)][0]
        raise ModelError(f"{where} predicted NaN or infinite values, e.g. for condition {bad!r}")
    cells = prediction.cells
    if cells is not None:
        if "condition" not in cells.obs or list(cells.var_names) != query.genes:
            raise ModelError(f"{where}: Prediction.cells needs obs['condition'] and the query's genes in order")
        absent = set(query.conditions) - set(cells.obs["condition"])
        if absent:
            raise ModelError(f"{where} returned no predicted cells for condition {sorted(absent)[0]!r}")
    return Prediction(means=means.astype(np.float64), cells=cells)


@dataclass
class RunResult:
    """The outcome of one run (model x dataset x split x seed). The runner makes it; tracking logs it."""

    model: str
    params: dict
    card_hash: str
    dataset: str
    dataset_sha256: str
    split: str
    split_hash: str
    seed: int
    device: str
    status: str = "FINISHED"
    error: str | None = None
    traceback: str = ""
    per_perturbation: pd.DataFrame | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None
    split_json: str = ""
    wall_time_s: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # split, fit, predict, score
    peak_memory_mb: float = 0.0
    preset: str | None = None
    baseline: bool = False  # the card's ``baseline`` when it ran: the leaderboard takes it from the run
    numeric: dict[str, str] = field(default_factory=dict)
    # What the prediction files need besides ``predictions`` (bench/workflows/prediction_files.py): the split's own
    # small tables, not copies, and the cells of models that return cells.
    subgroups: dict[str, str] = field(default_factory=dict)  # test condition -> subgroup
    observed_means: dict[str, pd.DataFrame] | None = None  # per cell type, ``SplitData.means("test")``
    control_means: dict[str, pd.DataFrame] | None = None  # per cell type, ``SplitData.means("query_control")``
    predicted_cells: dict[str, ad.AnnData] | None = None  # per cell type, as the model returned them
    control_cells: ad.AnnData | None = None  # their cell types' query control cells (a copy: a view pickles all)
    # When the run began and ended (``now_ms``; 0: not recorded), the validation values the model passed to
    # ``TrainData.report`` as ``(step, value, epoch ms)``, and the rest of what it ran on (``run_environment``).
    started_ms: int = 0
    ended_ms: int = 0
    curve: list[tuple[int, float, int]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "FINISHED"


def now_ms() -> int:
    """Wall-clock time in milliseconds since the Unix epoch: MLflow's clock for run times and metric steps."""
    return time.time_ns() // 1_000_000
