"""Output paths that cannot be written (read-only, under a file, a namesake that cannot be replaced): one
line, exit 2, nothing partial, and what was there before is unchanged. Every case runs ``bench`` whole."""

from __future__ import annotations

import os

import pytest
from conftest import bench, failed_in_one_line, files_in, read_only, real_data_file, tmpfs
from test_leaderboard import DATASET, log, scores

pytestmark = pytest.mark.slow  # whole bench processes

BOARD = ("leaderboard", "--dataset", DATASET, "--metric", "pearson_delta_de20")


def test_a_leaderboard_whose_table_cannot_be_replaced_keeps_the_whole_old_set(tracking_store):
    log("mean", 1, scores(1, 0.0))
    out = tracking_store / "lb"
    (out / f"{DATASET}.md").mkdir(parents=True)  # a folder where the new table would go
    (out / f"{DATASET}.md" / "notes.txt").write_text("mine")
    for name in (f"{DATASET}.csv", f"{DATASET}.html", f"{DATASET}_simulation_bars_pearson_delta_de20.png"):
        (out / name).write_text(f"old {name}")
    before = files_in(out)
    failed_in_one_line(bench(*BOARD, "--out", str(out), env={"COLUMNS": "1000"}), f"{DATASET}.md")
    assert files_in(out) == before


def test_a_leaderboard_that_fails_leaves_no_new_empty_folder(tracking_store):
    log("mean", 1, scores(1, 0.0))
    failed_in_one_line(bench(*BOARD, "--reference", "nosuch", cwd=tracking_store), "choose one of")
    failed_in_one_line(bench(*BOARD, "--reference", "nosuch", "--out", "new/boards", cwd=tracking_store),
                       "choose one of")
    assert not (tracking_store / "leaderboards").exists() and not (tracking_store / "new").exists()


def test_check_update_refuses_a_read_only_reference_folder_before_any_run(tmp_path):
    with tmpfs(tmp_path / "ro") as folder:
        reference = folder / "reference.csv"
        reference.write_text("dataset,split,model,preset,seeds,metric,subgroup,mean,sd,n_seeds,tolerance,"
                             "numeric_profile,recorded_on\nsynthetic,simulation,mean,default,1,pearson_delta_de20,"
                             "all,,,,,,\n")
        read_only(folder)
        out = bench("check", "--reference", str(reference), "--update", "--jobs", "1")
        failed_in_one_line(out, f"{folder}: Read-only file system")
        assert "run(s)" not in out.stdout  # refused before the runs


def test_export_into_a_read_only_folder_or_under_a_file_is_one_line(tmp_path):
    real_data_file("perturbench_devel.h5ad")
    (tmp_path / "file").write_text("mine")
    failed_in_one_line(bench("export", "--dataset", "norman_subset", "--out", str(tmp_path / "file" / "split1")),
                       "Not a directory")
    with tmpfs(tmp_path / "ro") as folder:
        read_only(folder)
        failed_in_one_line(bench("export", "--dataset", "norman_subset", "--out", str(folder / "split1")),
                           "Read-only file system")
        assert not os.listdir(folder)
    assert files_in(tmp_path) == {"file": b"mine", "ro": None}


def test_a_read_only_cache_folder_is_one_line(tmp_path):
    real_data_file("perturbench_devel.h5ad")
    with tmpfs(tmp_path / "cache") as cache:
        read_only(cache)
        out = bench("run", "--model", "mean", "--dataset", "norman_subset", "--no-track", cwd=tmp_path,
                    env={"BENCH_CACHE_DIR": str(cache)})
        failed_in_one_line(out, f"{cache}/de: Read-only file system")
        assert not os.listdir(cache)
