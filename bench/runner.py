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
import numpy as np
import pandas as pd

from bench import interactions, metrics, numeric_env, run_environment, splits
from bench.api import (GeneKnowledge, PerturbationModel, PredictQuery, RunResult, StopTraining, TrainData,
                       check_prediction, no_progress, now_ms)
from bench.conditions import CONTROL
from bench.data.datasets import Dataset, add_counts
from bench.de import cached_de_genes
from bench.registry import ModelCard, build
from bench.split_data import SplitData


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


def score(
    predicted: pd.DataFrame,
    observed: dict[str, pd.DataFrame],
    training: dict[str, pd.DataFrame],
    de20: dict[str, dict[str, list[str]]],
    subgroups: dict[str, str],
    predicted_cells: dict[str, ad.AnnData] | None = None,
    cells: tuple[ad.AnnData, ad.AnnData] | None = None,
    singles: dict[str, pd.DataFrame] | None = None,
    known: dict | None = None,
) -> pd.DataFrame:
    """Per-perturbation metrics for predictions indexed by (cell_type, condition), given per cell type
    the observed and the training means of each condition (``SplitData.means``). With predicted cells,
    also their energy distance to the observed cells (``cells``: the observed and the training cells);
    with the singles' observed means (``PreparedDataset.singles``), the interaction metrics of doubles
    (``known``: the observed doubles' scores kept between calls, see ``interactions.gi_metrics``)."""
    gene_index = pd.Index(next(iter(training.values())).columns)
    rows, arrays = [], {k: [] for k in ("pred", "obs", "ctrl", "pert", "de", "top", "label_gene")}
    for (cell_type, condition), values in predicted.iterrows():
        train_means = training[cell_type]
        control = train_means.loc[CONTROL].to_numpy()
        perturbations = train_means.drop(index=CONTROL)
        de = gene_index.get_indexer(de20[cell_type][condition])
        arrays["pred"].append(values.to_numpy())
        arrays["obs"].append(observed[cell_type].loc[condition].to_numpy())
        arrays["ctrl"].append(control)
        arrays["pert"].append(perturbations.to_numpy().mean(axis=0) if len(perturbations) else control)
        arrays["de"].append(de)
        arrays["top"].append(metrics.top_expressed(control))
        arrays["label_gene"].append(gene_index.get_indexer([condition])[0])
        rows.append((cell_type, condition, subgroups[condition]))
    evaluation = metrics.EvaluationInput(
        predicted=np.stack(arrays["pred"]),
        observed=np.stack(arrays["obs"]),
        control=np.stack(arrays["ctrl"]),
        perturbation_mean=np.stack(arrays["pert"]),
        de20=np.stack(arrays["de"]),
        top_expressed=np.stack(arrays["top"]),
        label_gene=np.array(arrays["label_gene"]),
        group=np.array([r[0] for r in rows]),
    )
    table = metrics.evaluate(evaluation)
    if singles is not None:
        found = interactions.gi_metrics([r[:2] for r in rows], evaluation.predicted, evaluation.observed,
                                        evaluation.control, singles, known)
        table = pd.concat([table, found], axis=1)
    keys = pd.DataFrame(rows, columns=["cell_type", "condition", "subgroup"])
    if predicted_cells and cells is not None:
        table["energy_distance"] = energy_distances(keys, predicted_cells, *cells)
    return pd.concat([keys, table], axis=1)


def score_part(predicted: pd.DataFrame, data: SplitData, part: str, dataset: PreparedDataset,
               predicted_cells: dict[str, ad.AnnData] | None = None, subgroups: dict[str, str] | None = None
               ) -> pd.DataFrame:
    """``score`` against the cells of ``part`` (``test`` or ``val``) of a split; validation conditions
    need their ``subgroups`` (the split's ``val``)."""
    return score(predicted, data.means(part), data.means("train"), dataset.de20,
                 data.subgroups if subgroups is None else subgroups, predicted_cells,
                 (getattr(data, part), data.train), dataset.singles, data.interactions[part])


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
    """Hand tracking what a run's prediction files need (``bench/prediction_files.py``): the split's test
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


def _pca(train_cells: ad.AnnData, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and principal axes (``ENERGY_PCS`` at most) of up to 5,000 training cells."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(train_cells.n_obs, size=min(5000, train_cells.n_obs), replace=False))
    X = train_cells.X[rows]
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    return mean, vt[: metrics.ENERGY_PCS]


def _dense(adata: ad.AnnData) -> np.ndarray:
    return np.asarray(adata.X.toarray() if hasattr(adata.X, "toarray") else adata.X, dtype=np.float64)


def energy_distances(
    keys: pd.DataFrame, predicted_cells: dict[str, ad.AnnData], observed_cells: ad.AnnData, train_cells: ad.AnnData
) -> np.ndarray:
    """Per (cell_type, condition) row of ``keys``, the energy distance of predicted and observed cells
    in the principal components of the training cells (NaN where a cell type has no predicted cells)."""
    mean, axes = _pca(train_cells, seed=0)
    rng = np.random.default_rng(0)
    values = np.full(len(keys), np.nan)
    for i, (cell_type, condition) in enumerate(zip(keys["cell_type"], keys["condition"])):
        if cell_type not in predicted_cells:
            continue
        sides = []
        for cells, obs_type in ((predicted_cells[cell_type], None), (observed_cells, cell_type)):
            mask = cells.obs["condition"].to_numpy() == condition
            if obs_type is not None:
                mask &= cells.obs["cell_type"].astype(str).to_numpy() == obs_type
            rows = np.flatnonzero(mask)
            rows = np.sort(rng.choice(rows, size=min(len(rows), metrics.ENERGY_MAX_CELLS), replace=False))
            sides.append((_dense(cells[rows]) - mean) @ axes.T)
        values[i] = metrics.energy_distance(*sides)
    return values


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


def new_result(card: ModelCard, params: dict, dataset: PreparedDataset, split_name: str, seed: int, device: str,
               preset: str | None) -> tuple[RunResult, splits.Split]:
    """The result of a run that has not started yet (status FINISHED until something fails), and its split."""
    split, _ = splits.obtain(dataset.adata, dataset.name, dataset.sha256, split_name, seed)
    result = RunResult(model=card.name, params=params, card_hash=card.sha256, dataset=dataset.name,
                       dataset_sha256=dataset.sha256, split=split_name, split_hash=split.sha256, seed=seed,
                       device=device, split_json=split.to_json(), preset=preset)
    return result, split


def run(
    card: ModelCard,
    params: dict,
    dataset: PreparedDataset,
    split_name: str,
    seed: int,
    device: str = "cpu",
    gene_knowledge: GeneKnowledge | None = None,
    report: Callable[[int, float], None] | None = None,
    preset: str | None = None,
    test: bool = True,
    progress: Callable[..., None] | None = None,
) -> RunResult:
    """Train and score one model on one split seed. Model failures become a FAILED result; bad input
    (unknown parameters, an impossible split) raises ``BenchError``; ``StopTraining`` raised by ``report``
    passes through. ``test=False`` (sweeps) predicts and scores only the validation conditions, so test
    conditions never reach the model's ``predict``. ``progress(phase, done, total)`` hears where the run
    is: the harness's phases and those the model reports (``TrainData.progress``). The values the model
    reports are recorded in the result's ``curve`` before they reach ``report``."""
    progress = progress or no_progress
    start, started_ms = time.perf_counter(), now_ms()
    _reset_peak_memory()
    result, split = new_result(card, params, dataset, split_name, seed, device, preset)
    result.started_ms = started_ms
    model = build(card, params)
    skip = getattr(model, "skip", None)
    reason = skip(dataset.name, split_name) if callable(skip) else None
    if reason:
        result.status, result.error = "SKIPPED", reason
        result.ended_ms = now_ms()
        return result
    phases = result.phase_seconds
    with _timed(phases, "split"):
        progress("preparing the split")
        if card.counts:
            add_counts(dataset.adata, dataset.with_counts)
        data = dataset.split_data(split)
        bulk = data.pseudobulk("train")

    def recorded(step: int, value: float) -> None:
        result.curve.append((int(step), float(value), now_ms()))
        if report is not None:
            report(step, value)

    train = TrainData(
        cells=data.train,
        val=data.val,
        gene_knowledge=gene_knowledge,
        seed=seed,
        device=device,
        report=recorded,
        progress=progress,
        dataset=dataset.name,
        bulk=bulk,
    )
    try:
        with _timed(phases, "fit"):
            progress("fitting")
            model.fit(train)
        table = predictions = None
        parts = [("test", data.subgroups)] if test else []
        if data.masks["val"].any():
            parts.append(("val", split.val))
        for part, subgroups in parts:
            with _timed(phases, "predict"):
                predicted, cells = predict_all(model, card.name, getattr(data, part), data.query_control, seed,
                                               progress, f"predicting {part}")
            with _timed(phases, "score"):
                progress(f"scoring {part}")
                scored = score_part(predicted, data, part, dataset, cells, subgroups)
                overall = metrics.aggregate(scored)
            if part == "test":
                table, predictions, test_cells = scored, predicted, cells
                result.metrics.update(overall)
            else:
                result.metrics.update({f"val/{k.removeprefix('all/')}": v for k, v in overall.items()
                                       if k.startswith("all/")})
        result.metrics.update({f"diagnostic/{name}": float(value) for name, value in train.diagnostics.items()})
        result.per_perturbation, result.predictions = table, predictions
        if test:
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
    result.environment = run_environment.describe(device)
    return result
