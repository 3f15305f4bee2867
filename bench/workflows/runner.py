"""One run: dataset -> split -> fit -> predict -> evaluate. Pure: returns a RunResult, logs nothing.

The model sees training cells and validation cells only. Test conditions are predicted from held-out
control cells, one query per cell type, and scored against the observed test cells. Validation
conditions are predicted and scored the same way (metrics ``val/<metric>``) for sweeps; test values
never reach a sweep objective.
"""

from __future__ import annotations

import contextlib
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import pandas as pd

from bench.adapters.kit import resource_files
from bench.adapters.kit.base import Adapter
from bench.core import numeric_env
from bench.core.api import (
    DataProperties,
    GeneKnowledge,
    PerturbationModel,
    PredictQuery,
    RunResult,
    StopTraining,
    TrainData,
    check_prediction,
    no_progress,
    now_ms,
)
from bench.core.registry import ModelCard, build, card_hash
from bench.data.datasets import Dataset, add_counts
from bench.evaluation import interactions, metrics, scoring, splits
from bench.evaluation.de import cached_de_genes
from bench.evaluation.split_data import SplitData
from bench.workflows import run_environment


@dataclass
class PreparedDataset:
    """A loaded dataset with what every run on it needs: DE genes (computed once, cached), the singles'
    observed means, and the most recent split's cut (shared by every model run on that split)."""

    name: str
    adata: ad.AnnData
    sha256: str
    de20: dict[str, dict[str, list[str]]]
    singles: dict[str, pd.DataFrame]  # per cell type, every single's observed mean (interaction scores)
    with_counts: Callable | None = field(default=None, repr=False)  # Dataset.with_counts
    _split: tuple[str, SplitData] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, dataset: Dataset) -> PreparedDataset:
        de20 = cached_de_genes(dataset.adata, dataset.name, dataset.sha256)
        return cls(dataset.name, dataset.adata, dataset.sha256, de20, interactions.observed_singles(dataset.adata),
                   dataset.with_counts)

    def split_data(self, split: splits.Split) -> SplitData:
        """The dataset cut by ``split``; the last cut is kept, so the models run on one split share it."""
        key = f"{split.sha256}:{','.join(sorted(self.adata.layers))}"
        if self._split is None or self._split[0] != key:
            self._split = (key, splits.apply(split, self.adata))
        return self._split[1]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_split": None}  # worker processes cut their own split


def predict_all(
    model: PerturbationModel, name: str, targets: ad.AnnData, query_control: ad.AnnData, seed: int,
    progress: Callable[..., None] = no_progress, phase: str = "predicting",
) -> tuple[pd.DataFrame, dict[str, ad.AnnData]]:
    """Predict every (cell_type, condition) present in ``targets``, one query per cell type: the means
    indexed by (cell_type, condition), and the predicted cells per cell type of models that return them.
    ``progress`` hears ``phase`` with the cell types done, and whatever the model reports."""
    frames, cells = [], {}
    cell_types = sorted(targets.obs["cell_type"].astype(str).unique())
    for i, cell_type in enumerate(cell_types):
        progress(phase, i, len(cell_types))
        conditions = sorted(targets.obs.loc[targets.obs["cell_type"].astype(str) == cell_type, "condition"].unique())
        control = query_control[query_control.obs["cell_type"].astype(str) == cell_type]
        query = PredictQuery(conditions=list(conditions), control=control, cell_type=cell_type, seed=seed,
                             progress=progress)
        prediction = check_prediction(model.predict(query), query, name)
        means = prediction.means
        means.index = pd.MultiIndex.from_product([[cell_type], means.index], names=["cell_type", "condition"])
        frames.append(means)
        if prediction.cells is not None:
            cells[cell_type] = prediction.cells
    return pd.concat(frames), cells


def keep_for_files(result: RunResult, data: SplitData, cells: dict[str, ad.AnnData] | None) -> None:
    """Hand tracking what a run's prediction files need (``bench/workflows/prediction_files.py``): the split's test
    subgroups and its observed test and query-control means (its own tables), and, for a model that
    returned ``cells``, those and a lean copy of the query control cells of their cell types."""
    result.subgroups = data.subgroups
    result.observed_means, result.control_means = data.means("test"), data.means("query_control")
    if not cells:
        return
    query = data.query_control
    mine = query[query.obs["cell_type"].astype(str).isin(list(cells)).to_numpy()]
    result.predicted_cells = cells
    result.control_cells = ad.AnnData(X=mine.X.copy(), obs=mine.obs[["condition", "cell_type"]].copy(),
                                      var=pd.DataFrame(index=mine.var_names))


@contextlib.contextmanager
def _timed(phases: dict[str, float], name: str):
    """Add the block's wall time to ``phases[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


def _reset_peak_memory() -> None:
    """Start the process's peak resident size again from its current size (Linux ``clear_refs`` 5), so
    that a run's peak is its own, not that of an earlier run of the same process."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_memory_mb() -> float:
    """Peak resident size since the last reset (Linux ``VmHWM``); elsewhere the process's lifetime peak."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match:
        return int(match[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


@dataclass(frozen=True)
class RunSpec:
    """One run: a card with its resolved parameters on a dataset (``PreparedDataset.name``) and split seed,
    on a device. ``test=False`` (a sweep's trial) predicts and scores only the validation conditions, so
    test conditions never reach the model's ``predict``."""

    card: ModelCard
    params: dict
    dataset: str
    split: str
    seed: int
    preset: str | None = None
    device: str = "cpu"
    test: bool = True


def new_result(spec: RunSpec, dataset: PreparedDataset, split: splits.Split | None = None
               ) -> tuple[RunResult, splits.Split]:
    """The result of a run that has not started yet (status FINISHED until something fails), and its split
    (``split``, when the caller has it already)."""
    if split is None:
        split, _ = splits.obtain(dataset.adata, dataset.name, dataset.sha256, spec.split, spec.seed)
    result = RunResult(model=spec.card.name, params=spec.params, card_hash=card_hash(spec.card), dataset=dataset.name,
                       dataset_sha256=dataset.sha256, split=spec.split, split_hash=split.sha256, seed=spec.seed,
                       device=spec.device, split_json=split.to_json(), preset=spec.preset,
                       baseline=spec.card.baseline)
    return result, split


def run(spec: RunSpec, dataset: PreparedDataset, *, knowledge: GeneKnowledge | None = None,
        report: Callable[[int, float], None] | None = None, progress: Callable[..., None] | None = None) -> RunResult:
    """Train and score one model on one split seed of ``dataset`` (the one ``spec`` names). Model failures
    become a FAILED result; bad input (unknown parameters, an impossible split) raises ``BenchError``;
    ``StopTraining`` raised by ``report`` passes through. ``progress(phase, done, total)`` hears where the
    run is: the harness's phases and those the model reports (``TrainData.progress``). The values the
    model reports are recorded in the result's ``curve`` before they reach ``report``. A kit adapter that
    declines the data (``Adapter.skip``, given its ``DataProperties``) gets a SKIPPED result with its reason."""
    if spec.dataset != dataset.name:
        raise ValueError(f"the run is on dataset '{spec.dataset}', but '{dataset.name}' was given")
    progress = progress or no_progress
    start, started_ms = time.perf_counter(), now_ms()
    _reset_peak_memory()
    resource_files.taken()  # forget what an earlier run of this process read
    result, split = new_result(spec, dataset)
    result.started_ms = started_ms
    model = build(spec.card, spec.params)
    phases = result.phase_seconds
    with _timed(phases, "split"):
        progress("preparing the split")
        if spec.card.counts:
            add_counts(dataset.adata, dataset.with_counts)
        data = dataset.split_data(split)
        bulk = data.pseudobulk("train")
    properties = DataProperties.of(dataset.name, spec.split, data.train, data.subgroups)
    reason = model.skip(model.params, properties) if isinstance(model, Adapter) else None
    if reason:
        result.status, result.error = "SKIPPED", reason
        result.ended_ms = now_ms()
        return result

    def recorded(step: int, value: float) -> None:
        result.curve.append((int(step), float(value), now_ms()))
        if report is not None:
            report(step, value)

    train = TrainData(
        cells=data.train,
        val=data.val,
        gene_knowledge=knowledge,
        seed=spec.seed,
        device=spec.device,
        report=recorded,
        progress=progress,
        dataset=dataset.name,
        bulk=bulk,
    )
    try:
        if isinstance(model, Adapter) and spec.test:
            queries = data.test.obs.groupby("cell_type", observed=True)["condition"].unique()
            model.check_queries(train, {str(k): sorted(map(str, v)) for k, v in queries.items()})
        with _timed(phases, "fit"):
            progress("fitting")
            model.fit(train)
        table = predictions = None
        parts = [("test", data.subgroups)] if spec.test else []
        if data.masks["val"].any():
            parts.append(("val", split.val))
        for part, subgroups in parts:
            with _timed(phases, "predict"):
                predicted, cells = predict_all(model, spec.card.name, getattr(data, part), data.query_control,
                                               spec.seed, progress, f"predicting {part}")
            with _timed(phases, "score"):
                progress(f"scoring {part}")
                scored = scoring.score_part(predicted, data, part, dataset, cells, subgroups)
                overall = metrics.aggregate(scored)
            if part == "test":
                table, predictions, test_cells = scored, predicted, cells
                result.metrics.update(overall)
            else:
                result.metrics.update({f"val/{k.removeprefix('all/')}": v for k, v in overall.items()
                                       if k.startswith("all/")})
        result.metrics.update({f"diagnostic/{name}": float(value) for name, value in train.diagnostics.items()})
        result.per_perturbation, result.predictions = table, predictions
        if spec.test:
            keep_for_files(result, data, test_cells)
    except StopTraining:
        raise
    except Exception as exc:  # a model's crash fails its own run only
        result.status = "FAILED"
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.traceback = traceback.format_exc()
    result.wall_time_s, result.ended_ms = time.perf_counter() - start, now_ms()
    result.peak_memory_mb = _peak_memory_mb()
    result.numeric = numeric_env.describe()
    result.environment = {**run_environment.describe(spec.device), **resource_files.taken()}
    return result
