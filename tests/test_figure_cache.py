"""Leaderboard figures from the cache: the same inputs give the same key in any order and from any objects,
other inputs another key, and a figure drawn before is copied, byte for byte, without drawing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_leaderboard_plots import _table

from bench.core import paths
from bench.reporting import figure_cache, plots


def test_equal_inputs_have_one_key_whatever_their_order_and_objects():
    table = _table()
    shuffled = table.sample(frac=1.0, random_state=0).sort_index()  # equal, made another way
    a = {"x": np.arange(3.0), "y": ["".join(["ab", "c"]), 0.1]}
    b = {"y": ["abc", 0.1], "x": np.arange(3.0)}
    assert figure_cache.key(("bars", table, a)) == figure_cache.key(("bars", shuffled, b))


@pytest.mark.parametrize("change", ["value", "dtype", "label", "float bit"])
def test_other_inputs_have_another_key(change):
    table = _table()
    other = table.copy()
    if change == "value":
        other.loc[0, "mean"] = 0.25
    elif change == "dtype":
        other["mean"] = other["mean"].astype(np.float32)
    elif change == "label":
        other.loc[0, "label"] = "mean [fast]"
    else:
        other.loc[0, "mean"] = np.nextafter(other.loc[0, "mean"], 1.0)
    assert figure_cache.key(("bars", table)) != figure_cache.key(("bars", other))


def test_the_key_is_the_same_in_another_process():
    """Python randomises string hashing per process: nothing of the key may depend on it."""
    code = ("from test_leaderboard_plots import _table; from bench.reporting import figure_cache; "
            "print(figure_cache.key(('bars', _table(), {'b': {1, 2, 3}, 'a': 'x'})))")
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).parent).stdout for _ in range(2)}
    assert len(keys) == 1 and len(keys.pop().strip()) == 64


def test_a_figure_drawn_before_is_copied_without_drawing(tmp_path, monkeypatch):
    first = plots.bars(_table(), "pearson_delta_de20", tmp_path / "a.png", "t")

    def not_again(*args, **kwargs):
        raise AssertionError("drawn again")

    monkeypatch.setattr(plots, "bars_figure", not_again)
    second = plots.bars(_table(), "pearson_delta_de20", tmp_path / "b.png", "t")
    assert second.read_bytes() == first.read_bytes()
    with pytest.raises(AssertionError, match="drawn again"):
        plots.bars(_table(), "pearson_delta_de20", tmp_path / "c.png", "another title")


def test_a_cached_figure_that_is_gone_is_drawn_again(tmp_path):
    first = plots.bars(_table(), "pearson_delta_de20", tmp_path / "a.png", "t").read_bytes()
    folder = paths.cache_dir() / figure_cache.FOLDER
    for cached in folder.glob("*.png"):
        cached.unlink()
    assert plots.bars(_table(), "pearson_delta_de20", tmp_path / "b.png", "t").read_bytes() == first
    assert len(list(folder.glob("*.png"))) == 1
