"""A heartbeat for sweeps on Optuna's journal storage, which keeps none itself (Optuna 5.0).

While a trial runs, a thread stamps the time into the trial's system attribute ``bench_heartbeat``
every ``interval`` seconds. Before each trial a worker fails the RUNNING trials whose last stamp (or
start) is older than ``grace`` seconds and queues a retry with the same parameters, as Optuna's RDB
heartbeat does. The journal orders concurrent writes, so when two workers see the same dead trial only
one can fail it, and only that one queues the retry.
"""

from __future__ import annotations

import contextlib
import threading
import time

ATTRIBUTE = "bench_heartbeat"


@contextlib.contextmanager
def beating(trial, interval: float):
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            trial.storage.set_trial_system_attr(trial._trial_id, ATTRIBUTE, time.time())

    trial.storage.set_trial_system_attr(trial._trial_id, ATTRIBUTE, time.time())
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_dead_trials(study, grace: float) -> int:
    """Fail RUNNING trials silent for more than ``grace`` seconds and queue their retries; return how many."""
    import optuna

    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        started = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
        if time.time() - trial.system_attrs.get(ATTRIBUTE, started) <= grace:
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # another worker failed it first
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        failed += 1
    return failed
