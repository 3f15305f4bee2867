"""The DE gene cache: a corrupt or malformed cache file is recomputed with a warning, never a traceback."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from bench.core.conditions import CONTROL
from bench.evaluation.de import cached_de_genes

# Condition A shifts G1 by +5, G2 by -2 and G0 by +0.5 over the same within-group spread, so the
# t-test ranks them G1, G2, G0 by absolute score.
EXPECTED = {"k562": {"A": ["G1", "G2", "G0"]}}


@pytest.fixture
def dataset() -> ad.AnnData:
    spread = np.array([0.0, 1.0, 0.0, 1.0])
    control = np.tile(spread[:, None], (1, 3))
    perturbed = control + np.array([0.5, 5.0, -2.0])
    obs = pd.DataFrame(
        {"condition": [CONTROL] * 4 + ["A"] * 4, "cell_type": "k562"}, index=[f"cell{i}" for i in range(8)]
    )
    X = np.vstack([control, perturbed]).astype(np.float32)
    return ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=["G0", "G1", "G2"]))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    return tmp_path / "de"


def cache_file(cache: Path) -> Path:
    [path] = cache.glob("*.json")
    return path


def test_the_cache_is_written_once_and_read_back(dataset, cache):
    assert cached_de_genes(dataset, "toy", "ab" * 32) == EXPECTED
    path = cache_file(cache)
    path.write_text(json.dumps({"k562": {"A": ["from", "the", "cache"]}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_de_genes(dataset, "toy", "ab" * 32) == {"k562": {"A": ["from", "the", "cache"]}}


@pytest.mark.parametrize(
    "content",
    ['{"k562": {"A": ["G1", "G', "", "[1, 2, 3]", '{"k562": ["G1"]}', '{"k562": {"A": [1, 2]}}', '{"k562": {"B": []}}'],
    ids=["truncated", "empty", "a list", "no conditions", "not gene names", "other conditions"],
)
def test_a_corrupt_cache_is_recomputed_with_a_warning_and_rewritten(dataset, cache, content):
    cached_de_genes(dataset, "toy", "ab" * 32)
    path = cache_file(cache)
    path.write_text(content)
    with pytest.warns(UserWarning, match=f"^DE gene cache {re.escape(str(path))} is unusable .*; recomputing it$"):
        assert cached_de_genes(dataset, "toy", "ab" * 32) == EXPECTED
    assert json.loads(path.read_text()) == EXPECTED
    assert [p.name for p in cache.iterdir()] == [path.name]
