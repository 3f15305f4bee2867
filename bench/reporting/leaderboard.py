"""Leaderboards from tracked runs: which runs belong in one table, and the statistics of each cell.

A board is one (dataset, split). Its rows are model cards (one per preset, and per set of ``--param``
overrides, that ran; overridden values are named in the row's label); its cells are a
metric on a test subgroup, as mean ± sd over split seeds, with a paired bootstrap 95% CI of the row's
difference to a reference row (``bench.evaluation.stats``).

Honesty rules, enforced before anything is computed:

* one dataset checksum and one metrics version per dataset, one split file (sha256) per split seed, and
  one card version (sha256) per row; anything else is refused, because a cell would average runs that
  are not comparable. ``latest=True`` keeps only the runs that match the newest run of each group and
  counts the others as left out;
* one run per (row, seed): a re-run replaces an older one, which is counted as superseded;
* only complete runs count, and the others are counted as ignored: a run still RUNNING (or killed while
  logging) is left out before anything else, and a FINISHED run without ``per_perturbation.csv`` cannot
  replace an older run of its seed. Failed and skipped runs count (as failures and skips);
* sweep trials (child runs, validation only) and sweep parents are never rows.

The runs come as the flat rows of ``bench.workflows.tracking.runs``, and a run's per-perturbation scores
through the functions a caller passes in, so nothing here reads the tracking store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pandas as pd

from bench.core.api import OFFLINE_PRIORS
from bench.core.errors import BenchError
from bench.core.registry import all_cards, preset_label
from bench.evaluation import ceiling, splits, stats
from bench.evaluation.metric_catalog import METRICS, is_test_metric

PROVENANCE = {"dataset_sha256": "dataset checksums", "metrics_version": "metric versions"}
UNFINISHED = "UNFINISHED"  # tracking's status of a run whose logging never ended (still running, or killed then)
SCORE_COLUMNS = ["subgroup", "metric", "value"]
DIAGNOSTIC = "diagnostic"  # the subgroup of a model's diagnostics (the runner logs them as "diagnostic/<name>")
CELL_COLUMNS = ["split", "model", "preset", "label", "baseline", "metric", "subgroup", "mean", "sd", "n_seeds",
                "n_failed", "reference", "diff", "ci_low", "ci_high", "detectable", "n_perturbations"]  # ``table_cells``' (and best)
Key = TypeVar("Key")


@dataclass
class Run:
    """A tracked run that takes a board's cells: its id (to read its artifacts), provenance and values."""

    run_id: str
    split_sha256: str
    git_commit: str
    params: dict[str, str]
    values: dict[tuple[str, str], float]  # by (subgroup, metric)

    def value(self, subgroup: str, metric: str) -> float:
        return self.values.get((subgroup, metric), np.nan)


@dataclass
class Row:
    """One model card with one preset and one set of parameters on one board: its runs by seed."""

    model: str
    preset: str
    baseline: bool
    variant: str = ""
    runs: dict[int, Run] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: str = ""

    @property
    def is_ceiling(self) -> bool:
        return self.model == ceiling.MODEL and self.preset == ceiling.PRESET

    @property
    def label(self) -> str:
        """``model [preset]`` (``preset_label``), noting offline substitutes of official priors (a run's
        diagnostic ``OFFLINE_PRIORS``), then the parameters that set the row apart."""
        substituted = any(run.value(DIAGNOSTIC, OFFLINE_PRIORS) > 0 for run in self.runs.values())
        notes = ["offline priors"] if substituted else []
        label = ceiling.LABEL if self.is_ceiling else preset_label(self.model, self.preset, notes)
        return f"{label} ({self.variant})" if self.variant else label

    @property
    def samples(self) -> int:
        """How many values a cell holding every run averages: one per seed (a data ceiling's is its mean
        over halvings)."""
        return len(self.runs)

    def value(self, subgroup: str, metric: str) -> stats.SeedSummary:
        """Mean ± sd over seeds."""
        return stats.over_seeds([run.value(subgroup, metric) for run in self.runs.values()])

    def halvings(self) -> tuple[list[int], float]:
        """A data ceiling's halvings per seed, and the largest standard error over halvings of its
        headline (``ceiling.HEADLINE`` on all perturbations) of any seed (NaN when no run records it)."""
        counts = [int(run.value(*ceiling.COUNT)) for run in self.runs.values() if np.isfinite(run.value(*ceiling.COUNT))]
        errors = [run.value(f"{ceiling.SE_PREFIX}all", ceiling.HEADLINE) for run in self.runs.values()]
        errors = [e for e in errors if np.isfinite(e)]
        return counts, max(errors, default=np.nan)


@dataclass
class Board:
    dataset: str
    split: str
    dataset_sha256: str
    metrics_version: str
    split_files: dict[int, str]
    commits: list[str]
    rows: list[Row]
    left_out: int = 0
    superseded: int = 0
    ignored: int = 0
    replicates: Replicates | None = None  # set once the runs' scores are read (``replicates``)
    observed_interactions: pd.DataFrame | None = None  # the test doubles' classes (observed_interactions.table)

    @property
    def subgroups(self) -> list[str]:
        found = {
            subgroup
            for row in self.rows
            for run in row.runs.values()
            for (subgroup, metric), value in run.values.items()
            if is_test_metric(f"{subgroup}/{metric}") and np.isfinite(value)
        }
        return ["all", *sorted(found - {"all"})]

    def has(self, metric: str) -> bool:
        """Whether any run of the board has a value of ``all/<metric>``."""
        return any(np.isfinite(run.value("all", metric)) for row in self.rows for run in row.runs.values())

    def row(self, label: str) -> Row:
        matches = [r for r in self.rows if label in (r.label, r.model)]
        if len(matches) != 1:
            choices = ", ".join(r.label for r in self.rows)
            what = "is ambiguous" if matches else "has no runs"
            raise BenchError(f"reference '{label}' {what} on {self.dataset}/{self.split}; choose one of: {choices}")
        return matches[0]


def _runs(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per run that is no sweep trial, oldest first, without its scores."""
    runs = rows[~rows["sweep_trial"].astype(bool)].drop_duplicates("run_id").drop(columns=SCORE_COLUMNS)
    return runs.sort_values(["start_time", "run_id"], kind="stable").reset_index(drop=True)


def _values(rows: pd.DataFrame) -> dict[str, dict[tuple[str, str], float]]:
    """Per run id, its values by (subgroup, metric)."""
    scored = rows.dropna(subset=["metric"])
    return {run_id: dict(zip(zip(group["subgroup"], group["metric"]), group["value"]))
            for run_id, group in scored.groupby("run_id", sort=False)}


def _describe(values: pd.Series) -> str:
    counts = values.value_counts()
    return ", ".join(f"{n} run(s) on {str(value)[:12]}" for value, n in counts.items())


def _one_value(runs: pd.DataFrame, column: str, keys: list[str], what: str, where: str, latest: bool) -> pd.DataFrame:
    """Keep runs only when each group of ``keys`` has one value of ``column``; with ``latest``, keep the
    value of the group's newest run instead of refusing."""
    kept = []
    for key, group in runs.groupby(keys, sort=False) if keys else [((), runs)]:
        values = group[column].fillna("unknown")
        if values.nunique() > 1:
            if not latest:
                label = where.format(*key) if keys else where
                raise BenchError(
                    f"runs of {label} mix {what} ({_describe(values)}); delete the stale runs from the "
                    "tracking store, or pass --latest to keep only runs matching the newest one"
                )
            group = group[values == values.iloc[-1]]
        kept.append(group)
    return pd.concat(kept) if kept else runs


def select(runs: pd.DataFrame, dataset: str, latest: bool) -> pd.DataFrame:
    """The comparable runs of one dataset (see the module docstring); raises ``BenchError`` on mixing."""
    for column, what in PROVENANCE.items():
        runs = _one_value(runs, column, [], what, f"dataset '{dataset}'", latest)
    runs = _one_value(runs, "split_sha256", ["split", "seed"], "split files", f"{dataset}/{{}} seed {{}}", latest)
    return _one_value(runs, "card_sha256", ["model", "preset"], "versions of the model card",
                      f"{dataset}: {{}} [{{}}]", latest)


def _parameters(runs: pd.DataFrame) -> pd.Series:
    """Per run, the parameters that differ between runs of its (model, preset), as ``key=value, …``;
    empty where all runs of a (model, preset) used the same parameters."""
    variant = pd.Series("", index=runs.index)
    for _, group in runs.groupby(["model", "preset"], sort=False):
        values = pd.DataFrame(list(group["params"]), index=group.index).fillna("")
        varying = [c for c in sorted(values) if values[c].nunique() > 1]
        for index, line in values[varying].iterrows():
            variant[index] = ", ".join(f"{c}={line[c]}" for c in varying)
    return variant


NOT_COMMITTED = "generated, not committed"  # a split file made on the machine that ran it (``_split_file``)


def _split_file(dataset: str, split: str, seed: int, sha256: str) -> str:
    path = splits.frozen_path(dataset, split, seed, committed=True)
    if path.exists() and splits.read(path).sha256 == sha256:
        return str(path.relative_to(path.parents[2]))
    return f"{split}-seed{seed} ({NOT_COMMITTED}; sha256 {sha256[:12]})"


def _newest_counted(group: pd.DataFrame, has_scores: Callable[[str], bool]) -> tuple[pd.Series | None, int]:
    """The newest run of one (row, seed) that counts, and how many newer runs were passed over. A failure
    or a skip counts, and a finished run whose per-perturbation scores were stored (asked only of the runs
    that would take a cell)."""
    for passed, (_, run) in enumerate(group.iloc[::-1].iterrows()):
        if run["status"] in ("FAILED", "SKIPPED") or has_scores(run["run_id"]):
            return run, passed
    return None, len(group)


def boards(rows: pd.DataFrame, dataset: str, has_scores: Callable[[str], bool], split: str | None = None,
           latest: bool = False) -> list[Board]:
    """The boards of a dataset's tracked runs (one per split, or only ``split``); none without runs.
    ``rows``: the dataset's runs as ``tracking.runs`` gives them; ``has_scores(run_id)``: whether a run
    stored its per-perturbation scores."""
    runs = _runs(rows)
    if split is not None:
        runs = runs[runs["split"] == split]
    if runs.empty:
        return []
    ended = runs["status"] != UNFINISHED
    unfinished = runs[~ended].groupby("split").size()
    runs = runs[ended]
    total = len(runs)
    runs = select(runs, dataset, latest)
    left_out = total - len(runs)
    runs = runs.assign(variant=_parameters(runs))
    values = _values(rows)
    cards = all_cards()
    result = []
    for split_name, split_runs in runs.groupby("split", sort=True):
        board_rows: dict[tuple[str, str, str], Row] = {}
        superseded, ignored = 0, int(unfinished.get(split_name, 0))
        keys = ["model", "preset", "variant", "seed"]
        for (model, preset, variant, seed), group in split_runs.groupby(keys, sort=False):
            run, passed = _newest_counted(group, has_scores)
            ignored += passed
            if run is None:
                continue
            superseded += len(group) - passed - 1
            row = board_rows.setdefault((model, preset, variant),
                                        Row(model, preset, _is_baseline(run, cards.get(model)), variant))
            if run["status"] == "SKIPPED":
                row.skipped = run["error"] or "skipped"
            elif run["status"] == "FAILED":
                row.failed[int(seed)] = run["error"] or "failed"
            else:
                row.runs[int(seed)] = Run(run["run_id"], run["split_sha256"], run["git_commit"] or "unknown",
                                          run["params"], values.get(run["run_id"], {}))
        shas = split_runs.groupby("seed")["split_sha256"].first()
        result.append(Board(
            dataset=dataset,
            split=split_name,
            dataset_sha256=str(split_runs["dataset_sha256"].iloc[0]),
            metrics_version=str(split_runs["metrics_version"].iloc[0]),
            split_files={int(seed): _split_file(dataset, split_name, int(seed), sha)
                         for seed, sha in sorted(shas.items())},
            commits=sorted({run.git_commit for row in board_rows.values() for run in row.runs.values()}),
            rows=sorted(board_rows.values(),
                        key=lambda r: (not r.is_ceiling, not r.baseline, r.model, r.preset, r.variant)),
            left_out=left_out,
            superseded=superseded,
            ignored=ignored,
        ))
    return result


def _is_baseline(run, card) -> bool:
    """Whether the run's card was a baseline when it ran (its tag ``baseline``); for a run logged before runs
    recorded it, whether the card on disk is."""
    recorded = run.get("baseline")
    if recorded in ("true", "false"):
        return recorded == "true"
    return bool(card and card.baseline)


def best_baseline(means: Mapping[Key, float], metric: str, seeds: Mapping[Key, int] | None = None) -> Key | None:
    """Of the baselines' means on ``all/<metric>``, the key of the best among those with the most seeds (the
    first of equals); None when none is finite. A baseline run on one seed is never preferred to one run on
    five, however it scores. The rule of the reference row, on a board and in ``bench run``'s summary alike."""
    finite = {key: mean for key, mean in means.items() if np.isfinite(mean)}
    if seeds is not None and finite:
        most = max(seeds[key] for key in finite)
        finite = {key: mean for key, mean in finite.items() if seeds[key] == most}
    return max(finite, key=lambda key: METRICS[metric].sign * finite[key]) if finite else None


def default_reference(board: Board, metric: str) -> Row | None:
    """The best baseline on ``all/<metric>`` of those with the most seeds (None when no baseline has a value)."""
    baselines = {i: row for i, row in enumerate(board.rows) if row.baseline}
    best = best_baseline({i: row.value("all", metric).mean for i, row in baselines.items()}, metric,
                         {i: len(row.runs) for i, row in baselines.items()})
    return None if best is None else board.rows[best]


class PerPerturbation:
    """Per-perturbation scores of a board's runs, read once per run with ``read(run_id)`` (None where a run
    has none) and kept."""

    def __init__(self, read: Callable[[str], pd.DataFrame | None]) -> None:
        self._read = read
        self._tables: dict[str, pd.DataFrame | None] = {}

    def of(self, run: Run) -> pd.DataFrame | None:
        return self.by_id(run.run_id)

    def by_id(self, run_id: str) -> pd.DataFrame | None:
        if run_id not in self._tables:
            self._tables[run_id] = self._read(run_id)
        return self._tables[run_id]


def _test_tables(board: Board, scores: PerPerturbation) -> dict[int, pd.DataFrame]:
    """Per split seed, the test perturbations (cell type, condition, subgroup) of the seed's first model row
    with scores (the ceiling leaves out conditions it cannot halve)."""
    per_seed = {}
    for row in board.rows:
        for seed, run in row.runs.items():
            table = None if row.is_ceiling or seed in per_seed else scores.of(run)
            if table is not None:
                per_seed[seed] = table.drop_duplicates(["cell_type", "condition"])
    return per_seed


def perturbation_counts(board: Board, scores: PerPerturbation) -> dict[str, tuple[int, int]]:
    """Per test subgroup and ``all``, the fewest and the most test perturbations of one split seed."""
    per_seed = _test_tables(board, scores)
    subgroups = {s for table in per_seed.values() for s in table["subgroup"]}
    counts = {"all": [len(table) for table in per_seed.values()]}
    counts |= {s: [int((table["subgroup"] == s).sum()) for table in per_seed.values()] for s in sorted(subgroups)}
    return {subgroup: (min(n), max(n)) for subgroup, n in counts.items() if n}


@dataclass(frozen=True)
class Replicates:
    """How many replicates a board's seeds are: distinct test perturbations per subgroup over all seeds,
    and distinct test sets among the seeds (``seen`` holds out new cells on every seed: all distinct)."""

    distinct: dict[str, int]
    sets: int
    seeds: int


def replicates(board: Board, scores: PerPerturbation) -> Replicates:
    per_seed = _test_tables(board, scores)
    tested = pd.concat(per_seed.values()) if per_seed else pd.DataFrame(columns=["cell_type", "condition", "subgroup"])
    tested = tested.drop_duplicates(["cell_type", "condition"])
    distinct = {"all": len(tested)} | {s: int(n) for s, n in tested.groupby("subgroup").size().items()}
    keys = {frozenset(zip(table["cell_type"], table["condition"])) for table in per_seed.values()}
    sets = len(per_seed) if board.split == "seen" else len(keys)
    return Replicates(distinct, sets, len(per_seed))


def paired_tables(tables: list[tuple[pd.DataFrame | None, pd.DataFrame | None]]) -> list[tuple[pd.DataFrame, set[str]]]:
    """Per seed both scored, the row's and the reference's per-perturbation tables side by side (the
    reference's columns ``<metric>_ref``), paired per (cell type, condition), with the columns both have:
    merged once for every metric and subgroup (``paired_from``)."""
    keys = ["cell_type", "condition", "subgroup"]
    return [(mine.merge(theirs, on=keys, suffixes=("", "_ref")), set(mine.columns) & set(theirs.columns))
            for mine, theirs in tables if mine is not None and theirs is not None]


def paired_from(paired: list[tuple[pd.DataFrame, set[str]]], subgroup: str, metric: str) -> stats.PairedDifference:
    """Bootstrap CI of (row − reference) over perturbations, from ``paired_tables``: a perturbation's values
    are averaged over the seeds that scored both, and the bootstrap resamples perturbations."""
    keys = ["cell_type", "condition", "subgroup"]
    frames = [frame[keys + [metric, f"{metric}_ref"]] for frame, both in paired if metric in both]
    if not frames:
        return stats.PairedDifference(np.nan, np.nan, np.nan, 0)
    pairs = pd.concat(frames)
    if subgroup != "all":
        pairs = pairs[pairs["subgroup"] == subgroup]
    pairs = pairs.dropna(subset=[metric, f"{metric}_ref"]).groupby(["cell_type", "condition"])[[metric, f"{metric}_ref"]].mean()
    return stats.paired_bootstrap(pairs[metric].to_numpy(), pairs[f"{metric}_ref"].to_numpy())


def paired_over_seeds(tables: list[tuple[pd.DataFrame | None, pd.DataFrame | None]], subgroup: str,
                      metric: str) -> stats.PairedDifference:
    """Bootstrap CI of (row − reference) over perturbations from per-perturbation tables, one pair (row's,
    reference's) per seed both scored (``paired_tables``, ``paired_from``)."""
    return paired_from(paired_tables(tables), subgroup, metric)


def table_cells(board: Board, metrics: list[str], reference: Row | None, scores: PerPerturbation) -> pd.DataFrame:
    """Long table: one line per (row, subgroup, metric) with mean, sd, seeds, the difference to the
    reference with its CI, and whether the cell is the best of its column (among the rows with the most seeds)."""
    lines, paired = [], {}  # by row: its runs' tables paired with the reference's, merged once

    def difference(row: Row, subgroup: str, metric: str) -> stats.PairedDifference:
        if id(row) not in paired:
            seeds = sorted(set(row.runs) & set(reference.runs))
            paired[id(row)] = paired_tables([(scores.of(row.runs[s]), scores.of(reference.runs[s])) for s in seeds])
        return paired_from(paired[id(row)], subgroup, metric)

    for metric in metrics:
        for subgroup in board.subgroups:
            for row in board.rows:
                summary = row.value(subgroup, metric)
                diff = stats.PairedDifference(np.nan, np.nan, np.nan, 0)
                if reference is not None and row is not reference and summary.n:
                    diff = difference(row, subgroup, metric)
                lines.append([board.split, row.model, row.preset, row.label, row.baseline, metric, subgroup,
                              summary.mean, summary.sd, summary.n, len(row.failed),
                              reference.label if reference else "", diff.mean, diff.low, diff.high, diff.detectable,
                              diff.n])
    table = pd.DataFrame(lines, columns=CELL_COLUMNS)
    table["best"] = False
    # the best model, never the data's own ceiling, and of the rows run on the most seeds: a value from fewer
    # seeds is not as sure, so it is never the one a reader is pointed to
    models = [row for row in board.rows if not row.is_ceiling]
    most = max((len(row.runs) for row in models), default=0)
    models = table[table["label"].isin([row.label for row in models if len(row.runs) == most])]
    for _, column in models.groupby(["metric", "subgroup"]):
        finite = column[np.isfinite(column["mean"])]
        if len(finite):
            signed = METRICS[finite["metric"].iloc[0]].sign * finite["mean"]
            table.loc[finite.index[signed == signed.max()], "best"] = True
    return table
