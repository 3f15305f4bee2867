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
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.errors import BenchError
from bench.core.registry import all_cards, preset_label
from bench.evaluation import ceiling, splits, stats
from bench.evaluation.metrics import METRICS, is_test_metric
from bench.workflows import tracking

PROVENANCE = {"tags.dataset_sha256": "dataset checksums", "tags.metrics_version": "metric versions"}
ENDED = ("FINISHED", "FAILED")  # MLflow's states of a run whose logging ended (RUNNING, SCHEDULED, KILLED did not)
SCORES = "per_perturbation.csv"


@dataclass
class Row:
    """One model card with one preset and one set of parameters on one board: its runs by seed."""

    model: str
    preset: str
    baseline: bool
    variant: str = ""
    runs: dict[int, pd.Series] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: str = ""

    @property
    def is_ceiling(self) -> bool:
        return self.model == ceiling.MODEL and self.preset == ceiling.PRESET

    @property
    def label(self) -> str:
        label = ceiling.LABEL if self.is_ceiling else preset_label(self.model, self.preset)
        return f"{label} ({self.variant})" if self.variant else label

    @property
    def samples(self) -> int:
        """How many values a cell holding every run averages: one per seed, one per seed and halving for
        a data ceiling."""
        if not self.is_ceiling:
            return len(self.runs)
        return sum(int(run.get("params.halvings", ceiling.HALVINGS)) for run in self.runs.values())

    def value(self, subgroup: str, metric: str) -> stats.SeedSummary:
        """Mean ± sd over seeds; for a data ceiling over seeds and halvings."""
        if not self.is_ceiling:
            return stats.over_seeds([run.get(f"metrics.{subgroup}/{metric}", np.nan) for run in self.runs.values()])
        return stats.over_seeds([run.get(f"metrics.{ceiling.HALVING_PREFIX}{halving}/{subgroup}/{metric}", np.nan)
                                 for run in self.runs.values()
                                 for halving in range(int(run.get("params.halvings", ceiling.HALVINGS)))])


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

    @property
    def subgroups(self) -> list[str]:
        found = {
            key.removeprefix("metrics.").split("/")[0]
            for row in self.rows
            for run in row.runs.values()
            for key, value in run.items()
            if key.startswith("metrics.") and is_test_metric(key.removeprefix("metrics.")) and np.isfinite(value)
        }
        return ["all", *sorted(found - {"all"})]

    def has(self, metric: str) -> bool:
        """Whether any run of the board has a value of ``all/<metric>``."""
        key = f"metrics.all/{metric}"
        return any(np.isfinite(run.get(key, np.nan)) for row in self.rows for run in row.runs.values())

    def row(self, label: str) -> Row:
        matches = [r for r in self.rows if label in (r.label, r.model)]
        if len(matches) != 1:
            choices = ", ".join(r.label for r in self.rows)
            what = "is ambiguous" if matches else "has no runs"
            raise BenchError(f"reference '{label}' {what} on {self.dataset}/{self.split}; choose one of: {choices}")
        return matches[0]


def _runs(dataset: str) -> pd.DataFrame:
    runs = tracking.search_runs(dataset)
    if runs.empty or "tags.model" not in runs:
        return pd.DataFrame()
    runs = runs[runs["tags.model"].notna()]
    if "tags.mlflow.parentRunId" in runs:
        runs = runs[runs["tags.mlflow.parentRunId"].isna()]
    return runs.sort_values("start_time").reset_index(drop=True)


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
    runs = _one_value(runs, "tags.split_sha256", ["tags.split", "tags.seed"], "split files",
                      f"{dataset}/{{}} seed {{}}", latest)
    return _one_value(runs, "tags.card_sha256", ["tags.model", "tags.preset"], "versions of the model card",
                      f"{dataset}: {{}} [{{}}]", latest)


def _parameters(runs: pd.DataFrame) -> pd.Series:
    """Per run, the parameters that differ between runs of its (model, preset), as ``key=value, …``;
    empty where all runs of a (model, preset) used the same parameters."""
    columns = [c for c in runs if c.startswith("params.")]
    variant = pd.Series("", index=runs.index)
    for _, group in runs.groupby(["tags.model", "tags.preset"], sort=False):
        values = group[columns].fillna("")
        varying = [c for c in columns if values[c].nunique() > 1]
        for index, line in values[varying].iterrows():
            variant[index] = ", ".join(f"{c.removeprefix('params.')}={line[c]}" for c in varying)
    return variant


def _split_file(dataset: str, split: str, seed: int, sha256: str) -> str:
    path = splits.frozen_path(dataset, split, seed, committed=True)
    if path.exists() and splits.read(path).sha256 == sha256:
        return str(path.relative_to(path.parents[2]))
    return f"{split}-seed{seed} (generated, not committed; sha256 {sha256[:12]})"


def _counts(run: pd.Series) -> bool:
    """Whether an ended run counts on a board: a failure or a skip, or a finished run whose
    per-perturbation scores were stored (listed only for the runs that would take a cell)."""
    if run["status"] == "FAILED" or run.get("tags.status") in ("FAILED", "SKIPPED"):
        return True
    return tracking.has_artifact(run["run_id"], SCORES)


def _newest_counted(group: pd.DataFrame) -> tuple[pd.Series | None, int]:
    """The newest run of one (row, seed) that counts, and how many newer runs were passed over."""
    for passed, (_, run) in enumerate(group.iloc[::-1].iterrows()):
        if _counts(run):
            return run, passed
    return None, len(group)


def boards(dataset: str, split: str | None = None, latest: bool = False) -> list[Board]:
    """The boards of a dataset's tracked runs (one per split, or only ``split``); none without runs."""
    runs = _runs(dataset)
    if split is not None and not runs.empty:
        runs = runs[runs["tags.split"] == split]
    if runs.empty:
        return []
    ended = runs["status"].isin(ENDED)
    unfinished = runs[~ended].groupby("tags.split").size()
    runs = runs[ended]
    total = len(runs)
    runs = select(runs, dataset, latest)
    left_out = total - len(runs)
    runs = runs.assign(variant=_parameters(runs))
    cards = all_cards()
    result = []
    for split_name, split_runs in runs.groupby("tags.split", sort=True):
        rows: dict[tuple[str, str], Row] = {}
        superseded, ignored = 0, int(unfinished.get(split_name, 0))
        keys = ["tags.model", "tags.preset", "variant", "tags.seed"]
        for (model, preset, variant, seed), group in split_runs.groupby(keys, sort=False):
            run, passed = _newest_counted(group)
            ignored += passed
            if run is None:
                continue
            superseded += len(group) - passed - 1
            card = cards.get(model)
            row = rows.setdefault((model, preset, variant), Row(model, preset, bool(card and card.baseline), variant))
            status = run.get("tags.status", "FINISHED")
            if status == "SKIPPED":
                row.skipped = str(run.get("tags.error", "skipped"))
            elif status == "FAILED" or run["status"] == "FAILED":
                row.failed[int(seed)] = str(run.get("tags.error", "failed"))
            else:
                row.runs[int(seed)] = run
        kept = pd.DataFrame([r for row in rows.values() for r in row.runs.values()])
        shas = split_runs.groupby("tags.seed")["tags.split_sha256"].first()
        result.append(Board(
            dataset=dataset,
            split=split_name,
            dataset_sha256=str(split_runs["tags.dataset_sha256"].iloc[0]),
            metrics_version=str(split_runs["tags.metrics_version"].iloc[0]),
            split_files={int(seed): _split_file(dataset, split_name, int(seed), sha)
                         for seed, sha in sorted(shas.items(), key=lambda item: int(item[0]))},
            commits=sorted(set(kept["tags.git_commit"].fillna("unknown"))) if len(kept) else [],
            rows=sorted(rows.values(), key=lambda r: (not r.is_ceiling, not r.baseline, r.model, r.preset, r.variant)),
            left_out=left_out,
            superseded=superseded,
            ignored=ignored,
        ))
    return result


def default_reference(board: Board, metric: str) -> Row | None:
    """The best baseline on ``all/<metric>`` (None when no baseline has a value)."""
    best = None
    for row in board.rows:
        value = row.value("all", metric).mean
        if row.baseline and np.isfinite(value) and (best is None or METRICS[metric].sign * (value - best[0]) > 0):
            best = (value, row)
    return best[1] if best else None


class PerPerturbation:
    """Per-perturbation scores of a board's runs, read from their artifacts once and kept."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="bench-leaderboard-")
        self._tables: dict[str, pd.DataFrame | None] = {}

    def of(self, run: pd.Series) -> pd.DataFrame | None:
        run_id = run["run_id"]
        if run_id not in self._tables:
            path = tracking.run_artifact(run_id, "per_perturbation.csv", Path(self._folder.name) / run_id)
            self._tables[run_id] = pd.read_csv(path) if path else None
        return self._tables[run_id]


def perturbation_counts(board: Board, scores: PerPerturbation) -> dict[str, tuple[int, int]]:
    """Per test subgroup and ``all``, the fewest and the most test perturbations (cell type, condition)
    of one split seed, from the per-perturbation scores of each seed's first model row (the ceiling
    leaves out conditions it cannot halve)."""
    per_seed = {}
    for row in board.rows:
        for seed, run in row.runs.items():
            table = None if row.is_ceiling or seed in per_seed else scores.of(run)
            if table is not None:
                per_seed[seed] = table.drop_duplicates(["cell_type", "condition"])
    subgroups = {s for table in per_seed.values() for s in table["subgroup"]}
    counts = {"all": [len(table) for table in per_seed.values()]}
    counts |= {s: [int((table["subgroup"] == s).sum()) for table in per_seed.values()] for s in sorted(subgroups)}
    return {subgroup: (min(n), max(n)) for subgroup, n in counts.items() if n}


def paired_difference(row: Row, reference: Row, subgroup: str, metric: str, scores: PerPerturbation) -> stats.PairedDifference:
    """``paired_over_seeds`` of a board's two rows, on the seeds both ran."""
    seeds = sorted(set(row.runs) & set(reference.runs))
    return paired_over_seeds([(scores.of(row.runs[s]), scores.of(reference.runs[s])) for s in seeds], subgroup, metric)


def paired_over_seeds(tables: list[tuple[pd.DataFrame | None, pd.DataFrame | None]], subgroup: str,
                      metric: str) -> stats.PairedDifference:
    """Bootstrap CI of (row − reference) over perturbations from per-perturbation tables, one pair (row's,
    reference's) per seed both scored: paired per (cell type, condition); a perturbation's values are
    averaged over those seeds, and the bootstrap resamples perturbations."""
    frames = []
    for mine, theirs in tables:
        if mine is None or theirs is None or metric not in mine or metric not in theirs:
            continue
        keys = ["cell_type", "condition", "subgroup"]
        frames.append(mine[keys + [metric]].merge(theirs[keys + [metric]], on=keys, suffixes=("", "_ref")))
    if not frames:
        return stats.PairedDifference(np.nan, np.nan, np.nan, 0)
    pairs = pd.concat(frames)
    if subgroup != "all":
        pairs = pairs[pairs["subgroup"] == subgroup]
    pairs = pairs.dropna(subset=[metric, f"{metric}_ref"]).groupby(["cell_type", "condition"])[[metric, f"{metric}_ref"]].mean()
    return stats.paired_bootstrap(pairs[metric].to_numpy(), pairs[f"{metric}_ref"].to_numpy())


def cells(board: Board, metrics: list[str], reference: Row | None, scores: PerPerturbation) -> pd.DataFrame:
    """Long table: one line per (row, subgroup, metric) with mean, sd, seeds, the difference to the
    reference with its CI, and whether the cell is the best of its column."""
    lines = []
    for metric in metrics:
        for subgroup in board.subgroups:
            for row in board.rows:
                summary = row.value(subgroup, metric)
                diff = stats.PairedDifference(np.nan, np.nan, np.nan, 0)
                if reference is not None and row is not reference and summary.n:
                    diff = paired_difference(row, reference, subgroup, metric, scores)
                lines.append({
                    "split": board.split, "model": row.model, "preset": row.preset, "label": row.label,
                    "baseline": row.baseline, "metric": metric, "subgroup": subgroup,
                    "mean": summary.mean, "sd": summary.sd, "n_seeds": summary.n,
                    "n_failed": len(row.failed), "reference": reference.label if reference else "",
                    "diff": diff.mean, "ci_low": diff.low, "ci_high": diff.high, "n_perturbations": diff.n,
                })
    table = pd.DataFrame(lines)
    table["best"] = False
    models = table[table["label"] != ceiling.LABEL]  # the best model, never the data's own ceiling
    for _, column in models.groupby(["metric", "subgroup"]):
        finite = column[np.isfinite(column["mean"])]
        if len(finite):
            signed = METRICS[finite["metric"].iloc[0]].sign * finite["mean"]
            table.loc[finite.index[signed == signed.max()], "best"] = True
    return table
