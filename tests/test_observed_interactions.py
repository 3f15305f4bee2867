"""The leaderboard's table of the observed doubles' classes with their confidence."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.evaluation import ceiling
from bench.reporting import html_page, observed_interactions
from bench.reporting import leaderboard as lb


def scores_of(seed: int, epistasis: float) -> pd.DataFrame:
    """A run's per-perturbation scores: one double with resamples, one single without."""
    return pd.DataFrame({
        "cell_type": ["k562", "k562"], "condition": ["MAPK1+TGFBR2", "KLF1"], "subgroup": ["combo_seen2", "single"],
        "gi_class_agreement": [epistasis, np.nan], "gi_observed_class": ["epistasis", np.nan],
        "gi_observed_confidence": [epistasis, np.nan], "gi_probability_additive": [0.0, np.nan],
        "gi_probability_synergy": [0.0, np.nan], "gi_probability_buffering": [1 - epistasis, np.nan],
        "gi_probability_epistasis": [epistasis, np.nan], "gi_observed_strength": [0.712, np.nan],
        "gi_strength_low": [0.438, np.nan], "gi_strength_high": [0.785, np.nan], "seed_marker": [seed, seed]})


class Scores:
    def __init__(self, tables: dict[str, pd.DataFrame]) -> None:
        self.tables = tables

    def of(self, run: lb.Run) -> pd.DataFrame | None:
        return self.tables.get(run.run_id)


def run(run_id: str) -> lb.Run:
    return lb.Run(run_id, "s" * 64, "c" * 40, {}, {})


def test_the_gi_section_shows_each_seeds_observed_doubles_with_their_confidence():
    rows = [lb.Row(ceiling.MODEL, ceiling.PRESET, False, runs={1: run("ceiling1")}),
            lb.Row("additive", "default", True, runs={1: run("old1"), 2: run("add2")}),
            lb.Row("mean", "default", True, runs={1: run("mean1")})]
    scores = Scores({"ceiling1": scores_of(1, 0.99), "mean1": scores_of(1, 0.55), "add2": scores_of(2, 0.6)})
    board = lb.Board("norman_subset", "simulation", "d" * 64, "3", {}, [], rows)
    found = observed_interactions.table(board, scores)  # the additive row's seed 1 has no scores: mean's are read
    assert found[["seed", "condition", "gi_observed_confidence"]].values.tolist() == [
        [1, "MAPK1+TGFBR2", 0.55], [2, "MAPK1+TGFBR2", 0.6]]
    lines = observed_interactions.lines(found)
    assert "| 1 | MAPK1+TGFBR2 | epistasis | 0.55 | 0.00 | 0.00 | 0.45 | 0.55 | 0.71 [0.44, 0.79] |" in lines
    html = html_page._MARKDOWN.render("\n".join(lines))
    assert "<table>" in html and "<td>MAPK1+TGFBR2</td>" in html


def test_a_board_without_resampled_doubles_shows_no_table():
    board = lb.Board("norman_subset", "simulation", "d" * 64, "3", {}, [],
                     [lb.Row("mean", "default", True, runs={1: run("mean1")})])
    old = scores_of(1, 1.0).drop(columns=[c for c in observed_interactions.COLUMNS if c.startswith("gi_")])
    assert observed_interactions.lines(observed_interactions.table(board, Scores({"mean1": old}))) == []
    assert observed_interactions.lines(None) == []
