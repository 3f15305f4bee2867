"""The observed interaction class of a test double, with its uncertainty: a bootstrap over cells.

A double's class reads thresholds off scores computed from four means: the double's, its two singles'
and the control's (``bench.evaluation.interactions``). Each is a mean over a finite sample of cells, so
at Norman-like depth (about 100 cells per condition) a double near a threshold changes class when its
cells are drawn again. Each of the four groups is resampled with replacement on its own, within the
cell type (the stratified bootstrap of independent samples: Efron & Tibshirani, *An Introduction to the
Bootstrap*, 1993, §8.3), and ``double_scores`` is computed again from the resampled means, its choice of
genes included. The groups are the cells the point estimate is computed from when a model is scored
(``scoring.score_part``): the double's cells in the scored part, each single's cells in the whole
dataset (``PreparedDataset.singles``), and the training control cells. Resampling the double alone
would treat its singles and control as exact, while their noise moves the scores as much (the singles
define both the genes and the additive reference).

Per double this keeps the point estimate (all cells), the share of ``RESAMPLES`` resamples in each class,
and the strength's 95% percentile interval. Resamples are drawn from a generator seeded by ``SEED``
and the double's name, so a double's result does not depend on the other doubles of its split. One
resample costs one ``double_scores`` (about 12 ms on a quiet core: its Theil–Sen fit), 2 to 3 s per
double (norman_subset's 3 test doubles of the additive split: 31 s on 2 busy cores); the table is cached
per dataset, split, part and ``VERSION`` under the cache folder (0.1 s to read).

The percentile interval is not corrected for bias. Resampled means carry the sampling noise twice (the
sample's own and the resample's), and noise shrinks the strength (it widens the singles' sum more than
the double: two singles and twice the control), so the resamples' strengths sit below the point estimate
(by about 0.15 on norman_subset's doubles) and a point estimate just above a threshold can have its own
class in few resamples.
"""

from __future__ import annotations

import json
import warnings
import zlib

import numpy as np
import pandas as pd

from bench.core import atomic, paths
from bench.core.conditions import CONTROL, genes_of
from bench.core.errors import BenchWarning
from bench.evaluation import interactions
from bench.evaluation.interactions import KINDS, Truth
from bench.evaluation.split_data import SplitData

RESAMPLES = 200  # a probability's standard error is at most 0.035
SEED = 0
VERSION = "1"  # of the definition: what is resampled, and how


def resampled_means(cells: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """The means of ``resamples`` resamples with replacement of the rows of ``cells`` (resamples x genes)."""
    n = len(cells)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    return counts @ cells / n


def bootstrap(condition: str, double: np.ndarray, single_a: np.ndarray, single_b: np.ndarray, control: np.ndarray,
              genes: pd.Index, rng: np.random.Generator, resamples: int = RESAMPLES) -> dict:
    """The class probabilities and the strength's 95% interval of a double from its cells, its singles'
    and the control cells (each cells x ``genes``)."""
    a, b = genes_of(condition)
    means = [resampled_means(cells, rng, resamples) for cells in (double, single_a, single_b, control)]
    kinds, strengths = [], []
    for mean_ab, mean_a, mean_b, mean_control in zip(*means):
        singles = pd.DataFrame([mean_a, mean_b], index=[a, b], columns=genes)
        found = interactions.double_scores(condition, mean_ab, singles, mean_control)
        kinds.append(found.kind)
        strengths.append(found.strength)
    low, high = np.percentile(strengths, [2.5, 97.5])
    return {"probabilities": {kind: kinds.count(kind) / resamples for kind in KINDS},
            "strength_interval": [float(low), float(high)]}


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)


def _doubles(data: SplitData, part: str, singles: dict[str, pd.DataFrame]) -> list[tuple[str, str]]:
    """The (cell_type, condition) of every double of ``part`` whose singles are observed and whose cell
    type has training control cells."""
    train = data.means("train")
    return [(cell_type, condition) for cell_type, means in data.means(part).items()
            if cell_type in singles and cell_type in train and CONTROL in train[cell_type].index
            for condition in means.index if interactions.scorable(condition, singles[cell_type])]


def _computed(data: SplitData, part: str, doubles: list[tuple[str, str]]) -> dict[str, dict[str, dict]]:
    obs = data.cells.obs
    cell_type, condition = obs["cell_type"].astype(str).to_numpy(), obs["condition"].astype(str).to_numpy()
    result: dict[str, dict[str, dict]] = {}
    for kind, name in doubles:
        mine = cell_type == kind
        a, b = genes_of(name)
        groups = [mine & data.masks[part] & (condition == name), mine & (condition == a), mine & (condition == b),
                  mine & data.masks["train"] & (condition == CONTROL)]
        rng = np.random.default_rng([SEED, zlib.crc32(f"{kind}\t{name}".encode())])
        result.setdefault(kind, {})[name] = bootstrap(name, *(_dense(data.cells.X[rows]) for rows in groups),
                                                      data.cells.var_names, rng)
    return result


def _read(path, doubles: list[tuple[str, str]]) -> dict[str, dict[str, dict]]:
    """The cached table; ValueError when it lacks one of ``doubles`` or is not such a table."""
    table = json.loads(path.read_text())
    for kind, name in doubles:
        entry = table.get(kind, {}).get(name) if isinstance(table, dict) else None
        if not (isinstance(entry, dict) and set(entry.get("probabilities", {})) == set(KINDS)
                and len(entry.get("strength_interval", [])) == 2):
            raise ValueError(f"it lacks {kind}/{name}")
    return table


def truths(data: SplitData, part: str, dataset) -> dict[tuple[str, str], Truth]:
    """The ``Truth`` of every double of ``part`` whose singles are observed, kept in
    ``data.interactions[part]`` (the ``known`` of ``interactions.gi_metrics``); ``dataset`` gives the
    singles' means, the name and checksum (``runner.PreparedDataset``)."""
    known = data.interactions[part]
    doubles = _doubles(data, part, dataset.singles)
    missing = [key for key in doubles if key not in known]
    if not missing:
        return known
    path = (paths.cache_dir() / "interactions"
            / f"{dataset.name}-{dataset.sha256[:16]}-{data.split_sha256[:16]}-{part}-b{RESAMPLES}-v{VERSION}.json")
    table = None
    if path.exists():
        try:
            table = _read(path, doubles)
        except (OSError, ValueError) as exc:
            warnings.warn(f"interaction cache {path} is unusable ({exc}); recomputing it", BenchWarning)
    if table is None:
        table = _computed(data, part, doubles)
        atomic.write_text(path, json.dumps(table))
    train, observed = data.means("train"), data.means(part)
    for kind, name in missing:
        point = interactions.double_scores(name, observed[kind].loc[name].to_numpy(), dataset.singles[kind],
                                           train[kind].loc[CONTROL].to_numpy())
        entry = table[kind][name]
        known[kind, name] = Truth(point, entry["probabilities"], tuple(entry["strength_interval"]))
    return known


def columns(keys: pd.DataFrame, known: dict[tuple[str, str], Truth]) -> pd.DataFrame:
    """Per row of ``keys`` (cell_type, condition), the observed double's class, its confidence (the
    probability of that class), the probability of each class and the strength with its 95% interval;
    empty where the row is no double with resamples."""
    rows = []
    for key in zip(keys["cell_type"], keys["condition"]):
        truth = known.get(key)
        if truth is None:
            rows.append({})
            continue
        rows.append({"gi_observed_class": truth.point.kind, "gi_observed_confidence": truth.confidence,
                     **{f"gi_probability_{kind}": truth.probabilities[kind] for kind in KINDS},
                     "gi_observed_strength": truth.point.strength, "gi_strength_low": truth.strength_interval[0],
                     "gi_strength_high": truth.strength_interval[1]})
    names = ["gi_observed_class", "gi_observed_confidence", *(f"gi_probability_{kind}" for kind in KINDS),
             "gi_observed_strength", "gi_strength_low", "gi_strength_high"]
    return pd.DataFrame(rows, columns=names, index=keys.index)
