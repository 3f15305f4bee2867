"""Freeze the committed split files of the real datasets: ``splits/<dataset>/<split>-seed<k>.json``.

Run from the project root: ``python scripts/freeze_splits.py [dataset ...]``. A split setting that cannot be
made on a dataset (e.g. ``unseen_double`` on a singles-only screen) is reported and skipped.
"""

from __future__ import annotations

import sys

from bench.core.errors import SplitError
from bench.data.datasets import load_dataset
from bench.evaluation import split_settings, splits

REAL_DATASETS = ("norman_subset", "mcfaline23_subset")
SEEDS = range(1, 6)


def freeze(name: str) -> None:
    dataset = load_dataset(name)
    for setting in split_settings.SPLITS:
        for seed in SEEDS:
            try:
                split = splits.make(dataset.adata, setting, seed, name, dataset.sha256)
            except SplitError as exc:
                print(f"{name}/{setting}: skipped ({exc})")
                break
            splits.check(split, dataset.adata)
            path = splits.frozen_path(name, setting, seed, committed=True)
            splits.write(split, path)
            print(f"{path}  test={len(split.test)} val={len(split.val)} sha256={split.sha256[:12]}")


if __name__ == "__main__":
    for dataset_name in sys.argv[1:] or REAL_DATASETS:
        freeze(dataset_name)
