"""``bench export`` and ``bench score``: benchmark a model without writing an adapter.

Export a frozen split's cells, predict its test conditions anywhere, and score the predictions file as
``bench run`` scores a card's: the same split, DE genes and metrics, tracked as a run of an external
model (preset ``external``, the file's sha256 in tag ``predictions_sha256``) that the leaderboard
compares with every card.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import HEADLINE, console, load, log_ceilings, print_closing_table
from bench.core.errors import BenchError
from bench.core.progress import busy
from bench.core.redaction import redact

EXTERNAL = "external"

DatasetOption = Annotated[str, typer.Option("--dataset", "-d", help="Dataset name or .h5ad path.")]
SplitOption = Annotated[str, typer.Option("--split", "-s", help="Split setting (see `bench list splits`).")]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Split seed.")]


def _split(dataset: str, split: str, seed: int, counts: bool = False):
    from bench.evaluation import splits

    splits.check_name(split)
    loaded = load(dataset, None, None, None, counts)
    frozen, _ = splits.obtain(loaded.adata, loaded.name, loaded.sha256, split, seed)
    return loaded, frozen, splits.apply(frozen, loaded.adata)


def export(
    dataset: DatasetOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder to write.")],
    split: SplitOption = "simulation",
    seed: SeedOption = 1,
) -> None:
    """Write a frozen split's training, validation and query-control cells and the conditions to predict."""
    from bench.workflows import external

    _, frozen, data = _split(dataset, split, seed, counts=True)
    written = external.export(frozen, data, out)
    console.print(f"wrote {out}: " + ", ".join(p.name for p in written), markup=False, highlight=False)
    console.print(f"predict the {len(external.test_conditions(data))} conditions of {external.CONDITIONS}, then "
                  f"`bench score --dataset {dataset} --split {split} --seed {seed} --predictions FILE.h5ad`",
                  markup=False, highlight=False)


def score(
    dataset: DatasetOption,
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help=".h5ad of predicted means or cells.")],
    split: SplitOption = "simulation",
    seed: SeedOption = 1,
    name: Annotated[str, typer.Option("--name", "-n", help="Model name for the tracked run.")] = "mymodel",
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the run to MLflow.")] = True,
) -> None:
    """Score a predictions file on a frozen split exactly as `bench run` scores a model card."""
    from bench.core import numeric_env, registry
    from bench.core.api import RunResult, now_ms
    from bench.evaluation import ceiling, metrics, scoring
    from bench.workflows import external, run_environment, runner, tracking

    if name in registry.all_cards() or name == ceiling.MODEL:
        what = "the data ceiling's" if name == ceiling.MODEL else "a model card's"
        raise BenchError(f"--name '{name}' is {what} name; name the external model differently")
    if not name or "/" in name:
        raise BenchError(f"--name '{name}' must be a non-empty name without '/'")
    if track:
        tracking.check_store()
    start, started_ms = time.perf_counter(), now_ms()
    loaded, frozen, data = _split(dataset, split, seed)
    wanted = external.test_conditions(data)
    means, cells = external.read_predictions(predictions, wanted, list(data.train.var_names),
                                             f"{loaded.name}/{split} seed {seed}")
    with busy(console, f"ranking DE genes of {loaded.name} (cached after the first run)"):
        prepared = runner.PreparedDataset.of(loaded)
    table = scoring.score_part(means, data, "test", prepared, cells)
    result = RunResult(model=name, params={}, card_hash=EXTERNAL, dataset=prepared.name,
                       dataset_sha256=prepared.sha256, split=split, split_hash=frozen.sha256, seed=seed,
                       device=EXTERNAL, per_perturbation=table, metrics=metrics.aggregate(table),
                       predictions=means, split_json=frozen.to_json(), preset=EXTERNAL,
                       numeric=numeric_env.describe(), environment=run_environment.describe(EXTERNAL),
                       started_ms=started_ms)
    runner.keep_for_files(result, data, cells)
    result.wall_time_s, result.ended_ms = time.perf_counter() - start, now_ms()
    print_closing_table([result], HEADLINE.split(","), no_baseline=(
        f"no baseline here: `bench run --model additive,linear --dataset {prepared.name} --split {split} --seeds "
        f"{seed}` tracks two, and `bench leaderboard --dataset {prepared.name}` compares this run with them"))
    if track:
        tracking.log_run(result, extra_tags={"external": "true", "predictions_file": predictions.name,
                                             "predictions_sha256": external.sha256_of(predictions)})
        log_ceilings(prepared, split, [seed])
        console.print(f"tracked as {name} [{EXTERNAL}] in {redact(tracking.tracking_uri())}", markup=False,
                      highlight=False)
