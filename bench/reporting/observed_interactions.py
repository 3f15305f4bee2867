"""The observed class of each test double of a board, with its confidence over resamples of its cells
(``bench.evaluation.interaction_truth``), read from the runs' per-perturbation scores: every run on one
split seed scores against the same observed doubles, so one run per seed tells them."""

from __future__ import annotations

import pandas as pd

from bench.evaluation.interactions import KINDS
from bench.reporting.leaderboard import Board, PerPerturbation

COLUMNS = ["seed", "cell_type", "condition", "gi_observed_class", "gi_observed_confidence",
           *(f"gi_probability_{kind}" for kind in KINDS), "gi_observed_strength", "gi_strength_low", "gi_strength_high"]


def table(board: Board, scores: PerPerturbation) -> pd.DataFrame:
    """One line per split seed and test double with resamples, from the first model row's run of each seed
    that has them (the ceiling's runs have none)."""
    frames = []
    for seed in sorted({seed for row in board.rows for seed in row.runs}):
        for row in board.rows:
            found = None if row.is_ceiling or seed not in row.runs else scores.of(row.runs[seed])
            if found is not None and "gi_observed_class" in found:
                frames.append(found.dropna(subset=["gi_observed_class"]).assign(seed=seed)[COLUMNS])
                break
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def lines(observed: pd.DataFrame | None) -> list[str]:
    """The Markdown table of ``table``'s lines, with a sentence saying what it shows; none without lines."""
    if observed is None or observed.empty:
        return []
    several = observed["cell_type"].nunique() > 1
    header = ["seed", *(["cell type"] if several else []), "double", "observed class", "confidence",
              *(f"P({kind})" for kind in KINDS), "strength [95% interval]"]
    result = ["Observed classes of the test doubles, with the probability of each class as the true one (the "
              "share of 200 resamples of the double's cells, reflected about the observed scores, in it; "
              "confidence: that of the observed class; gi_class_agreement credits a prediction with the "
              "probability of its class):", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line in observed.sort_values(["seed", "cell_type", "condition"]).itertuples(index=False):
        cells = [str(line.seed), *([line.cell_type] if several else []), line.condition, line.gi_observed_class,
                 f"{line.gi_observed_confidence:.2f}",
                 *(f"{getattr(line, f'gi_probability_{kind}'):.2f}" for kind in KINDS),
                 f"{line.gi_observed_strength:.2f} [{line.gi_strength_low:.2f}, {line.gi_strength_high:.2f}]"]
        result.append("| " + " | ".join(cells) + " |")
    return result + [""]
