"""The data ceiling (``bench.evaluation.ceiling``) as tracked runs: one per split seed, computed only
where the tracking store lacks it."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.core import numeric_env
from bench.core.api import RunResult, now_ms
from bench.evaluation import ceiling, metric_catalog, metrics, splits
from bench.workflows import run_environment, runner, tracking


def result(prepared: runner.PreparedDataset, split_name: str, seed: int) -> RunResult | None:
    """The ceiling of one split seed as a run: each metric's mean over halvings and its standard error
    (``halving/se/<subgroup>/<metric>``), and the number of halvings (``halving/count``); None when no
    test condition has 2 cells."""
    start, started_ms = time.perf_counter(), now_ms()
    split, _ = splits.obtain(prepared.adata, prepared.name, prepared.sha256, split_name, seed)
    table = ceiling.until_precise(prepared.split_data(split), seed, prepared.singles)
    if table.empty:
        return None
    keys = ["cell_type", "condition", "subgroup"]
    per_perturbation = table.drop(columns="halving").groupby(keys, sort=False).mean().reset_index()
    values = metrics.aggregate(per_perturbation)
    per_halving = pd.DataFrame([metrics.aggregate(one) for _, one in table.groupby("halving")])
    errors = per_halving.std(ddof=1) / np.sqrt(per_halving.count())
    values.update({f"{ceiling.SE_PREFIX}{key}": float(se) for key, se in errors.items() if np.isfinite(se)})
    values["/".join(ceiling.COUNT)] = float(len(per_halving))
    run = RunResult(model=ceiling.MODEL, params={"target_se": ceiling.TARGET_SE}, card_hash=ceiling.VERSION, dataset=prepared.name,
                    dataset_sha256=prepared.sha256, split=split_name, split_hash=split.sha256, seed=seed,
                    device="cpu", per_perturbation=per_perturbation, metrics=values, split_json=split.to_json(),
                    preset=ceiling.PRESET, numeric=numeric_env.describe(), environment=run_environment.describe("cpu"),
                    started_ms=started_ms)
    run.wall_time_s, run.ended_ms = time.perf_counter() - start, now_ms()
    return run


def missing_seeds(prepared: runner.PreparedDataset, split_name: str, seeds: list[int]) -> list[int]:
    """The seeds of ``split_name`` whose current ceiling (this dataset, split file, metrics and
    definition) the tracking store does not hold yet."""
    runs = tracking.runs(prepared.name).drop_duplicates("run_id")
    mine = runs[(runs["model"] == ceiling.MODEL) & (runs["split"] == split_name)
                & (runs["dataset_sha256"] == prepared.sha256) & (runs["card_sha256"] == ceiling.VERSION)
                & (runs["metrics_version"] == metric_catalog.METRICS_VERSION) & (runs["status"] == "FINISHED")]
    have = set(zip(mine["seed"].astype(int), mine["split_sha256"]))
    wanted = []
    for seed in seeds:
        split, _ = splits.obtain(prepared.adata, prepared.name, prepared.sha256, split_name, seed)
        if (seed, split.sha256) not in have:
            wanted.append(seed)
    return wanted
