"""The observed interaction class of a test double, with its uncertainty: a bootstrap over cells.

A double's class reads thresholds off scores computed from the double's mean, its singles' means and
the control mean (``bench.evaluation.interactions``). The double's mean comes from a finite sample of
cells (about 100 per condition at Norman-like depth), so a double near a threshold may have another
class than its measurement shows. Its cells are resampled with replacement and the class's two scores,
dominance d and strength s, are computed again from each resample's mean, with the same singles' means
and control mean. Those stay fixed because a prediction is scored against them too
(``interactions.gi_metrics``): they define the genes and the additive reference that both the observed
and the predicted double are read against.

The question asked is the probability of each *true* class given the measurement, so each resample's
scores are reflected about the point estimate, d̂ − (d* − d̂) (the basic bootstrap: Davison & Hinkley,
*Bootstrap Methods and their Application*, 1997, §5.2), before they are classified. Both scores are
biased by noise — d = |log10(c_A/c_B)| is an absolute value, which noise only pushes up — and a
resample carries the noise twice (the sample's and the resample's), so the raw resamples (the
percentile bootstrap) put their mass on the far side of a threshold from the truth: on norman_subset's
simulation seed 1, KLF1+TGFBR2 (d̂ 0.421, under the epistasis threshold 0.477) was epistasis in 62% of
raw resamples. Resampling the singles and the control cells as well was tried and rejected: their
noise widens |δ_A + δ_B| more than |δ_AB| and pulled the strength about 0.15 low.

Per double this keeps the point estimate (all cells), the share of ``RESAMPLES`` reflected resamples in
each class, and the strength's 95% basic interval. Resamples are drawn from a generator seeded by
``SEED`` and the double's name, so a double's result does not depend on the other doubles of its split.
One double's 200 resamples take about 1 s on a loaded 2-core machine (the synthetic dataset's 21 test
doubles of ``simulation`` seed 1: 20 s; their Theil–Sen fits are made together, ``theil_sen_many``);
the table is cached per dataset, split, part and ``VERSION`` under the
cache folder (0.1 s to read). Only test doubles are resampled: validation scores pick models, and score
a double's class 0 or 1.
"""

from __future__ import annotations

import json
import warnings
import zlib

import numpy as np
import pandas as pd

from bench.core import atomic, paths
from bench.core.conditions import CONTROL
from bench.core.errors import BenchWarning
from bench.evaluation import interactions
from bench.evaluation.interactions import KINDS, Truth
from bench.evaluation.split_data import SplitData
from bench.evaluation.theil_sen_many import theil_sen_many

RESAMPLES = 200  # a probability's standard error is at most 0.035
SEED = 0
VERSION = "3"  # of the definition: what is resampled, and how (3: the double's cells only, reflected)


def resampled_means(cells: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """The means of ``resamples`` resamples with replacement of the rows of ``cells`` (resamples x genes)."""
    n = len(cells)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    return counts @ cells / n


def bootstrap(condition: str, double: np.ndarray, singles: pd.DataFrame, control: np.ndarray,
              rng: np.random.Generator, resamples: int = RESAMPLES) -> dict:
    """The class probabilities and the strength's 95% interval of a double from its cells (cells x genes),
    its singles' means (``singles``, rows named by gene) and the control mean: the class of every resample
    reflected about the point estimate (module docstring), the Theil–Sen fits made together."""
    change_a, change_b, genes = interactions.fitted_genes(condition, singles, control)
    delta_a, delta_b = change_a[genes], change_b[genes]
    changes = np.vstack([double[:, genes].mean(axis=0), resampled_means(double[:, genes], rng, resamples)])
    changes -= control[genes]
    fits = theil_sen_many(np.column_stack([delta_a, delta_b]), changes)
    dominance = np.array([interactions.dominance_of(float(c_a), float(c_b)) for c_a, c_b in fits])
    strength = np.array([interactions.strength_of(delta_a, delta_b, change) for change in changes])
    with np.errstate(invalid="ignore"):  # an infinite score (a zero coefficient) is kept as it is
        reflected_d = np.where(np.isfinite(dominance), 2 * dominance[0] - dominance, dominance)[1:]
        reflected_s = np.where(np.isfinite(strength), 2 * strength[0] - strength, strength)[1:]
    kinds = [interactions.classify(d, s) for d, s in zip(reflected_d, reflected_s)]
    low, high = np.percentile(reflected_s, [2.5, 97.5])
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


def _computed(data: SplitData, part: str, doubles: list[tuple[str, str]],
              singles: dict[str, pd.DataFrame]) -> dict[str, dict[str, dict]]:
    obs = data.cells.obs
    cell_type, condition = obs["cell_type"].astype(str).to_numpy(), obs["condition"].astype(str).to_numpy()
    train = data.means("train")
    result: dict[str, dict[str, dict]] = {}
    for kind, name in doubles:
        rows = (cell_type == kind) & data.masks[part] & (condition == name)
        rng = np.random.default_rng([SEED, zlib.crc32(f"{kind}\t{name}".encode())])
        result.setdefault(kind, {})[name] = bootstrap(name, _dense(data.cells.X[rows]), singles[kind],
                                                      train[kind].loc[CONTROL].to_numpy(), rng)
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
        table = _computed(data, part, doubles, dataset.singles)
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
