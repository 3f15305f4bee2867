"""Regression checks against a reference file (``bench check``).

The reference is a CSV with one line per (configuration, metric, subgroup)::

    dataset,split,model,preset,seeds,metric,subgroup,mean,sd,n_seeds,tolerance
    norman_subset,simulation,linear,default,1-2,pearson_delta_de20,all,0.2714,0.0413,2,0.0292

A configuration (dataset, split, model, preset, seeds) is re-run once per check; the mean of the metric
over its seeds must not be worse than the reference mean by more than the tolerance. The tolerance is
the standard error of the reference mean over seeds (sd/√n): the seed spread says how much the metric
moves with the split, so a drift beyond one standard error on the *same* seeds is not noise. It is at
least 1% of the reference value and at least 0.001, so a deterministic metric is not held to rounding.
A model that fails any seed is a regression too. ``update`` re-runs and rewrites the values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench import stats
from bench.api import RunResult
from bench.errors import BenchError
from bench.metrics import METRICS
from bench.registry import preset_label
from bench.seeds import parse_seeds

CONFIG = ["dataset", "split", "model", "preset", "seeds"]
COLUMNS = [*CONFIG, "metric", "subgroup", "mean", "sd", "n_seeds", "tolerance"]


@dataclass(frozen=True)
class Config:
    dataset: str
    split: str
    model: str
    preset: str
    seeds: str

    def __str__(self) -> str:
        return f"{preset_label(self.model, self.preset)} on {self.dataset}/{self.split} seeds {self.seeds}"


def tolerance(mean: float, sd: float, n: int) -> float:
    return max(sd / math.sqrt(n) if n > 1 else 0.0, 0.01 * abs(mean), 0.001)


def read_reference(path: Path, require_values: bool = True) -> pd.DataFrame:
    """The reference lines; configuration columns are required, values unless ``require_values``."""
    try:
        table = pd.read_csv(path, dtype={c: str for c in [*CONFIG, "metric", "subgroup"]}, keep_default_na=False)
    except FileNotFoundError:
        raise BenchError(f"no reference file {path}; write one (see `bench check --help`) or pass --reference") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read reference file {path}: {exc}".splitlines()[0]) from None
    missing = [c for c in [*CONFIG, "metric", "subgroup"] if c not in table]
    if missing:
        raise BenchError(f"{path} lacks column(s) {', '.join(missing)}; its header must be {','.join(COLUMNS)}")
    if table.empty:
        raise BenchError(f"{path} names no configuration; add lines {','.join(COLUMNS)}")
    for number, line in enumerate(table.itertuples(index=False), start=2):
        empty = [c for c in [*CONFIG, "metric", "subgroup"] if not str(getattr(line, c)).strip()]
        if empty:
            raise BenchError(f"{path} line {number}: empty {', '.join(empty)}")
        if line.metric not in METRICS:
            raise BenchError(f"{path} line {number}: unknown metric '{line.metric}'; see `bench list metrics`")
        try:
            parse_seeds(line.seeds)
        except BenchError as exc:
            raise BenchError(f"{path} line {number}: {exc}") from None
    for column in ("mean", "sd", "n_seeds", "tolerance"):
        values = pd.to_numeric(table[column], errors="coerce") if column in table else pd.Series(float("nan"), index=table.index)
        if require_values and values.isna().any():
            number = int(values.isna().to_numpy().nonzero()[0][0]) + 2
            raise BenchError(f"{path} line {number}: no reference {column}; run `bench check --update` to fill it in")
        table[column] = values
    return table[COLUMNS]


def configs(reference: pd.DataFrame) -> list[Config]:
    return [Config(*key) for key in dict.fromkeys(reference[CONFIG].itertuples(index=False, name=None))]


def _config_of(line) -> Config:
    return Config(*(getattr(line, c) for c in CONFIG))


def _summary(results: list[RunResult], metric: str, subgroup: str) -> stats.SeedSummary:
    return stats.over_seeds([r.metrics.get(f"{subgroup}/{metric}", float("nan")) for r in results])


def _failure(results: list[RunResult]) -> str:
    failed = [r for r in results if not r.ok]
    return "; ".join(f"seed {r.seed} {r.status.lower()}: {r.error}" for r in failed)


def compare(reference: pd.DataFrame, results: dict[Config, list[RunResult]]) -> pd.DataFrame:
    """Each reference line with the value now and a verdict: ok, improved, regressed, failed or missing."""
    lines = []
    for line in reference.itertuples(index=False):
        runs = results[_config_of(line)]
        now = _summary(runs, line.metric, line.subgroup)
        change = now.mean - line.mean
        gain = METRICS[line.metric].sign * change
        failure = _failure(runs)
        if failure:
            verdict = "failed"
        elif now.n < len(runs):
            verdict, failure = "missing", f"{line.subgroup}/{line.metric} has no value on {len(runs) - now.n} seed(s)"
        elif gain < -line.tolerance:
            verdict = "regressed"
        elif gain > line.tolerance:
            verdict = "improved"
        else:
            verdict = "ok"
        lines.append({**line._asdict(), "now": now.mean, "change": change, "verdict": verdict, "detail": failure})
    return pd.DataFrame(lines)


def describe(line) -> str:
    """One line of ``compare``'s table as text, e.g. for a CI log."""
    text = (f"{line.verdict.upper()}: {_config_of(line)}: {line.subgroup}/{line.metric} {line.mean:.4f} -> {line.now:.4f} "
            f"({line.change:+.4f}, tolerance {line.tolerance:.4f})")
    return text + (f": {line.detail}" if line.detail else "")


def updated(reference: pd.DataFrame, results: dict[Config, list[RunResult]]) -> pd.DataFrame:
    """The reference with every line's values replaced by the new runs' (which must all succeed)."""
    table = reference.copy()
    for index, line in enumerate(reference.itertuples(index=False)):
        config = _config_of(line)
        runs = results[config]
        failure = _failure(runs)
        if failure:
            raise BenchError(f"cannot update the reference: {config} {failure}")
        now = _summary(runs, line.metric, line.subgroup)
        if now.n < len(runs):
            raise BenchError(f"cannot update the reference: {config} has no {line.subgroup}/{line.metric} on some seeds")
        table.loc[table.index[index], ["mean", "sd", "n_seeds", "tolerance"]] = [
            round(now.mean, 6), round(now.sd, 6), now.n, round(tolerance(now.mean, now.sd, now.n), 6)]
    table["n_seeds"] = table["n_seeds"].astype(int)
    return table


def rerun(
    reference: pd.DataFrame, device: str, on_run: Callable[[Config, int], None], track: bool = False
) -> dict[Config, list[RunResult]]:
    """Run every configuration of the reference on every one of its seeds (datasets loaded once)."""
    from bench import registry, runner, tracking
    from bench.data.datasets import load_dataset
    from bench.knowledge import StoreGeneKnowledge

    todo = configs(reference)
    cards = {}
    for config in todo:  # bad names and presets fail before anything runs
        card = registry.find_card(config.model)
        cards[config] = (card, registry.resolve_params(card, config.preset, ()))
    knowledge = StoreGeneKnowledge()
    prepared: dict[str, runner.PreparedDataset] = {}
    results = {}
    for config in todo:
        if config.dataset not in prepared:
            prepared[config.dataset] = runner.PreparedDataset.of(load_dataset(config.dataset))
        card, params = cards[config]
        results[config] = []
        for seed in parse_seeds(config.seeds):
            on_run(config, seed)
            result = runner.run(card, params, prepared[config.dataset], config.split, seed, device, knowledge,
                                preset=config.preset)
            if track:
                tracking.log_run(result)
            results[config].append(result)
    return results
