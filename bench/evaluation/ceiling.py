"""The data ceiling: how well a test perturbation's measured effect predicts a re-measurement of itself.

A mean effect measured from a finite number of cells cannot be predicted better than it can be measured
again. For each halving, the cells of every test condition are shuffled and cut into two halves of
⌊n/2⌋ cells (an odd cell is left out), and so are the training control cells of each cell type. Half
A's effect placed on half B's control mean, ``x̂ = x_A − c_A + c_B``, is scored as a prediction of half
B (observed mean ``x_B``, control mean ``c_B``) with every metric, by the same code that scores models;
half A's cells are the predicted cells of ``energy_distance``. DE20 genes are the dataset's, as for
every model. A condition with fewer than 2 cells cannot be halved and has no ceiling.

Each half holds half of the cells, so its mean is noisier than the full data's and the ceiling is
conservative: a perfect model scored against all cells could do better. cell-eval
(``cell_eval/_evaluator.py``, ``compute_ceiling``) halves the data the same way and maps its correlations
to full depth with the Spearman–Brown formula; we report the measured half-depth values, which need no
assumption about each metric.

A ceiling is tracked as a run of model ``ceiling``, preset ``split-half``, one per split seed: its
metrics are means over halvings, and ``halving/<h>/<subgroup>/<metric>`` keeps each halving's value, so
that a leaderboard can show mean ± sd over split seeds and halvings.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

from bench.core.conditions import CONTROL
from bench.core.pseudobulk import pseudobulk
from bench.evaluation import scoring
from bench.evaluation.split_data import SplitData

MODEL = "ceiling"
PRESET = "split-half"
LABEL = "ceiling (split-half)"
VERSION = "split-half-2"  # the definition's version, tracked as the run's card hash (2: energy PCA
# of all training cells, as for models)
HALVINGS = 5
HALVING_PREFIX = "halving/"


def halves(cells: ad.AnnData, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two disjoint halves of ⌊n/2⌋ cells of every (cell_type, condition) with n ≥ 2."""
    first, second = [], []
    groups = cells.obs.groupby(["cell_type", "condition"], observed=True, sort=True).indices
    for rows in groups.values():
        order = rng.permutation(rows)
        half = len(order) // 2
        first.append(order[:half])
        second.append(order[half : 2 * half])
    empty = np.array([], dtype=int)
    return np.sort(np.concatenate(first or [empty])), np.sort(np.concatenate(second or [empty]))


def _by_cell_type(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {cell_type: table.xs(cell_type, level="cell_type") for cell_type in table.index.unique("cell_type")}


def split_half(data: SplitData, de20: dict, seed: int, halvings: int = HALVINGS,
               singles: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per halving and test perturbation, every metric of half A scored as a prediction of half B
    (the interaction metrics of doubles too, given the singles' observed means)."""
    train, test, everything = data.train, data.test, data.cells
    is_control = data.masks["train"] & (everything.obs["condition"].astype(str).to_numpy() == CONTROL)
    controls = everything[is_control]
    test_rows, control_rows = np.flatnonzero(data.masks["test"]), np.flatnonzero(is_control)

    def mean_of(rows: np.ndarray) -> pd.DataFrame:  # of whole-dataset rows, without copying them
        keep = np.zeros(everything.n_obs, dtype=bool)
        keep[rows] = True
        return pseudobulk(everything, keep)

    frames = []
    for halving in range(halvings):
        rng = np.random.default_rng([seed, halving])
        test_a, test_b = halves(test, rng)
        control_a, control_b = halves(controls, rng)
        a, b = test[test_a], test[test_b]
        mean_a, mean_b = mean_of(test_rows[test_a]), mean_of(test_rows[test_b])
        c_a, c_b = (mean_of(control_rows[rows]).xs(CONTROL, level="condition") for rows in (control_a, control_b))
        keys = mean_a.index.intersection(mean_b.index)
        if not len(keys):
            continue
        cell_types = keys.get_level_values("cell_type")
        predicted = mean_a.loc[keys] - c_a.loc[cell_types].to_numpy() + c_b.loc[cell_types].to_numpy()
        training = {}  # the training means, with half B's control mean as the control
        for cell_type, means in data.means("train").items():
            training[cell_type] = means.copy()
            if cell_type in c_b.index:
                training[cell_type].loc[CONTROL] = c_b.loc[cell_type].to_numpy()
        cells = {cell_type: a[a.obs["cell_type"].astype(str) == cell_type] for cell_type in set(cell_types)}
        table = scoring.score(predicted, _by_cell_type(mean_b.loc[keys]), training, de20, data.subgroups, cells,
                              (b, train), singles)
        frames.append(table.assign(halving=halving))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
