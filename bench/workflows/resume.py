"""``--resume``: the runs of a grid that the tracking store does not hold yet.

A grid cell is done when the store holds a FINISHED (or SKIPPED) run of the same model, preset,
parameters and seed on the same dataset file, split file, card version and metrics version; anything
else (no run, a FAILED run, a run killed before it ended, a run of an older card or split) runs again.
"""

from __future__ import annotations

from bench.evaluation.metric_catalog import METRICS_VERSION
from bench.workflows import runner, tracking
from bench.workflows.runner import RunSpec

DONE = ("FINISHED", "SKIPPED")


def _cell(model, preset, seed, split, card, split_hash, dataset, metrics_version, params) -> tuple:
    return (model, preset or "default", int(seed), split, card, split_hash, dataset, metrics_version,
            frozenset((key, str(value)) for key, value in params.items()))


def missing(specs: list[RunSpec], dataset) -> list[RunSpec]:
    """The specs (on ``dataset``, loaded) without a finished run in the tracking store, in their order."""
    if not specs:
        return []
    runs = tracking.runs(dataset.name).drop_duplicates("run_id")
    runs = runs[runs["status"].isin(DONE) & ~runs["sweep_trial"].astype(bool)]
    have = {_cell(r.model, r.preset, r.seed, r.split, r.card_sha256, r.split_sha256, r.dataset_sha256,
                  r.metrics_version, r.params) for r in runs.itertuples(index=False)}
    wanted = []
    for spec in specs:
        result, _ = runner.new_result(spec, dataset)
        if _cell(result.model, result.preset, result.seed, result.split, result.card_hash, result.split_hash,
                 result.dataset_sha256, METRICS_VERSION, result.params) not in have:
            wanted.append(spec)
    return wanted
