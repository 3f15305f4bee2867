"""The data ceiling: how well a test perturbation's measured effect predicts a re-measurement of itself.

A mean effect measured from a finite number of cells cannot be predicted better than it can be measured
again. For each halving, the cells of every test condition are shuffled and cut into two halves of
⌊n/2⌋ cells (an odd cell is left out), and so are the training control cells of each cell type. Half
A's effect placed on half B's control mean, ``x̂ = x_A − c_A + c_B``, is scored as a prediction of half
B (observed mean ``x_B``, control mean ``c_B``) with every metric, by the same code that scores models;
half A's cells are the predicted cells of ``energy_distance``. A condition with fewer than 2 cells
cannot be halved and has no ceiling.

The DE20 genes of a halving are picked from half A alone (its cells of the condition against its
control cells, by the dataset's rule: ``de.welch_de_genes``, scanpy's t-test ranking), as a model picks
nothing from the cells it is scored on. Genes picked from all cells are those where both halves' noise
happens to point the same way, which inflates the ceiling: on norman_subset (simulation split, seed 1)
by about 0.03, and on a condition without any effect from 0 to about 0.7 (``tests/test_ceiling.py``).

Halvings run in batches until the standard error of the headline, ``all/pearson_delta_de20`` (sd over
halvings / √halvings), is below ``TARGET_SE``: at least ``LEAST_HALVINGS`` so that the sd is itself
estimated well enough (its relative error is about 1/√(2(n − 1)), 16% at 20), at most ``MOST_HALVINGS``
to bound the time. On norman_subset the headline's sd over halvings is about 0.05, so 20 to 60
halvings; the target, 0.01, is a fifth of the ceiling's spread over split seeds there. (0.005 took
80–180 halvings and 7–17 s per seed, which the test suite's many tracked runs could not afford; the
standard error reached is recorded and shown, so a reader sees how precise each ceiling is.) The energy
distance and the interaction metrics, three quarters of a halving's time, are scored on the first
``FULL_HALVINGS`` halvings only; each metric's standard error is over the halvings that scored it.

Each half holds half of the cells, so its mean is noisier than the full data's and the ceiling is
conservative: a perfect model scored against all cells could do better. cell-eval
(``cell_eval/_evaluator.py``, ``compute_ceiling``) halves the data the same way and maps its correlations
to full depth with the Spearman–Brown formula; we report the measured half-depth values, which need no
assumption about each metric.

A ceiling is tracked as a run of model ``ceiling``, preset ``split-half``, one per split seed
(``bench.workflows.ceiling_runs``): its metrics are means over halvings, ``halving/count`` counts them
(a metric, not a parameter, since it differs between seeds and a leaderboard row is one set of
parameters), and ``halving/se/<subgroup>/<metric>`` is each metric's standard error over halvings.
"""
from __future__ import annotations

from collections.abc import Iterable

import anndata as ad
import numpy as np
import pandas as pd

from bench.core.conditions import CONTROL
from bench.core.pseudobulk import pseudobulk
from bench.evaluation import de, scoring
from bench.evaluation.split_data import SplitData

MODEL = "ceiling"
PRESET = "split-half"
LABEL = "ceiling (split-half)"
VERSION = "split-half-3"  # the definition's version, tracked as the run's card hash (3: DE genes of half A,
# halvings until the headline's standard error is below TARGET_SE; 2: energy PCA of all training cells, as for models)
HEADLINE = "pearson_delta_de20"
TARGET_SE = 0.01
LEAST_HALVINGS = 20
BATCH = 10  # halvings added while the standard error is above TARGET_SE
MOST_HALVINGS = 200
FULL_HALVINGS = 5  # halvings that also score the energy distance and the interaction metrics,
# which cost 3x the others together (Theil–Sen fits, cell-level distances); the rest score the mean-based ones
SE_PREFIX = "halving/se/"  # of run metrics: a metric's standard error over halvings (``metric_catalog.NOT_TEST``)
COUNT = ("halving", "count")  # (subgroup, metric) of the run metric that counts its halvings


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


def split_half(data: SplitData, seed: int, halvings: Iterable[int],
               singles: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per halving and test perturbation, every metric of half A scored as a prediction of half B
    (the interaction metrics of doubles too, given the singles' observed means), on half A's DE genes;
    the energy distance and the interaction metrics on the first ``FULL_HALVINGS`` halvings only."""
    train, test, everything = data.train, data.test, data.cells
    is_control = data.masks["train"] & (everything.obs["condition"].astype(str).to_numpy() == CONTROL)
    controls = everything[is_control]
    test_rows, control_rows = np.flatnonzero(data.masks["test"]), np.flatnonzero(is_control)
    axes = scoring.training_axes(train)

    def mask_of(rows: np.ndarray) -> np.ndarray:  # of whole-dataset rows
        keep = np.zeros(everything.n_obs, dtype=bool)
        keep[rows] = True
        return keep

    frames = []
    for halving in halvings:
        rng = np.random.default_rng([seed, halving])
        test_a, test_b = halves(test, rng)
        control_a, control_b = halves(controls, rng)
        a, b = test[test_a], test[test_b]
        mean_a, mean_b = (pseudobulk(everything, mask_of(test_rows[rows])) for rows in (test_a, test_b))
        c_a, c_b = (pseudobulk(everything, mask_of(control_rows[rows])).xs(CONTROL, level="condition")
                    for rows in (control_a, control_b))
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
        de20 = de.welch_de_genes(everything, mask_of(np.concatenate([test_rows[test_a], control_rows[control_a]])))
        full = halving < FULL_HALVINGS
        cells = {cell_type: a[a.obs["cell_type"].astype(str) == cell_type] for cell_type in set(cell_types)} if full else None
        table = scoring.score(predicted, _by_cell_type(mean_b.loc[keys]), training, de20, data.subgroups, cells,
                              (b, train), singles if full else None, axes=axes)
        frames.append(table.assign(halving=halving))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def headline_se(table: pd.DataFrame) -> float:
    """The standard error of the headline's mean over the halvings of ``table``: sd over halvings of
    each halving's mean over perturbations, over √halvings."""
    per_halving = table.groupby("halving")[HEADLINE].mean()
    return float(per_halving.std(ddof=1) / np.sqrt(len(per_halving)))


def until_precise(data: SplitData, seed: int, singles: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """``split_half`` over halvings 0, 1, … until the headline's standard error is below ``TARGET_SE``
    (``LEAST_HALVINGS`` to ``MOST_HALVINGS`` halvings)."""
    tables: list[pd.DataFrame] = []
    done = 0
    while done < MOST_HALVINGS:
        size = LEAST_HALVINGS if not done else min(BATCH, MOST_HALVINGS - done)
        tables.append(split_half(data, seed, range(done, done + size), singles))
        done += size
        table = pd.concat(tables, ignore_index=True)
        if table.empty or headline_se(table) < TARGET_SE:
            break
    return table
