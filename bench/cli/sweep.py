"""``bench sweep``: one Optuna worker tuning a model card on validation data (see ``bench.workflows.sweep``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from bench.cli.common import DEVICE
from bench.core.errors import BenchError
from bench.core.progress import Display, busy

console = Console()


def sweep(
    model: Annotated[str, typer.Option("--model", "-m", help="Model card to tune (its [search_space]).")],
    split: Annotated[str, typer.Option("--split", "-s", help="Split with validation conditions.")] = "simulation",
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: Norman).")] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 1,
    trials: Annotated[int, typer.Option(min=1, help="Trials the study should hold, all workers together.")] = 20,
    timeout: Annotated[float | None, typer.Option(help="Start no trial after this many seconds.")] = None,
    metric: Annotated[str, typer.Option(help="Validation metric to optimise.")] = "pearson_delta_de20",
    storage: Annotated[str | None, typer.Option(help="sqlite:///f.db, postgresql://… or journal:PATH.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: <model>@<dataset>-<split>-seed<k>).")] = None,
    device: DEVICE = "auto",
    preset: Annotated[str | None, typer.Option(help="Card preset the search starts from (e.g. fast).")] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log each trial to MLflow under the sweep.")] = True,
) -> None:
    """Tune a model's parameters on validation data with Optuna; start it on many machines to share one study."""
    from bench.cli.common import load
    from bench.core import devices, registry
    from bench.core import threads as thread_pools
    from bench.data.knowledge import StoreGeneKnowledge
    from bench.evaluation import metrics as metric_registry
    from bench.evaluation import splits
    from bench.workflows import runner, timings, tracking
    from bench.workflows import sweep as sweeps
    from bench.workflows.execution import execute

    card = registry.find_card(model)
    if not card.search_space:
        raise BenchError(f"model '{model}' has no [search_space] in its card; add one to sweep it")
    if timeout is not None and timeout <= 0:
        raise BenchError(f"--timeout {timeout:g} must be positive (seconds)")
    metric_registry.check_names([metric])
    splits.check_name(split)
    registry.build(card, registry.resolve_params(card, preset))
    storage = storage or sweeps.default_storage()
    sweeps.check_storage(storage)
    if track:
        tracking.check_store()
    thread_pools.limit(thread_pools.free_cores())
    loaded = load(dataset, None, None, None)
    spec = sweeps.SweepSpec(card, loaded.name, split, seed, trials, metric,
                            study or f"{card.name}@{loaded.name}-{split}-seed{seed}",
                            storage, devices.resolve(device), preset, timeout)
    optuna_study = sweeps.open_study(spec)
    expected = timings.announcement([card.name], preset, spec.device, loaded.name, loaded.adata.shape, trials, 1)
    if expected:
        console.print(expected.replace("run(s)", "trial(s)"), markup=False, highlight=False, soft_wrap=True)
    with busy(console, f"ranking DE genes of {loaded.name} (cached after the first run)"):
        prepared = runner.PreparedDataset.of(loaded)
    knowledge = StoreGeneKnowledge()
    parent = None
    if track:
        parent = tracking.SweepParent(spec.dataset, spec.study, sweeps.storage_identity(spec.storage),
                                      optuna_study.user_attrs["setup"])
        parent.run_id()

    def train(run, report):
        label = f"{card.name} trial {objective.started[-1]}"
        return execute([run], {prepared.name: prepared}, knowledge=knowledge, report=report, display=display,
                       label=lambda _: label)[0]

    def log(result, number):
        if parent is not None:
            tracking.log_run(result, parent.run_id(), {"sweep_study": spec.study, "sweep_trial": str(number)})

    console.print(f"study {spec.study} in {sweeps.redact(spec.storage)}: {spec.direction} val/{metric}, "
                  f"{trials} trials in total")
    objective = sweeps.objective_for(spec, optuna_study, train, log)
    with Display(console, trials) as display:
        ran = sweeps.work(spec, optuna_study, objective, lambda line: console.print(line, markup=False))
    if parent is not None:
        parent.fail_dead_trial_runs({trial.number for trial in sweeps.running(optuna_study)})
    path = sweeps.write_best_card(spec, optuna_study)
    if path is None:
        console.print(f"this worker ran {ran} trial(s); no trial of the study has completed yet")
        return
    best = optuna_study.best_trial
    console.print(f"this worker ran {ran} trial(s); best: trial {best.number}, val/{metric} {best.value:.4g}")
    console.print(f"wrote {path} (use it with: bench run --model {path.stem})", markup=False)

