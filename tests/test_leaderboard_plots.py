"""Leaderboard plots: the bar chart from a synthetic ``cells`` table, and the choice of scatter panels."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib.container import ErrorbarContainer

from bench import leaderboard_plots as plots


def _table() -> pd.DataFrame:
    lines = []
    rows = (("mean", (0.2, -0.1, 0.4), 3), ("linear", (0.3, 0.1, 0.5), 1), ("broken", (np.nan,) * 3, 0))
    for label, means, n_seeds in rows:
        for subgroup, value in zip(("all", "combo_seen1", "unseen_single"), means):
            lines.append({"label": label, "metric": "pearson_delta_de20", "subgroup": subgroup, "mean": value,
                          "sd": 0.05 if n_seeds > 1 else 0.0, "n_seeds": n_seeds, "best": False})
    return pd.DataFrame(lines)


def test_bars_writes_a_png(tmp_path):
    path = plots.bars(_table(), "pearson_delta_de20", tmp_path / "out" / "bars.png", "synthetic / simulation")
    assert path == tmp_path / "out" / "bars.png"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200
    assert image[..., :3].std() > 0  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["bars.png"]  # no temporary file left behind


def test_bars_leave_out_rows_without_seeds_and_label_the_direction():
    figure = plots.bars_figure(_table(), "mse_de20", "t")
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean", "linear"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["all", "combo_seen1", "unseen_single"]
    assert ax.get_ylabel() == "mse_de20 (lower is better)"
    assert len(ax.patches) == 6  # two rows × three subgroups
    assert _zero_lines(ax) == 1  # a value is negative
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [len(c.lines[2][0].get_segments()) for c in errorbars] == [3, 0]  # none for a single seed


def test_bars_draw_no_zero_line_when_all_values_are_positive():
    table = _table()
    table["mean"] = table["mean"].abs()
    assert _zero_lines(plots.bars_figure(table, "pearson_delta_de20", "t").axes[0]) == 0


def _zero_lines(ax) -> int:
    return sum(list(line.get_ydata()) == [0, 0] for line in ax.get_lines())


def test_bars_put_all_first():
    table = _table()
    table = pd.concat([table[table["subgroup"] != "all"], table[table["subgroup"] == "all"]])
    ax = plots.bars_figure(table, "pearson_delta_de20", "t").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["all", "combo_seen1", "unseen_single"]
    assert ax.get_ylabel() == "pearson_delta_de20 (higher is better)"


def test_choose_perturbations_takes_the_largest_change_per_subgroup():
    changes = {
        ("k562", "A+B"): np.array([3.0, 0.0]),
        ("k562", "C+D"): np.array([0.0, -4.0]),  # largest of combo_seen2 by norm, though negative
        ("k562", "E"): np.array([1.0, 1.0]),
        ("k562", "F"): np.array([0.5, 0.0]),
        ("k562", "G+H"): np.array([2.0, 0.0]),
    }
    subgroups = {"A+B": "combo_seen2", "C+D": "combo_seen2", "E": "unseen_single", "F": "unseen_single",
                 "G+H": "combo_seen0"}
    chosen = plots.choose_perturbations(changes, subgroups, 4)
    assert chosen == [("k562", "G+H"), ("k562", "C+D"), ("k562", "E")]  # subgroups sorted by name
    reordered = dict(reversed(list(changes.items())))
    assert plots.choose_perturbations(reordered, subgroups, 4) == chosen
    assert plots.choose_perturbations(changes, subgroups, 2) == chosen[:2]


def test_choose_perturbations_breaks_ties_by_name():
    changes = {("k562", "B"): np.array([1.0]), ("k562", "A"): np.array([-1.0])}
    assert plots.choose_perturbations(changes, {"A": "unseen_single", "B": "unseen_single"}, 4) == [("k562", "A")]
