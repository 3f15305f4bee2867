"""``bench leaderboard`` over stores of 100, 500 and 2,000 tracked runs of one dataset (target: 500 runs in
5 s warm on two quiet cores, time linear in runs), as a whole process.

Each store holds 10 models (the four baselines and six others) on N/10 split seeds of the simulation split,
every run with per-perturbation scores of 60 test perturbations in three subgroups for the three headline
metrics, logged by ``tracking.log_run`` as ``bench run`` logs them (without predictions: the scatter plot
reads one seed's, whatever N). A store is built once and kept in the cache (``benchmark-stores/``); the
first leaderboard of a round fills the leaderboard's caches and is timed apart (``extra_info['cold_s']``),
the rest are the warm times. ``extra_info['s_per_100_runs']`` shows whether time grows linearly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core import paths

DATASET = "lbscale"
MODELS = ["control", "mean", "additive", "linear", "cpa", "latent_additive", "gears", "scbig", "scouter", "biolord"]
CONDITIONS = ([f"G{i}+G{i + 1}" for i in range(0, 40, 2)] + [f"H{i}+G{i}" for i in range(20)]
              + [f"S{i}" for i in range(20)])
SUBGROUPS = ["combo_seen2"] * 20 + ["combo_seen1"] * 20 + ["unseen_single"] * 20
ROUNDS = 3


def _result(model: str, seed: int, rng: np.random.Generator):
    from bench.core.api import RunResult
    from bench.evaluation.metrics import aggregate

    quality = 0.2 + 0.05 * MODELS.index(model)
    table = pd.DataFrame({"cell_type": "K562", "condition": CONDITIONS, "subgroup": SUBGROUPS,
                          "pearson_delta_de20": rng.uniform(quality - 0.2, quality + 0.2, len(CONDITIONS)),
                          "pearson_delta": rng.uniform(quality - 0.1, quality + 0.1, len(CONDITIONS)),
                          "mse_de20": rng.uniform(0.1, 0.3, len(CONDITIONS))})
    result = RunResult(model=model, params={}, card_hash=f"card-{model}", dataset=DATASET, dataset_sha256="d" * 64,
                       split="simulation", split_hash=f"split-{seed}", seed=seed, device="cpu", split_json="{}",
                       baseline=model in MODELS[:4])
    result.per_perturbation, result.metrics = table, aggregate(table)
    return result


def _store(runs: int) -> Path:
    """A store of ``runs`` runs, built once (minutes for 2,000)."""
    from bench.workflows import tracking

    folder = paths.cache_dir() / "benchmark-stores" / f"leaderboard-{runs}"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mlflow.db").unlink(missing_ok=True)
        rng = np.random.default_rng(runs)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
            for seed in range(1, runs // len(MODELS) + 1):
                for model in MODELS:
                    tracking.log_run(_result(model, seed, rng))
        (folder / "done").touch()
    return folder


def _leaderboard(store: Path, out: Path, cache: Path) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}", "BENCH_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--dataset", DATASET, "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - start


@pytest.mark.parametrize("runs", [100, 500, 2000])
def test_leaderboard_warm(benchmark, runs, tmp_path):
    store, cache = _store(runs), tmp_path / "cache"
    cold = _leaderboard(store, tmp_path / "cold", cache)
    benchmark.pedantic(_leaderboard, args=(store, tmp_path / "warm", cache), rounds=ROUNDS)
    warm = benchmark.stats.stats.median
    benchmark.extra_info.update(cold_s=cold, warm_s=warm, s_per_100_runs=100 * warm / runs)
