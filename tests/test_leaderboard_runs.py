"""``scripts/leaderboard_runs.py``: a tracking store packed into one file and unpacked in another folder reads
the same runs and the same artifacts there, and the original folder is not needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from test_leaderboard import DATASET, log, scores

from bench.workflows import leaderboard_inputs, tracking

SCRIPT = Path(__file__).parents[1] / "scripts" / "leaderboard_runs.py"


def script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_a_packed_store_unpacked_elsewhere_has_the_same_runs_and_files(tmp_path, monkeypatch):
    store = tmp_path / "store"
    store.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'runs.db'}")
    for seed in (1, 2):
        log("additive", seed, scores(seed, 0.1))
    (store / "runs.db").rename(store / "mlflow.db")
    assert script("pack", store, tmp_path / "runs.tar.xz").returncode == 0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    original = tracking.runs(DATASET)
    shutil.rmtree(store)

    done = script("unpack", tmp_path / "runs.tar.xz", tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "new-cache"))
    unpacked = tracking.runs(DATASET)
    pd.testing.assert_frame_equal(unpacked, original)
    for seed, run_id in unpacked.groupby("seed")["run_id"].first().items():
        table = leaderboard_inputs.per_perturbation(run_id)
        np.testing.assert_allclose(table["pearson_delta_de20"], scores(seed, 0.1))

    refused = script("unpack", tmp_path / "runs.tar.xz", tmp_path / "elsewhere")
    assert refused.returncode == 1 and "exists; unpack into a new folder" in refused.stderr
