"""Oracle models on the simulator's planted truth, scored by the harness's own code (``docs/statistics.md``).

An oracle predicts every test condition's true mean expression plus Gaussian noise of a known sd σ on
every gene, so oracles with smaller σ are better by construction: the planted order. The true mean is
the population mean of X = log1p(normalize_total(counts)) of the condition, estimated from a large
sample of the same screen (``population_means``). ``lfc`` itself is not it: X is a log of a normalised
count, and the mean of a log of a negative-binomial count with cell-level library, module and response
noise is not the log of its mean, so ``lfc`` is off the observed means by a gene- and depth-dependent bias.

A pair of rivals splits the conditions: each has the small σ on its own share of them and the large σ
on the other's, so each wins on some perturbations, as real models do, and the larger share wins on average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.core.pseudobulk import group_sums
from bench.data.simulator import simulate
from bench.evaluation import scoring, splits, stats
from bench.reporting.leaderboard import paired_over_seeds
from bench.workflows.runner import PreparedDataset

METRIC = "pearson_delta_de20"
_SPLITS: dict[tuple[str, str, int], splits.Split] = {}


def population_means(params: dict, lfc: np.ndarray, cells_per_condition: int) -> pd.DataFrame:
    """Mean X per condition (rows: control and conditions; one cell type) over a simulated sample of
    ``cells_per_condition`` cells per condition of the screen of ``params``, whose planted ``lfc`` it
    checks: the truth is drawn from the seed before the cells, so more cells leave it unchanged."""
    if params.get("n_cell_types", 1) != 1:
        raise ValueError("the oracles predict one cell type; the synthetic dataset has one")
    n_conditions = params["n_singles"] + params["n_doubles"]
    n_cells = math.ceil(cells_per_condition * n_conditions / (1 - params.get("control_fraction", 0.1)))
    large = simulate(**{**params, "n_cells": n_cells})
    if not np.array_equal(large.uns["simulation"]["lfc"], lfc):
        raise RuntimeError("the simulator's truth depends on n_cells; population means would be of another screen")
    codes, labels = pd.factorize(large.obs["condition"].astype(str), sort=True)
    sums = group_sums(large.X, codes, len(labels))
    return pd.DataFrame(sums / np.bincount(codes)[:, None], index=pd.Index(labels, name="condition"),
                        columns=large.var_names)


Noise = float | Mapping[str, float]  # one σ, or a σ per condition


def oracle(truth: pd.DataFrame, conditions: Sequence[str], cell_type: str, sigma: Noise,
           rng: np.random.Generator) -> pd.DataFrame:
    """Predicted means indexed by (cell_type, condition): the true means plus N(0, σ²) on every gene."""
    scale = np.array([sigma[c] for c in conditions])[:, None] if isinstance(sigma, Mapping) else sigma
    values = truth.loc[list(conditions)].to_numpy() + rng.normal(0.0, scale, size=(len(conditions), truth.shape[1]))
    index = pd.MultiIndex.from_product([[cell_type], list(conditions)], names=["cell_type", "condition"])
    return pd.DataFrame(values, index=index, columns=truth.columns)


def condition_gaps(tables: dict[int, list[pd.DataFrame]], better: int, worse: int) -> pd.Series:
    """Per condition, its share of the pooled mean difference (``differences``) of two oracles: the sum of
    its differences over the seeds that test it, over the pool's size. They sum to the true Δ."""
    pooled = pd.concat([seed[better][["condition"]].assign(d=seed[better][METRIC] - seed[worse][METRIC])
                        for seed in tables.values()])
    return pooled.groupby("condition")["d"].sum() / len(pooled)


def rivals(gaps: pd.Series, target: float, small: float, large: float, seed: int) -> tuple[dict, dict]:
    """Two oracles' σ per condition: the first has ``small`` on the conditions it owns and ``large`` on
    the rest, the second the other way round. It owns a prefix of a random order of the conditions (fixed
    for all split seeds: a model's strengths belong to the perturbations), the one whose mean Δ, by the
    ``gaps`` of σ ``small`` over ``large`` (``condition_gaps``), comes nearest ``target``."""
    order = np.random.default_rng(seed).permutation(sorted(gaps.index))
    owned = np.concatenate([[0.0], np.cumsum(gaps[order].to_numpy())])
    mine = set(order[:int(np.argmin(np.abs(2 * owned - gaps.sum() - target)))])
    first = {c: small if c in mine else large for c in gaps.index}
    return first, {c: large if c in mine else small for c in gaps.index}


def score_seed(prepared: PreparedDataset, truth: pd.DataFrame, sigmas: Sequence[Noise], split_name: str,
               seed: int, stream: int = 0) -> list[pd.DataFrame]:
    """Per oracle (in ``sigmas`` order), its per-perturbation scores on the test set of one split seed,
    computed by ``scoring.score`` as for any model. The split is ``splits.make``'s, the one ``bench run``
    freezes for a dataset without committed splits; oracle i's noise is random stream ``stream + i`` of the
    seed (callers scoring several families of oracles give each its own streams)."""
    key = (prepared.sha256, split_name, seed)
    if key not in _SPLITS:  # made once: a seed's split draws every earlier seed's too (``splits.make``)
        _SPLITS[key] = splits.make(prepared.adata, split_name, seed, prepared.name, prepared.sha256)
    data = splits.apply(_SPLITS[key], prepared.adata)
    observed, training = data.means("test"), data.means("train")
    tables = []
    for number, sigma in enumerate(sigmas):
        rng = np.random.default_rng([seed, stream + number])
        predicted = pd.concat([oracle(truth, list(means.index), cell_type, sigma, rng)
                               for cell_type, means in observed.items()])
        tables.append(scoring.score(predicted, observed, training, prepared.de20, data.subgroups))
    return tables


def sigmas_for_gaps(prepared: PreparedDataset, truth: pd.DataFrame, gaps: Sequence[float], split_name: str,
                    seeds: Sequence[int], grid: Sequence[float]) -> list[float]:
    """Noise sds of a chain of oracles, the first noiseless, whose mean ``METRIC`` falls by ``gaps`` from
    one to the next: the mean over ``seeds`` at each σ of ``grid`` (increasing), interpolated."""
    tables = [score_seed(prepared, truth, grid, split_name, seed) for seed in seeds]
    curve = np.array([np.mean([table[METRIC].mean() for table in column]) for column in zip(*tables)])
    targets = curve[0] - np.cumsum(gaps)
    if targets[-1] < curve.min():
        raise ValueError(f"the σ grid reaches {METRIC} {curve.min():.3f}, above the target {targets[-1]:.3f}")
    falling = np.minimum.accumulate(curve)  # monotone for np.interp, against the noise of a few seeds
    return [0.0, *(float(np.interp(-t, -falling, grid)) for t in targets)]


def differences(tables: dict[int, list[pd.DataFrame]], better: int, worse: int) -> np.ndarray:
    """Per-perturbation ``METRIC`` of oracle ``better`` minus oracle ``worse``, every seed's test set pooled."""
    return np.concatenate([seed[better][METRIC].to_numpy() - seed[worse][METRIC].to_numpy()
                           for seed in tables.values()])


def ranking(tables: dict[int, list[pd.DataFrame]], seeds_per_board: int) -> dict[str, float]:
    """Boards of ``seeds_per_board`` consecutive seeds: the share whose order of the oracles by the mean
    over seeds of ``all/METRIC`` (as a leaderboard cell) is the planted one, and per adjacent pair the
    share whose paired CI (``leaderboard.paired_over_seeds``) puts the better oracle above the worse."""
    seeds = sorted(tables)
    boards = [seeds[i:i + seeds_per_board] for i in range(0, len(seeds) - seeds_per_board + 1, seeds_per_board)]
    n_oracles = len(tables[seeds[0]])
    ordered, separated = 0, np.zeros(n_oracles - 1)
    for board in boards:
        means = [np.mean([tables[s][k][METRIC].mean() for s in board]) for k in range(n_oracles)]
        ordered += bool(np.all(np.diff(means) < 0))
        for k in range(n_oracles - 1):
            diff = paired_over_seeds([(tables[s][k], tables[s][k + 1]) for s in board], "all", METRIC)
            separated[k] += diff.low > 0
    return {"boards": len(boards), "ordered": ordered / len(boards),
            **{f"separated_{k}": separated[k] / len(boards) for k in range(n_oracles - 1)}}


def percentile_interval(diff: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """The plain percentile interval of the mean that ``stats.paired_bootstrap`` reported before the expansion."""
    means = diff[np.random.default_rng(seed).integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def replicates(population: np.ndarray, sizes: Sequence[int], n_replicates: int, n_boot: int,
               seed: int) -> pd.DataFrame:
    """Test sets of n perturbations drawn with replacement from ``population`` (whose mean is the true
    difference), per n: the share of the expanded (``stats.paired_bootstrap``) and of the plain
    percentile intervals that hold the truth, and the share of expanded ones above zero (power)."""
    truth = population.mean()
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        expanded = plain = above = 0
        for replicate in range(n_replicates):
            diff = population[rng.integers(0, len(population), n)]
            found = stats.paired_bootstrap(diff, np.zeros(n), n_boot=n_boot, seed=replicate)
            low, high = percentile_interval(diff, n_boot, replicate)
            expanded += found.low <= truth <= found.high
            plain += low <= truth <= high
            above += found.low > 0
        rows.append({"n": n, "expanded": expanded / n_replicates, "percentile": plain / n_replicates,
                     "power": above / n_replicates})
    return pd.DataFrame(rows)


def board_power(tables: dict[int, list[pd.DataFrame]], better: int, worse: int, seed_counts: Sequence[int],
                n_boards: int, seed: int) -> pd.DataFrame:
    """Boards of k seeds drawn from ``tables`` without replacement, per k: the share that rank the better
    oracle first (mean over seeds of ``all/METRIC``), the share whose CI of the pair by
    ``leaderboard.paired_over_seeds`` lies above zero, and the mean number of distinct perturbations."""
    rng = np.random.default_rng(seed)
    seeds = sorted(tables)
    rows = []
    for k in seed_counts:
        ranked, above, perturbations = 0, 0, 0
        for _ in range(n_boards):
            board = rng.choice(seeds, k, replace=False)
            diff = paired_over_seeds([(tables[s][better], tables[s][worse]) for s in board], "all", METRIC)
            gap = np.mean([tables[s][better][METRIC].mean() - tables[s][worse][METRIC].mean() for s in board])
            ranked += gap > 0
            above += diff.low > 0
            perturbations += diff.n
        rows.append({"seeds": k, "perturbations": perturbations / n_boards, "ranked first": ranked / n_boards,
                     "power": above / n_boards})
    return pd.DataFrame(rows)


def needed(sizes: Sequence[float], power: Sequence[float], target: float = 0.8) -> float:
    """The smallest size whose power reaches ``target``, interpolated linearly; NaN when none does."""
    sizes, power = np.asarray(sizes, dtype=float), np.asarray(power, dtype=float)
    reached = np.flatnonzero(power >= target)
    if not len(reached):
        return float("nan")
    i = reached[0]
    if i == 0:
        return float(sizes[0])
    return float(np.interp(target, power[i - 1:i + 1], sizes[i - 1:i + 1]))
