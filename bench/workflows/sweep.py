"""Hyperparameter sweeps on validation data: Optuna studies shared by many workers through one storage.

A worker (``bench sweep``) joins the study named by storage URL and study name, creating it if it is
the first, and runs trials until the study holds ``trials`` of them (complete, pruned or running;
failed ones do not count) and none is running any more, or its ``timeout`` passes. A trial draws
parameters from the card's ``[search_space]`` on top of the card's defaults (and preset), trains on
the training cells, and is scored on the validation conditions only: the runner never predicts test
conditions in a sweep. The objective is ``val/<metric>`` in the metric's direction. Values the adapter
reports during training feed Optuna's median pruner. A model crash fails its trial with the message;
the study goes on, but a worker gives up after ``MAX_FAILED_IN_A_ROW`` failed trials in a row. Bad
input (an unknown parameter, an impossible split) stops the worker with its one-line error.

Storage: ``sqlite:///file.db`` (the default, ``sweeps.db`` in the working directory), any SQLAlchemy
URL such as ``postgresql://user@host/db``, or ``journal:PATH`` (Optuna's journal file on a shared
filesystem). Trials record a heartbeat (Optuna's for RDB storages, ``journal_heartbeat`` for journal
files), so a trial whose worker died is failed and retried by a worker with the same parameters once its
last heartbeat, or its start if it has none, is older than the grace period; a worker that finds the
budget taken waits while trials run, so a trial killed near the end of the sweep is retried too. Two
workers that ask for a trial at the same moment can overshoot the budget by one; the later trial then
ends as FAILED with the user attribute ``surplus`` before any training, and its worker goes back to
waiting. Trials are logged to MLflow under one parent run per study (``tracking.SweepParent``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from bench.core import atomic, paths, registry
from bench.core.api import RunResult, StopTraining
from bench.core.errors import BenchError
from bench.core.redaction import redact, remember
from bench.data.knowledge import StoreGeneKnowledge
from bench.evaluation.metric_catalog import METRICS
from bench.workflows import journal_heartbeat, tracking
from bench.workflows.execution import execute
from bench.workflows.runner import RunSpec

HEARTBEAT_S = "BENCH_SWEEP_HEARTBEAT_S"  # environment overrides of the heartbeat interval (20 s)
GRACE_S = "BENCH_SWEEP_GRACE_S"  # and of the silence after which a running trial counts as dead (60 s)
OPEN_ATTEMPTS = 5
MAX_FAILED_IN_A_ROW = 10
WAIT_S = 2  # how often a worker that waits for running trials looks at the study again
OPTUNA_TABLE = "studies"  # the first table Optuna creates, so a database being created has it already
COUNTED = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")


@dataclass
class SweepSpec:
    card: registry.ModelCard
    dataset: str
    split: str
    seed: int
    trials: int
    metric: str
    study: str
    storage: str
    device: str
    preset: str | None
    timeout: float | None = None

    @property
    def direction(self) -> str:
        return "maximize" if METRICS[self.metric].direction == "max" else "minimize"


def default_storage() -> str:
    return f"sqlite:///{Path.cwd() / 'sweeps.db'}"


def check_storage(url: str) -> None:
    """Refuse, before anything runs, a storage URL that names no database SQLAlchemy knows, and an SQLite
    storage that holds another application's tables (MLflow's ``mlflow.db`` is the likely mix-up):
    Optuna would create its own tables inside it before failing. Journal files pass. Bad heartbeat
    settings in the environment are refused first. Its password is hidden from then on (``redaction``)."""
    remember(url)
    heartbeat_s(), grace_s()
    fix = "point --storage at an Optuna database, e.g. sqlite:///sweeps.db"
    if is_journal(url):
        return
    try:
        make_url(url).get_dialect()
    except (ArgumentError, NoSuchModuleError):
        raise BenchError(f"--storage {redact(url)} is not a database URL SQLAlchemy knows; use sqlite:///sweeps.db, "
                         "postgresql://user@host/db or journal:/shared/sweep.log") from None
    tables = tracking.sqlite_tables(url, fix)
    if not tables or OPTUNA_TABLE in tables:
        return
    path = make_url(url).database
    if tracking.MLFLOW_TABLE in tables:
        raise BenchError(f"{path} is MLflow's tracking database, not an Optuna storage; {fix}")
    raise BenchError(f"{path} is not an Optuna storage (its tables: {', '.join(sorted(tables)[:6])}); {fix}")


def open_storage(url: str):
    import optuna

    check_storage(url)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            if is_journal(url):
                from optuna.storages.journal import JournalFileBackend

                return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat_s(), grace_period=grace_s(),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
        except Exception as exc:  # SQLAlchemy and driver errors have many types
            if attempt == OPEN_ATTEMPTS:
                reason = str(exc).splitlines()[0][:200]
                raise BenchError(f"cannot open sweep storage {redact(url)} ({reason}); use sqlite:///sweeps.db, "
                                 "postgresql://user@host/db or journal:/shared/sweep.log") from None
            time.sleep(0.5 * attempt)  # workers starting together race to create the schema


def heartbeat_s() -> int:
    return seconds(HEARTBEAT_S, 20)


def grace_s() -> int:
    return seconds(GRACE_S, 60)


def seconds(variable: str, default: int) -> int:
    """The positive whole number of seconds in environment variable ``variable``, else ``default``."""
    value = os.environ.get(variable, str(default))
    if not value.isdecimal() or int(value) < 1:
        raise BenchError(f"{variable}={value} is not a positive whole number of seconds; set it to one "
                         f"(default {default}) or unset it")
    return int(value)


def is_journal(url: str) -> bool:
    return url.startswith("journal:")


def open_study(spec: SweepSpec):
    """Create the study or join it; safe when several workers start at the same moment."""
    import optuna

    storage = open_storage(spec.storage)
    for _ in range(5):
        try:
            study = optuna.create_study(storage=storage, study_name=spec.study, direction=spec.direction,
                                        load_if_exists=True, pruner=optuna.pruners.MedianPruner(n_warmup_steps=1))
            break
        except optuna.exceptions.DuplicatedStudyError:
            time.sleep(0.2)
    else:
        raise BenchError(f"could not create or join study '{spec.study}'; try again")
    if study.direction.name.lower() != spec.direction:
        raise BenchError(f"study '{spec.study}' {study.direction.name.lower()}s, but --metric {spec.metric} is to "
                         f"{spec.direction}; choose another --study name")
    setup = {"model": spec.card.name, "dataset": spec.dataset, "split": spec.split, "seed": spec.seed,
             "metric": spec.metric, "preset": spec.preset or "default"}
    known = study.user_attrs.get("setup")
    if known is None:
        study.set_user_attr("setup", setup)
    elif known != setup:
        raise BenchError(f"study '{spec.study}' sweeps {json.dumps(known)}; give another --study name for this sweep")
    return study


def suggest(trial, space: dict) -> dict:
    """Parameters from a card's ``[search_space]``: int/float (``low``, ``high``, ``log``) or categorical."""
    params = {}
    for name, spec in sorted(space.items()):
        kind = spec.get("type")
        if kind == "int":
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "float":
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        else:
            raise BenchError(f"search space entry '{name}' has type {kind!r}; use int, float or categorical")
    return params


def running(study) -> list:
    """The study's RUNNING trials: alive, or dead and not yet failed (their heartbeat, or their start if they
    have none, is not older than the grace period yet)."""
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))


def fail_trials_without_heartbeat(study, grace: int) -> None:
    """Fail and retry, as ``optuna.storages.fail_stale_trials`` does stale ones, the RUNNING trials of an RDB
    storage without a heartbeat that started more than ``grace`` seconds ago: their worker died before the
    first heartbeat, and Optuna never counts such a trial as stale."""
    import optuna

    storage = study._storage
    old = [t._trial_id for t in running(study) if datetime.now() - t.datetime_start > timedelta(seconds=grace)]
    if not old:
        return
    # Optuna has no public way to tell whether a trial has a heartbeat: read its heartbeat table through the
    # RDBStorage behind the study's cache (private attributes and schema of Optuna 5.0)
    query = text("SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids")
    with storage._backend.engine.connect() as db:
        beating = set(db.execute(query.bindparams(bindparam("ids", expanding=True)), {"ids": old}).scalars())
    for trial_id in set(old) - beating:
        try:
            if storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                storage.get_heartbeat_stale_trial_callback()(study, copy.deepcopy(storage.get_trial(trial_id)))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first


def counted(study, below: int | None = None) -> int:
    """Trials that use the budget (complete, pruned, running, waiting), optionally only those numbered lower."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state.name in COUNTED and (below is None or t.number < below))


class TrialFailed(Exception):
    pass


class Surplus(Exception):
    pass


def objective_for(spec: SweepSpec, study, train: Callable[[RunSpec, Callable], RunResult],
                  log: Callable[[RunResult, int], None]):
    """The Optuna objective: ``train(run, report)`` the run of a trial (its suggested parameters, validation
    conditions only), return its validation metric. The objective's ``started`` list records the numbers of
    the trials it ran."""
    import optuna

    sign = METRICS[spec.metric].sign

    def objective(trial) -> float:
        objective.started.append(trial.number)
        if counted(study, below=trial.number) >= spec.trials:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"the study already has {spec.trials} trials")
        params = {**registry.resolve_params(spec.card, spec.preset), **suggest(trial, spec.card.search_space)}

        def report(step: int, value: float) -> None:  # adapters report higher-is-better values
            trial.report(sign * value, step)
            if trial.should_prune():
                raise StopTraining(f"pruned at step {step}")

        beat = journal_heartbeat.beating(trial, heartbeat_s()) if is_journal(spec.storage) else nullcontext()
        try:
            with beat:
                result = train(RunSpec(spec.card, params, spec.dataset, spec.split, spec.seed, spec.preset,
                                       spec.device, test=False), report)
        except StopTraining:
            raise optuna.TrialPruned() from None
        log(result, trial.number)
        value = result.metrics.get(f"val/{spec.metric}", math.nan)
        error = result.error if not result.ok else None
        if error is None and not math.isfinite(value):
            error = f"no finite val/{spec.metric}: the split needs validation conditions"
        if error:
            trial.set_user_attr("error", error)
            raise TrialFailed(error)
        return value

    objective.started = []
    return objective


def work(spec: SweepSpec, study, objective, progress: Callable[[str], None]) -> int:
    """Run trials until the study's budget of ``spec.trials`` is taken and no trial runs any more, or the
    timeout passes; return how many ran. While the budget is taken but trials still run, wait: a running
    trial's worker may have died, and then its trial is failed when its heartbeat goes stale and is run
    again here."""
    import optuna

    start, ran, failed_in_a_row, waited_for = time.monotonic(), 0, 0, []
    while spec.timeout is None or time.monotonic() - start < spec.timeout:
        if is_journal(spec.storage):  # a dead worker's trial: failed, and re-queued
            journal_heartbeat.fail_dead_trials(study, grace_s())
        else:
            optuna.storages.fail_stale_trials(study)
            fail_trials_without_heartbeat(study, grace_s())
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting and counted(study) >= spec.trials:
            busy = [t.number for t in running(study)]
            if not busy:
                break
            if busy != waited_for:
                progress(f"waiting for trial(s) {', '.join(map(str, busy))} to end or go stale")
                waited_for = busy
            time.sleep(WAIT_S)
            continue
        study.optimize(objective, n_trials=1, catch=(TrialFailed, Surplus))
        number = objective.started[-1]
        last = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if last.user_attrs.get("surplus"):
            continue
        ran += 1
        failed_in_a_row = failed_in_a_row + 1 if last.state.name == "FAIL" else 0
        if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            raise BenchError(f"{failed_in_a_row} trials in a row failed, the last with: {last.user_attrs['error']}; "
                             "fix the model or its search space (the study keeps its trials)")
        progress(f"trial {last.number}: {last.state.name.lower()}"
                 + (f", val/{spec.metric} {last.value:.4g}" if last.value is not None else "")
                 + (f" ({last.user_attrs['error']})" if "error" in last.user_attrs else ""))
    return ran


def run_worker(spec: SweepSpec, study, prepared, *, track: bool, display, say: Callable[[str], None]) -> int:
    """Run this worker's share of ``study`` on ``prepared`` (``work``), each trial shown on ``display`` and
    logged to MLflow under the study's one parent run when ``track``; return how many trials it ran. The
    trial runs that a killed worker left RUNNING in MLflow are failed at the end, and the parent run ends when
    no trial runs any more."""
    knowledge = StoreGeneKnowledge()
    parent = None
    if track:
        parent = tracking.SweepParent(spec.dataset, spec.study, storage_identity(spec.storage), study.user_attrs["setup"])
        parent.begin()

    def train(run: RunSpec, report) -> RunResult:
        label = f"{spec.card.name} trial {objective.started[-1]}"
        return execute([run], {prepared.name: prepared}, knowledge=knowledge, report=report, display=display,
                       label=lambda _: label)[0]

    def log(result: RunResult, number: int) -> None:
        if parent is not None:
            tracking.log_run(result, parent.run_id(), {"sweep_study": spec.study, "sweep_trial": str(number)})

    objective = objective_for(spec, study, train, log)
    ran = work(spec, study, objective, say)
    if parent is not None:
        still = {trial.number for trial in running(study)}
        parent.fail_dead_trial_runs(still)
        if not still:
            parent.end()
    return ran


def storage_identity(url: str) -> str:
    """The storage as every worker names it, for tags: a file by its absolute path, a server by its URL
    without the password."""
    if is_journal(url):
        return f"journal:{Path(url.removeprefix('journal:')).resolve()}"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parsed = parsed.set(database=str(Path(parsed.database).resolve()))
    return redact(parsed.render_as_string(hide_password=False))


def card_name(spec: SweepSpec) -> str:
    return f"{spec.card.name}@{spec.dataset}"


def write_best_card(spec: SweepSpec, study) -> Path | None:
    """``<model>@<dataset>.toml`` in the user's card folder (``BENCH_CARDS_DIR``): the best trial's parameters
    over the card, with the sweep's record."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    params = {**spec.card.presets.get(spec.preset or "", {}), **best.params}
    name = card_name(spec)
    record = {"study": spec.study, "storage": redact(spec.storage), "trial": best.number,
              "metric": f"val/{spec.metric}", "value": float(best.value), "dataset": spec.dataset,
              "split": spec.split, "seed": spec.seed,
              "preset": spec.preset or "default", "trials_complete": len(complete)}
    description = (f"{spec.card.name} tuned on {spec.dataset} ({spec.split}, seed {spec.seed}): "
                   f"best val/{spec.metric} {best.value:.4g} in study {spec.study}.")
    lines = [f"name = {_toml(name)}", f"extends = {_toml(spec.card.name)}", f"description = {_toml(description)}",
             "", "[params]", *(f"{k} = {_toml(v)}" for k, v in sorted(params.items())),
             "", "[sweep]", *(f"{k} = {_toml(v)}" for k, v in record.items()), ""]
    return atomic.write_text(paths.user_cards_dir() / f"{name}.toml", "\n".join(lines))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))
