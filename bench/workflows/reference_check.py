"""The reference check (``bench check``): re-run the configurations of a reference file and compare.

The reference is a CSV with one line per (configuration, metric, subgroup)::

    dataset,split,model,preset,seeds,metric,subgroup,mean,sd,n_seeds,tolerance,numeric_profile,recorded_on
    norman_subset,simulation,linear,default,1-2,pearson_delta_de20,all,0.2714,0.0413,2,0.0292,"x86-64-v3, 1 thread",AMD EPYC

A configuration (dataset, split, model, preset, seeds) is re-run once per check; the mean of the metric
over its seeds must not be worse than the reference mean by more than the tolerance. The tolerance is
the standard error of the reference mean over seeds (sd/√n): the seed spread says how much the metric
moves with the split, so a drift beyond one standard error on the *same* seeds is not noise. It is at
least 1% of the reference value and at least 0.001, so a deterministic metric is not held to rounding.
A model that fails any seed is a regression too. ``update`` re-runs and rewrites the values.

This module plans the runs (``run_specs``) and judges them; ``bench check`` executes them. Every run of a
check happens in a worker process under the pinned numeric profile of
``bench.core.numeric_env`` (the same kernels and one thread on any x86-64 CPU with AVX2), so the values do
not move with the machine: without it, early stopping turns rounding differences between CPUs into
score differences of 0.1. Each line records the profile and the CPU that recorded it. Every line is
validated (names, seeds, values, duplicates) before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.core import numeric_env
from bench.core.api import RunResult
from bench.core.did_you_mean import unknown
from bench.core.errors import BenchError
from bench.core.registry import preset_label
from bench.core.seeds import parse_seeds
from bench.evaluation import stats
from bench.evaluation.metric_catalog import METRICS
from bench.evaluation.split_rules import SUBGROUPS
from bench.workflows import runner

CONFIG = ["dataset", "split", "model", "preset", "seeds"]
NAMES = [*CONFIG, "metric", "subgroup"]
VALUES = ["mean", "sd", "n_seeds", "tolerance"]
PROVENANCE = ["numeric_profile", "recorded_on"]
COLUMNS = [*NAMES, *VALUES, *PROVENANCE]


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
    """The reference lines, each validated; values (and their numeric profile) are required unless
    ``require_values`` (``bench check --update`` fills them in)."""
    try:
        table = pd.read_csv(path, dtype={c: str for c in [*NAMES, *PROVENANCE]}, keep_default_na=False)
    except FileNotFoundError:
        raise BenchError(f"no reference file {path}; write one (see `bench check --help`) or pass --reference") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read reference file {path}: {exc}".splitlines()[0]) from None
    missing = [c for c in NAMES if c not in table]
    if missing:
        raise BenchError(f"{path} lacks column(s) {', '.join(missing)}; its header must be {','.join(COLUMNS)}")
    if table.empty:
        raise BenchError(f"{path} names no configuration; add lines {','.join(COLUMNS)}")
    for column in VALUES:
        table[column] = pd.to_numeric(table[column], errors="coerce") if column in table else float("nan")
    for column in PROVENANCE:
        table[column] = table[column] if column in table else ""
    for number, line in enumerate(table.itertuples(index=False), start=2):
        try:
            _check_line(line, require_values)
        except BenchError as exc:
            raise BenchError(f"{path} line {number}: {exc}") from None
    duplicated = table.duplicated(NAMES, keep="first")
    if duplicated.any():
        number = int(duplicated.to_numpy().nonzero()[0][0]) + 2
        raise BenchError(f"{path} line {number} repeats an earlier line's configuration, metric and subgroup; remove one")
    return table[COLUMNS]


def _check_line(line, require_values: bool) -> None:
    """Raise ``BenchError`` naming what is wrong with one reference line."""
    from bench.core import registry
    from bench.data.manifest import find_manifest
    from bench.evaluation import splits

    empty = [c for c in NAMES if not str(getattr(line, c)).strip()]
    if empty:
        raise BenchError(f"empty {', '.join(empty)}")
    find_manifest(line.dataset)
    splits.check_name(line.split)
    registry.check_preset(registry.find_card(line.model), line.preset)
    parse_seeds(line.seeds)
    if line.metric not in METRICS:
        raise BenchError(f"unknown metric '{line.metric}'; see `bench list metrics`")
    if line.subgroup not in ("all", *SUBGROUPS):
        raise BenchError(unknown("subgroup", line.subgroup, ["all", *SUBGROUPS]))
    values = {c: getattr(line, c) for c in VALUES}
    if require_values:
        for column, value in values.items():
            if not math.isfinite(value):
                raise BenchError(f"no reference {column}; run `bench check --update` to fill it in")
        if values["sd"] < 0 or values["tolerance"] < 0 or values["n_seeds"] < 1:
            raise BenchError("sd and tolerance must be non-negative and n_seeds at least 1")
        if line.numeric_profile != numeric_env.PROFILE_NAME:
            raise BenchError(f"its values were recorded under numeric profile '{line.numeric_profile}', but checks "
                             f"now run under '{numeric_env.PROFILE_NAME}'; run `bench check --update`")


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
        table.loc[table.index[index], VALUES] = [
            round(now.mean, 6), round(now.sd, 6), now.n, round(tolerance(now.mean, now.sd, now.n), 6)]
    table["n_seeds"] = table["n_seeds"].astype(int)
    table["numeric_profile"] = numeric_env.PROFILE_NAME
    table["recorded_on"] = numeric_env.cpu_model()
    return table


def prepared_datasets(reference: pd.DataFrame) -> dict:
    """Every dataset of the reference, loaded and its DE genes ranked, by name."""
    from bench.data.datasets import load_dataset

    return {name: runner.PreparedDataset.of(load_dataset(name, counts=False))
            for name in dict.fromkeys(c.dataset for c in configs(reference))}


def run_specs(reference: pd.DataFrame, device: str) -> list[runner.RunSpec]:
    """The runs the reference's configurations need, one per (model, preset, dataset, split, seed) in their
    order: one run serves every configuration that needs it."""
    from bench.core import registry

    specs: dict[tuple, runner.RunSpec] = {}
    for config in configs(reference):
        card = registry.find_card(config.model)
        params = registry.resolve_params(card, config.preset, ())
        for seed in parse_seeds(config.seeds):
            spec = runner.RunSpec(card, params, config.dataset, config.split, seed, config.preset, device)
            specs.setdefault(_key(config, seed), spec)
    return list(specs.values())


def by_config(reference: pd.DataFrame, results: list[RunResult]) -> dict[Config, list[RunResult]]:
    """The results of ``run_specs``' runs for each configuration of the reference, seed by seed."""
    by_key = {(r.model, r.preset, r.dataset, r.split, r.seed): r for r in results}
    return {config: [by_key[_key(config, seed)] for seed in parse_seeds(config.seeds)] for config in configs(reference)}


def _key(config: Config, seed: int) -> tuple:
    return config.model, config.preset, config.dataset, config.split, seed
