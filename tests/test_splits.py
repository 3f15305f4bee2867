"""Split invariants: on random condition sets (hypothesis), on real Norman data and on the simulator."""

from __future__ import annotations

import errno
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.core.conditions import CONTROL, canonical, genes_of
from bench.core.errors import BenchWarning, SplitError
from bench.evaluation import split_settings, splits
from bench.evaluation.split_rules import RULES, assign

CONDITION_SPLITS = [s for s in split_settings.SPLITS if s != "seen"]


def check_invariants(split: splits.Split, conditions: set[str]) -> None:
    train = set(split.train)
    seen = {g for c in train for g in genes_of(c)}
    assert CONTROL in train and CONTROL not in split.test and CONTROL not in split.val
    if split.name != "seen":
        assert not train & set(split.test), "a test condition is in training"
        assert not train & set(split.val), "a validation condition is in training"
        assert not set(split.val) & set(split.test)
    assert set(split.train) | set(split.test) | set(split.val) | set(split.excluded) <= conditions | {CONTROL}
    for condition, subgroup in split.test.items():
        genes = genes_of(condition)
        n_seen = sum(g in seen for g in genes)
        if subgroup == "unseen_single":
            assert len(genes) == 1 and n_seen == 0
        elif subgroup.startswith("combo_seen"):
            assert len(genes) == 2 and n_seen == int(subgroup[-1])
        else:
            assert subgroup == "seen" and split.name == "seen"
    if split.name in ("unseen_single", "unseen_double"):
        test_genes = {g for c in split.test for g in genes_of(c)}
        assert not test_genes & seen, "a test gene is perturbed by a training condition"
    wanted = {"unseen_double": {"combo_seen0"}, "combo_seen1": {"combo_seen1"}, "combo_seen2": {"combo_seen2"},
              "additive": {"combo_seen2"}, "unseen_single": {"unseen_single"}}
    if split.name in wanted:
        assert set(split.test.values()) <= wanted[split.name]


def dataset_of(conditions: list[str], cells_per_condition: int = 4) -> ad.AnnData:
    labels = [c for c in [CONTROL, *conditions] for _ in range(cells_per_condition)]
    obs = pd.DataFrame({"condition": labels, "cell_type": "k562"}, index=[f"cell{i}" for i in range(len(labels))])
    return ad.AnnData(X=np.zeros((len(labels), 3), dtype=np.float32), obs=obs)


gene_names = st.sampled_from([f"G{i}" for i in range(14)])
condition_sets = st.lists(
    st.lists(gene_names, min_size=1, max_size=2, unique=True).map(canonical), min_size=2, max_size=30, unique=True
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conditions=condition_sets, name=st.sampled_from(CONDITION_SPLITS), seed=st.integers(0, 10_000))
def test_random_condition_sets_keep_every_invariant(conditions, name, seed):
    adata = dataset_of(conditions)
    try:
        split = splits.make(adata, name, seed, "random", "sha")
    except SplitError as exc:
        assert "cannot be made" in str(exc)
        return
    assert split.test, "a split is never an empty test set"
    check_invariants(split, set(conditions))
    splits.check(split, adata)


@given(conditions=condition_sets, name=st.sampled_from(sorted(RULES)), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_rules_are_deterministic_per_seed(conditions, name, seed):
    def once():
        try:
            return assign(name, conditions, np.random.default_rng(seed))
        except SplitError:
            return None

    assert once() == once()


def test_impossible_split_is_a_clear_error():
    singles_only = dataset_of(["A", "B", "C", "D"])
    with pytest.raises(SplitError, match="cannot be made.*combo_seen0"):
        splits.make(singles_only, "unseen_double", 1, "singles", "sha")


@pytest.mark.parametrize("name", split_settings.SPLITS)
def test_real_norman_splits(norman_subset, name):
    adata = norman_subset.adata
    conditions = set(adata.obs["condition"]) - {CONTROL}
    for seed in (1, 2):
        split = splits.make(adata, name, seed, "norman_subset", norman_subset.sha256)
        check_invariants(split, conditions)
        splits.check(split, adata)
        data = splits.apply(split, adata)
        assert set(data.train.obs_names).isdisjoint(data.test.obs_names)
        assert set(data.query_control.obs["condition"]) == {CONTROL}
        assert set(data.train.obs_names).isdisjoint(data.query_control.obs_names)
        assert split.to_json() == splits.make(adata, name, seed, "norman_subset", norman_subset.sha256).to_json()
    other = splits.make(adata, name, 3, "norman_subset", norman_subset.sha256)
    assert other.to_json() != split.to_json()


@pytest.mark.parametrize("name", CONDITION_SPLITS)
def test_synthetic_splits(small_synthetic, name):
    conditions = set(small_synthetic.obs["condition"]) - {CONTROL}
    split = splits.make(small_synthetic, name, 1, "synthetic", "sha")
    check_invariants(split, conditions)


def test_seen_split_holds_out_cells_of_every_condition(norman_subset):
    adata = norman_subset.adata
    split = splits.make(adata, "seen", 1, "norman_subset", norman_subset.sha256)
    data = splits.apply(split, adata)
    assert set(data.test.obs["condition"]) == set(adata.obs["condition"]) - {CONTROL}
    assert set(data.test.obs["condition"]) <= set(data.train.obs["condition"])
    assert set(data.test.obs_names).isdisjoint(data.val.obs_names)


def test_committed_splits_match_their_generator(norman_subset):
    """Every committed norman_subset split file is what the generator makes from its seed."""
    folder = splits.frozen_path("norman_subset", "simulation", 1, committed=True).parent
    files = sorted(folder.glob("*.json"))
    assert len(files) == len(split_settings.SPLITS) * 5
    for path in files:
        frozen = splits.read(path)
        made = splits.make(norman_subset.adata, frozen.name, frozen.seed, "norman_subset", norman_subset.sha256)
        assert made.to_json() == path.read_text(), path.name


def test_frozen_split_for_other_data_is_refused(norman_subset, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CATALOG", str(tmp_path))
    split = splits.make(norman_subset.adata, "simulation", 1, "norman_subset", "0" * 64)
    splits.write(split, splits.frozen_path("norman_subset", "simulation", 1, committed=True))
    with pytest.raises(SplitError, match="frozen for dataset sha256"):
        splits.obtain(norman_subset.adata, "norman_subset", norman_subset.sha256, "simulation", 1)


def big_split(seed: int) -> splits.Split:
    """A split whose file takes a while to write (many held-out cells): wide windows for races."""
    cells = {"query_control": [f"cell{i}" for i in range(20_000)]}
    return splits.Split("toy", "sha", "simulation", seed, [CONTROL, "A"], {}, {"B": "unseen_single"}, [], cells)


def test_concurrent_writers_of_one_split_leave_a_valid_file_and_no_temporary_files(tmp_path):
    path = tmp_path / "simulation-seed1.json"
    split = big_split(1)
    with ThreadPoolExecutor(8) as threads, multiprocessing.get_context().Pool(3) as processes:
        in_processes = processes.starmap_async(splits.write, [(split, path)] * 12)
        list(threads.map(lambda _: splits.write(split, path), range(40)))
        in_processes.get()
    assert splits.read(path) == split
    assert os.listdir(tmp_path) == [path.name]


def test_a_failing_split_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "simulation-seed1.json"
    splits.write(big_split(1), path)

    def disk_full(self, text):
        with open(self, "w") as handle:
            handle.write(text[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        splits.write(big_split(2), path)
    monkeypatch.undo()
    assert splits.read(path) == big_split(1)
    assert os.listdir(tmp_path) == [path.name]


def test_corrupt_split_file_is_a_clear_error(tmp_path):
    path = tmp_path / "simulation-seed1.json"
    path.write_text("{not json")
    with pytest.raises(SplitError, match="not a valid split file"):
        splits.read(path)


def test_unknown_split_suggests():
    with pytest.raises(SplitError, match="did you mean 'unseen_double'"):
        splits.check_name("unseen_doubles")


def test_adding_a_split_name_changes_no_existing_split(monkeypatch, small_synthetic):
    """A split's random stream is keyed by its name, not its place in ``SPLITS``."""
    before = {name: splits.make(small_synthetic, name, 2, "synthetic", "sha").to_json() for name in split_settings.SPLITS}
    monkeypatch.setattr(split_settings, "SPLITS", ("aaa_new_setting", *split_settings.SPLITS))
    after = {name: splits.make(small_synthetic, name, 2, "synthetic", "sha").to_json() for name in before}
    assert after == before


def test_seeds_test_distinct_sets_until_the_data_has_none_left():
    """Four single genes give four possible unseen_single test sets (one test gene each): seeds 0-3 take
    all four, seed 4 must repeat one and its file says which earlier seed it repeats."""
    adata = dataset_of(["A", "B", "C", "D"])
    made = [splits.make(adata, "unseen_single", seed, "four", "sha") for seed in range(5)]
    tests = [tuple(sorted(split.test)) for split in made]
    assert sorted(tests[:4]) == [("A",), ("B",), ("C",), ("D",)]
    assert [split.same_test_as for split in made[:4]] == [[], [], [], []]
    assert made[4].same_test_as == [tests.index(tests[4])]
    assert splits.Split.from_json(made[4].to_json()).same_test_as == made[4].same_test_as


@pytest.mark.parametrize("dataset", ["norman_subset", "mcfaline23_subset"])
def test_committed_seeds_never_share_a_test_set(dataset):
    """Two seeds of a committed split test different conditions (or cells, for ``seen``), unless the
    later file names the earlier seed it repeats."""
    folder = splits.frozen_path(dataset, "simulation", 1, committed=True).parent
    by_setting: dict[str, list[splits.Split]] = {}
    for path in sorted(folder.glob("*.json")):
        split = splits.read(path)
        by_setting.setdefault(split.name, []).append(split)
    assert by_setting, f"no committed splits in {folder}"
    for name, made in by_setting.items():
        seen: dict[tuple, int] = {}
        for split in sorted(made, key=lambda s: s.seed):
            tested = (*sorted(split.test), *split.cells.get("test", []))
            repeats = [seed for key, seed in seen.items() if key == tested]
            assert repeats == getattr(split, "same_test_as", []) == [], f"{dataset}/{name} seed {split.seed} repeats seed {repeats}"
            seen[tested] = split.seed


def test_a_split_file_is_read_once_per_process_until_it_changes(small_synthetic, monkeypatch):
    reads, read = [], splits.read
    monkeypatch.setattr(splits, "read", lambda path: reads.append(path) or read(path))

    def obtained():
        return splits.obtain(small_synthetic, "read_once", "sha-read-once", "simulation", 3)

    first, path = obtained()  # made and written here: known without reading it back
    assert [obtained()[0] for _ in range(3)] == [first] * 3 and reads == []
    path.write_text(path.read_text())  # another process rewrote it: read again, once
    assert [obtained()[0] for _ in range(2)] == [first] * 2 and reads == [path]
    path.write_text("{broken")
    with pytest.warns(BenchWarning, match="cached split"):
        obtained()  # a changed file is checked again: this one is made anew
