"""``bench sweep``: one Optuna worker tuning a model card on validation data (see ``bench.workflows.sweep``)."""

from __future__ import annotations

from typing import Annotated

import typer

from bench.cli.cluster import DETACH, EXECUTOR, SLURM, SLURM_PARALLEL, Cluster, close, submit
from bench.cli.common import DEVICE, console, load, prepare
from bench.core.errors import BenchError
from bench.core.progress import Display
from bench.core.redaction import redact


def sweep(
    model: Annotated[str, typer.Option("--model", "-m", help="Model card to tune (its [search_space]).")],
    split: Annotated[str, typer.Option("--split", "-s", help="Split with validation conditions.")] = "simulation",
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset (default: Norman).")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Split seed.")] = 1,
    trials: Annotated[int, typer.Option(min=1, help="Trials the study should hold, all workers together.")] = 20,
    timeout: Annotated[float | None, typer.Option(help="Start no trial after this many seconds.")] = None,
    metric: Annotated[str, typer.Option(help="Validation metric to optimise.")] = "pearson_delta_de20",
    storage: Annotated[str | None, typer.Option(help="sqlite:///f.db, postgresql://… or journal:PATH.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: <model>@<dataset>-<split>-seed<k>).")] = None,
    device: DEVICE = "auto",
    preset: Annotated[str | None, typer.Option(help="Card preset the search starts from (e.g. fast).")] = None,
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log each trial to MLflow under the sweep.")] = True,
    executor: EXECUTOR = "local",
    workers: Annotated[int, typer.Option(
        min=1, help="Sweep workers (with --executor slurm: one array task each).")] = 1,
    slurm: SLURM = None,
    slurm_parallel: SLURM_PARALLEL = None,
    detach: DETACH = False,
) -> None:
    """Tune a model's parameters on validation data with Optuna; start it on many machines to share one study."""
    from bench.core import devices, registry
    from bench.core import threads as thread_pools
    from bench.evaluation import metric_catalog
    from bench.evaluation import split_settings
    from bench.workflows import timings, tracking
    from bench.workflows import sweep as sweeps

    card = registry.find_card(model)
    if not card.search_space:
        raise BenchError(f"model '{model}' has no [search_space] in its card; add one to sweep it")
    if timeout is not None and timeout <= 0:
        raise BenchError(f"--timeout {timeout:g} must be positive (seconds)")
    metric_catalog.check_names([metric])
    split_settings.check_name(split)
    registry.build(card, registry.resolve_params(card, preset))
    cluster = Cluster(executor, slurm, slurm_parallel, detach)
    settings = cluster.settings()
    if workers > 1 and not cluster.on_slurm:
        raise BenchError("--workers is for --executor slurm; on this machine, start more `bench sweep` processes with "
                         "the same --storage and --study")
    storage = storage or sweeps.default_storage()
    sweeps.check_storage(storage)
    if track:
        tracking.check_store()
    busy = 0.0 if cluster.on_slurm else thread_pools.busy_cores()
    if not cluster.on_slurm:
        thread_pools.limit(thread_pools.free_cores(busy))
    loaded = load(dataset, None, None, None)
    spec = sweeps.SweepSpec(card, loaded.name, split, seed, trials, metric,
                            study or f"{card.name}@{loaded.name}-{split}-seed{seed}",
                            storage, device if cluster.on_slurm else devices.resolve(device), preset, timeout)
    optuna_study = sweeps.open_study(spec)
    console.print(f"study {spec.study} in {redact(spec.storage)}: {spec.direction} val/{metric}, "
                  f"{trials} trials in total")
    if cluster.on_slurm:
        _sweep_on_slurm(spec, loaded, dataset, workers, settings, track, detach)
        return
    slowdown = thread_pools.slowdown(busy, 1, thread_pools.free_cores(busy))
    expected = timings.announcement([card.name], preset, spec.device, loaded.name, loaded.adata.shape, trials, 1,
                                    slowdown=slowdown, busy=busy)
    if expected:
        console.print(expected.replace("run(s)", "trial(s)"), markup=False, highlight=False, soft_wrap=True)
    prepared = prepare(loaded, split, [seed])
    with Display(console, trials) as display:
        ran = sweeps.run_worker(spec, optuna_study, prepared, track=track, display=display,
                                say=lambda line: console.print(line, markup=False))
    close_sweep(spec, f"this worker ran {ran} trial(s)")


def _sweep_on_slurm(spec, loaded, dataset: str | None, workers: int, settings, track: bool, detach: bool) -> None:
    """``workers`` workers of the study as one Slurm job array; when they end, the best trial's card."""
    from bench.workflows import slurm_grid
    from bench.workflows.slurm import new_folder
    from bench.workflows.slurm_tasks import DatasetSource

    submission = slurm_grid.sweep(spec, DatasetSource.of(dataset, loaded.name), workers, new_folder(settings, "sweep"),
                                  track=track, threads=None)
    parameters = settings.submitit_parameters("bench-sweep", spec.device, None)
    outcomes = submit(submission, settings, parameters, dry_run=False, detach=detach, track=track)
    if outcomes is not None:
        close(submission, outcomes)


def close_sweep(spec, ran: str | None = None) -> None:
    """The end of a sweep: what ran (``ran``, else the study's complete trials), and the best trial of the
    study so far, written as a card."""
    import optuna

    from bench.workflows import sweep as sweeps

    study = sweeps.open_study(spec)
    path = sweeps.write_best_card(spec, study)
    if ran is None:
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        ran = f"the study holds {len(complete)} complete trial(s)"
    done = f"{ran}; "
    if path is None:
        console.print(f"{done}no trial of the study has completed yet")
        return
    best = study.best_trial
    console.print(f"{done}best: trial {best.number}, val/{spec.metric} {best.value:.4g}")
    console.print(f"wrote {path} (use it with: bench run --model {path.stem})", markup=False)
