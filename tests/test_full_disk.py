"""A full disk: every command that writes says so in one line (``No space left on device`` and where),
exits 1 or 2, and leaves no partial file, no half-created store and no RUNNING run. The disk is a small
tmpfs the test mounts (``conftest.small_disk``); every case runs ``bench`` whole."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import bench, failed_in_one_line, files_in, fill, real_data_file
from test_leaderboard import DATASET, log, scores

from bench.workflows import tracking

pytestmark = pytest.mark.slow  # whole bench processes

FULL = "No space left on device"
SQLITE_FULL = "database or disk is full"  # SQLite's words for it
WHERE = ("--dataset", "norman_subset", "--split", "simulation", "--seed", "1")


@pytest.fixture
def norman():
    real_data_file("perturbench_devel.h5ad")


def store_on(disk) -> dict:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{disk / 'mlflow.db'}"}


def no_running_run(monkeypatch, disk, dataset: str = "norman_subset") -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_on(disk)["MLFLOW_TRACKING_URI"])
    assert "UNFINISHED" not in set(tracking.runs(dataset)["status"])


def test_export_onto_a_full_disk(norman, small_disk):
    fill(small_disk, leave=200_000)
    failed_in_one_line(bench("export", *WHERE[:2], "--out", str(small_disk / "split1")), f"{small_disk}: {FULL}")
    assert set(files_in(small_disk)) == {"filler"}


def test_a_full_cache_folder(norman, small_disk, tmp_path):
    fill(small_disk, leave=4_000)
    out = bench("run", "--model", "mean", *WHERE[:2], "--no-track", cwd=tmp_path,
                env={"BENCH_CACHE_DIR": str(small_disk)})
    failed_in_one_line(out, f"{small_disk}/de: {FULL}")
    assert set(files_in(small_disk)) <= {"filler", "de", "verified-files.json"}


def test_a_store_that_cannot_be_created_is_removed(norman, small_disk, tmp_path):
    fill(small_disk, leave=30_000)
    out = bench("run", "--model", "mean", *WHERE[:2], cwd=tmp_path, env=store_on(small_disk))
    assert SQLITE_FULL in failed_in_one_line(out, "is kept in")
    assert set(files_in(small_disk)) == {"filler", "mlflow.db.lock"}


def test_run_tracking_onto_a_full_disk(norman, small_disk, tmp_path, monkeypatch):
    assert bench("run", "--model", "mean", *WHERE[:2], cwd=tmp_path, env=store_on(small_disk)).returncode == 0
    fill(small_disk, leave=0)
    out = bench("run", "--model", "mean", *WHERE[:2], "--seeds", "2", cwd=tmp_path, env=store_on(small_disk))
    line = failed_in_one_line(out, "is kept in")
    assert FULL in line or SQLITE_FULL in line, line
    no_running_run(monkeypatch, small_disk)


def test_score_onto_a_full_disk(norman, small_disk, tmp_path, monkeypatch):
    assert bench("export", *WHERE, "--out", str(tmp_path / "split1")).returncode == 0
    train = ad.read_h5ad(tmp_path / "split1" / "train.h5ad")
    wanted = pd.read_csv(tmp_path / "split1" / "conditions.csv")["condition"]
    means = np.asarray(train.X.mean(axis=0)).ravel()
    ad.AnnData(np.tile(means, (len(wanted), 1)), obs=pd.DataFrame(index=wanted),
               var=pd.DataFrame(index=train.var_names)).write_h5ad(tmp_path / "pred.h5ad")
    assert bench("run", "--model", "mean", *WHERE[:2], cwd=tmp_path, env=store_on(small_disk)).returncode == 0
    before = files_in(small_disk / "mlruns")
    fill(small_disk, leave=20_000)
    out = bench("score", *WHERE, "--predictions", str(tmp_path / "pred.h5ad"), "--name", "flat", cwd=tmp_path,
                env=store_on(small_disk))
    line = failed_in_one_line(out, "is kept in")
    assert FULL in line or SQLITE_FULL in line, line
    assert {name for name in files_in(small_disk / "mlruns") if "artifacts/" in name} <= set(before)
    no_running_run(monkeypatch, small_disk)


def test_leaderboard_onto_a_full_disk(tracking_store, small_disk):
    log("mean", 1, scores(1, 0.0))
    (small_disk / "lb").mkdir()
    (small_disk / "lb" / f"{DATASET}.md").write_text("old")
    fill(small_disk, leave=8_000)
    before = files_in(small_disk)
    out = bench("leaderboard", "--dataset", DATASET, "--metric", "pearson_delta_de20", "--out", str(small_disk / "lb"))
    failed_in_one_line(out, f"{small_disk / 'lb'}: {FULL}")
    assert files_in(small_disk) == before
