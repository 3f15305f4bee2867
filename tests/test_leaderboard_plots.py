"""Leaderboard plots: the bar chart from a synthetic ``table_cells`` table, the choice of scatter rows and
panels, and the scatter figure from synthetic panels."""

from __future__ import annotations

import colorsys
import itertools

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer, ErrorbarContainer

from bench.evaluation import ceiling
from bench.reporting import leaderboard as lb
from bench.reporting import plots


def _table(rows=(("mean", (0.2, -0.1, 0.4), 3), ("linear", (0.3, 0.1, 0.5), 1), ("broken", (np.nan,) * 3, 0)),
           baselines=("mean", "linear")) -> pd.DataFrame:
    """A ``leaderboard.table_cells`` table of one metric: per (label, means per subgroup, seeds)."""
    lines = []
    for label, means, n_seeds in rows:
        model, _, preset = label.removesuffix("]").partition(" [")
        model = ceiling.MODEL if label == ceiling.LABEL else model
        for subgroup, value in zip(("all", "combo_seen1", "unseen_single"), means):
            lines.append({"model": model, "preset": preset or "default", "label": label,
                          "baseline": model in baselines, "metric": "pearson_delta_de20", "subgroup": subgroup,
                          "mean": value, "sd": 0.05 if n_seeds > 1 else 0.0, "n_seeds": n_seeds, "best": False})
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


REAL = ("ceiling (split-half)", "additive", "control", "linear", "mean", "cpa", "gears", "gears [fast]", "scbig",
        "scbig [fast]", "scbig_pca_latent")
FAMILIES = {"cpa": "cpa", "gears": "gears", "gears [fast]": "gears", "scbig": "scbig", "scbig [fast]": "scbig",
            "scbig_pca_latent": "scbig"}  # scbig_pca_latent extends scbig in the catalog


def _drawn(ax) -> dict[str, tuple[tuple, str | None]]:
    """Per legend label, the face colour (RGB) and hatch of its bars, as drawn."""
    drawn = {}
    for container in ax.containers:
        if isinstance(container, BarContainer):
            faces = {to_rgb(p.get_facecolor()) for p in container.patches}
            assert len(faces) == 1
            drawn[container.get_label()] = (faces.pop(), container.patches[0].get_hatch())
    return drawn


def _hls(rgb: tuple) -> tuple[float, float, float]:
    return colorsys.rgb_to_hls(*rgb)


def test_bars_colour_model_families_apart_and_tell_their_members_apart():
    table = _table([(label, (0.5, 0.4, 0.3), 3) for label in REAL], baselines=("additive", "control", "linear", "mean"))
    drawn = _drawn(plots.bars_figure(table, "pearson_delta_de20", "t").axes[0])
    assert set(drawn) == set(REAL)
    for a, b in itertools.combinations(FAMILIES, 2):
        (hue_a, light_a, sat_a), (hue_b, light_b, _) = _hls(drawn[a][0]), _hls(drawn[b][0])
        assert sat_a > 0.4
        distance = min(abs(hue_a - hue_b), 1 - abs(hue_a - hue_b))
        if FAMILIES[a] == FAMILIES[b]:
            assert distance < 1e-6, (a, b)  # one hue per family
            assert abs(light_a - light_b) > 0.1 or drawn[a][1] != drawn[b][1], (a, b)
        else:
            assert distance > 0.25, (a, b)  # three families: at least 90° apart on the colour wheel
    assert [drawn[label][1] is not None for label in FAMILIES] == [False, False, True, False, True, False]
    greys = [drawn[label][0] for label in ("additive", "control", "linear", "mean")]
    assert all(max(rgb) - min(rgb) < 1e-6 for rgb in greys)  # baselines: greys, no model's hue
    assert min(abs(a[0] - b[0]) for a, b in itertools.combinations(greys, 2)) > 0.1
    assert drawn[ceiling.LABEL] == ((1.0, 1.0, 1.0), "///")  # the ceiling: hollow and hatched


def test_bars_draw_a_visible_mark_for_a_zero_value():
    table = _table([("control", (0.0, 0.0, 0.0), 3), ("mean", (0.2, -0.1, 0.4), 3)], baselines=("control", "mean"))
    table.loc[table["label"] == "control", "sd"] = 0.0  # no error bar drawn across the zero
    figure = plots.bars_figure(table, "pearson_delta_de20", "t")
    ax = figure.axes[0]
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3] / 255
    bar = next(c for c in ax.containers if c.get_label() == "control").patches[0]
    inside = bar.get_x() + bar.get_width() / 4  # off the centre, where an error bar would be
    for x, ink in ((inside, True), (-0.45, False)):  # the control's bar on 'all', and no bar at all
        column, row = ax.transData.transform((x, 0.0))
        above_zero_line = pixels[int(round(pixels.shape[0] - row)) - 2, int(column)]
        assert (above_zero_line.max() < 0.8) == ink, (x, above_zero_line)


def test_bars_caption_explains_each_subgroup_with_its_number_of_perturbations():
    figure = plots.bars_figure(_table(), "pearson_delta_de20", "t",
                               counts={"all": (11, 15), "combo_seen1": (2, 6), "unseen_single": (3, 3)})
    texts = [t.get_text() for t in figure.axes[0].texts if not t.get_text().startswith("n=")]
    assert texts == [
        "Test subgroups (n: test perturbations in a split seed):\n"
        "all (n = 11–15): every test perturbation\n"
        "combo_seen1 (n = 2–6): doubles with one of their two genes perturbed in training\n"
        "unseen_single (n = 3): single perturbations of a gene that no training perturbation touches"
    ]
    without = next(t.get_text() for t in plots.bars_figure(_table(), "pearson_delta_de20", "t").axes[0].texts
                   if t.get_text().startswith("Test subgroups"))
    assert without.splitlines()[:2] == ["Test subgroups:", "all: every test perturbation"]


class _Scores:
    """``leaderboard.PerPerturbation`` without a tracking store: tables by run id, and the ids asked for."""

    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        self.tables, self.asked = tables, []

    def of(self, run: lb.Run) -> pd.DataFrame | None:
        self.asked.append(run.run_id)
        return self.tables.get(run.run_id)


def _board(rows: list[lb.Row]) -> lb.Board:
    return lb.Board("norman_subset", "simulation", "d" * 64, "2", {}, [], rows)


def _run(run_id: str, values: dict | None = None) -> lb.Run:
    return lb.Run(run_id, "s" * 64, "c" * 40, {}, values or {})


def _scored(conditions: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"cell_type": "K562", "condition": list(conditions), "subgroup": list(conditions.values())})


def test_perturbation_counts_are_the_fewest_and_most_of_a_seed():
    seed1 = _scored({"A+B": "combo_seen1", "C+D": "combo_seen1", "E": "unseen_single"})
    seed2 = _scored({"A+C": "combo_seen1", "F": "unseen_single", "G": "unseen_single", "H+I": "combo_seen0"})
    halved = _scored({"A+B": "combo_seen1"})  # a ceiling leaves out conditions it cannot halve
    rows = [lb.Row(ceiling.MODEL, ceiling.PRESET, False, runs={1: _run("c1")}),
            lb.Row("mean", "default", True, runs={1: _run("m1"), 2: _run("m2")}),
            lb.Row("linear", "default", True, runs={1: _run("l1")})]
    scores = _Scores({"c1": halved, "m1": seed1, "m2": seed2, "l1": seed1})
    counts = lb.perturbation_counts(_board(rows), scores)
    assert counts == {"all": (3, 4), "combo_seen0": (0, 1), "combo_seen1": (1, 2), "unseen_single": (1, 2)}
    assert scores.asked == ["m1", "m2"]  # one model row per seed is enough


def _row(label: str, value: float, baseline: bool = False) -> lb.Row:
    model, _, preset = label.removesuffix("]").partition(" [")
    run = _run(label, {("all", "pearson_delta_de20"): value, ("all", "mse_de20"): value})
    return lb.Row(model, preset or "default", baseline, runs={1: run})


FIFTEEN = [("control", 0.0), ("mean", 0.2), ("additive", 0.5), ("linear", 0.3), ("cpa", 0.45),
           ("cpa [fast]", 0.5), ("gears", 0.1), ("gears [fast]", 0.05), ("latent_additive", 0.4),
           ("latent_additive [fast]", 0.3), ("scbig", 0.3), ("scbig [fast]", 0.2), ("scbig_no_structure_loss", 0.35),
           ("scbig_pca_latent", 0.6), ("scbig_random_clusters", 0.25)]


def test_scatter_shows_the_best_row_of_each_family_when_fifteen_models_ran():
    rows = [_row(label, value, baseline=label in ("control", "mean", "additive", "linear")) for label, value in FIFTEEN]
    rows.insert(0, lb.Row(ceiling.MODEL, ceiling.PRESET, False, runs={1: _run("c")}))
    shown, left_out = plots.choose_rows(rows, "pearson_delta_de20")
    assert [row.label for row in shown] == ["additive", "cpa [fast]", "gears", "latent_additive", "scbig_pca_latent"]
    assert len(left_out) == 10 and ceiling.LABEL not in [row.label for row in left_out]
    shown, _ = plots.choose_rows(rows, "mse_de20")  # lower is better (here equal to the pearson)
    assert [row.label for row in shown] == ["control", "cpa", "gears [fast]", "latent_additive [fast]",
                                            "scbig [fast]"]
    shown, left_out = plots.choose_rows(rows, "pearson_delta_de20", max_rows=3)
    assert [row.label for row in shown] == ["additive", "cpa [fast]", "scbig_pca_latent"]
    note = plots.left_out_note(shown, left_out, "pearson_delta_de20")
    assert note.startswith("one row per model family (a card and those extending it; the baselines as one) "
                           "(the 3 best families): its best on all/pearson_delta_de20 (higher is better); "
                           "not shown: control, mean, linear, cpa, gears, gears\xa0[fast], latent_additive,")
    assert plots.left_out_note(shown, [], "pearson_delta_de20") == ""
    figure = plots.scatter_figure([row.label for row in shown], [_panel(len(shown))], "t\n" + note)
    assert len(figure.axes) == 3
    assert "gears\xa0[fast]" in figure.get_suptitle()


def test_scatter_keeps_every_row_that_fits():
    rows = [_row(label, value) for label, value in FIFTEEN[:8]]
    assert plots.choose_rows(rows, "pearson_delta_de20") == (rows, [])


def _panel(n_rows: int, missing: int | None = None) -> plots.Panel:
    observed = np.array([0.1, -2.0, 0.3, 1.5, -0.2, 1.0])
    predicted = [None if i == missing else observed * 0.5 + 0.01 * i for i in range(n_rows)]
    return plots.Panel(heading="A+B (combo_seen1)", genes=np.array(["G0", "G1", "G2", "G3", "G4", "G5"]),
                       observed=observed, perturbed=np.array([False, True, False, False, False, False]),
                       predicted=predicted)


def test_scatter_names_the_genes_of_the_three_largest_observed_changes():
    figure = plots.scatter_figure(["mean", "linear"], [_panel(2, missing=1)], "t")
    named, unpredicted = ([t.get_text() for t in ax.texts] for ax in figure.axes)
    assert sorted(named) == ["G1", "G3", "G5"]
    assert unpredicted == []
    assert figure.axes[1].get_title() == "not predicted"


def test_error_bars_stop_at_the_values_a_metric_can_take():
    table = _table([("mean", (0.95, 0.5, 0.02), 3), ("linear", (0.9, 0.4, 0.3), 3)])
    table["metric"], table["sd"] = "gi_class_agreement", 0.1
    ax = plots.bars_figure(table, "gi_class_agreement", "t").axes[0]
    segments = [segment for c in ax.containers if isinstance(c, ErrorbarContainer)
                for segment in c.lines[2][0].get_segments()]
    ends = sorted((float(s[:, 1].min()), float(s[:, 1].max())) for s in segments)
    assert ends[0] == pytest.approx((0.0, 0.12)) and ends[-1] == pytest.approx((0.85, 1.0))  # cut at 0 and at 1
    assert all(low >= 0 and high <= 1 for low, high in ends)


def test_a_bar_on_fewer_seeds_than_its_neighbours_says_so():
    ax = plots.bars_figure(_table(), "pearson_delta_de20", "t").axes[0]
    marks = [text.get_text() for text in ax.texts if text.get_text().startswith("n=")]
    assert marks == ["n=1"] * 3  # linear's one seed beside mean's three, in each subgroup
    even = _table([("mean", (0.2, -0.1, 0.4), 1), ("linear", (0.3, 0.1, 0.5), 1)])
    assert not [t for t in plots.bars_figure(even, "pearson_delta_de20", "t").axes[0].texts
                if t.get_text().startswith("n=")]
