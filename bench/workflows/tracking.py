"""MLflow: log a RunResult and query runs. The only module that talks to MLflow; it computes nothing.

Default tracking URI: an SQLite file ``mlflow.db`` in the working directory (MLflow 3's own default);
``MLFLOW_TRACKING_URI`` points at a server. One experiment per dataset (``bench/<dataset>``); with an
SQLite store, its artifacts are kept beside the database (``artifact_root``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import sqlite3
import tempfile
from pathlib import Path

import pandas as pd

from bench.core import processes
from bench.core.api import RunResult, now_ms
from bench.core.errors import BenchError
from bench.core.redaction import redact
from bench.evaluation.metric_catalog import CURVE, METRICS_VERSION
from bench.workflows import prediction_files, source_state, unlogged
from bench.workflows.run_environment import package_versions

MLFLOW_TABLE = "experiments"  # the first table MLflow creates, so a database being created has it already
ARTIFACTS = "mlruns"  # the folder beside an SQLite database that holds its artifacts (artifact_root)
UNFINISHED = "UNFINISHED"  # the status of a run whose logging never ended (``runs``)
SWEEP_KEY = "sweep_key"  # the tag that marks a sweep's parent run (``SweepParent``)
LOGGING = "logging to the tracking store"  # what progress shows while a finished run is logged
PROVENANCE = ("dataset_sha256", "metrics_version", "split_sha256", "card_sha256", "git_commit")
# the fields of a run in ``runs``; those of its tags' names are read from them
RUN_COLUMNS = ("run_id", "model", "preset", "baseline", "dataset", "split", "seed", "status", "error", "start_time",
               "sweep_trial", *PROVENANCE, "params")
SCORE_COLUMNS = ("subgroup", "metric", "value")
HOST_TAG, PID_TAG = "logged_on_host", "logged_by_pid"  # who logs a run: a run left RUNNING by a dead one is closed
_abandoned_closed: set[str] = set()  # the stores whose abandoned runs this process has closed


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def sqlite_tables(url: str, fix: str) -> set[str]:
    """The tables of the SQLite database that ``url`` names; none when ``url`` is not an SQLite URL or
    names a missing or empty file (its application creates the tables there). A file that SQLite cannot
    read is a ``BenchError`` whose message ends with ``fix``. Opened without create (``mode=rw``), and
    only read: nothing is created, and nothing changes unless a writer was killed mid-transaction, whose
    journal SQLite then rolls back as any connection to the file would (a ``mode=ro`` connection cannot,
    and fails with "attempt to write a readonly database")."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return set()
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return set()
    path = Path(parsed.database)
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=30)) as db:
            return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise BenchError(f"cannot read {path} as an SQLite database ({exc}); {fix}") from None


FIX = "point MLFLOW_TRACKING_URI at MLflow's database (e.g. sqlite:///mlflow.db) or server (http://host:5000)"
CONNECT_TIMEOUT_S = 10  # one attempt, no retries: a wrong password or a dead server is said before training
_reached: set[str] = set()  # the stores this process has checked by connecting


def check_store() -> None:
    """Refuse, with a one-line ``BenchError``, a tracking URI that MLflow cannot use: a scheme no MLflow
    store handles, a database URL SQLAlchemy cannot parse, a file store (MLflow 3 refuses those unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set), an SQLite file that is not MLflow's (MLflow would create its
    tables inside it) or that cannot be created, and a database or server that does not answer. Called
    before any training, and before every use of MLflow; it connects once per process and creates nothing."""
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE
    from mlflow.exceptions import MlflowException
    from mlflow.store.db.db_types import DATABASE_ENGINES
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry  # private: test_private_apis.py
    from mlflow.utils.uri import get_uri_scheme
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    for noisy in ("mlflow", "alembic"):  # database set-up chatter would bury the results table
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # its retries, and its errors with their tracebacks: bench says a store's failure in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = tracking_uri()
    if uri in _reached:
        return
    scheme = get_uri_scheme(uri)
    try:
        _tracking_store_registry.get_store_builder(uri)
    except MlflowException:
        raise BenchError(f"MLFLOW_TRACKING_URI has scheme '{scheme}', which MLflow cannot track to; {FIX}") from None
    if scheme in ("", "file") and not MLFLOW_ALLOW_FILE_STORE.get():
        raise BenchError(f"MLFLOW_TRACKING_URI names a file store, which MLflow 3 refuses; {FIX}, "
                         "or set MLFLOW_ALLOW_FILE_STORE=true")
    if scheme in DATABASE_ENGINES:
        try:
            parsed = make_url(uri)
        except ArgumentError:
            raise BenchError("MLFLOW_TRACKING_URI is not a database URL SQLAlchemy can parse; write sqlite:///relative/"
                             "path.db, sqlite:////absolute/path.db or postgresql://user@host/db") from None
        if parsed.get_backend_name() == "sqlite":
            _check_sqlite_file(uri, parsed)
        else:
            _connect_to_database(uri)
            _open_mlflow_engine(uri)
    elif scheme in ("http", "https"):
        _ask_server(uri)
    _reached.add(uri)


def _check_sqlite_file(uri: str, parsed) -> None:
    """An SQLite store names a file that is MLflow's, or one that can be created (its folder exists and is
    writable; an existing store in a read-only folder can still be read)."""
    if parsed.host or parsed.database in (None, "", ":memory:"):
        raise BenchError(f"MLFLOW_TRACKING_URI {redact(uri)} names no SQLite file (an in-memory database is gone "
                         "when bench exits); write sqlite:///mlflow.db (three slashes) for a file in this folder "
                         "or sqlite:////absolute/path.db")
    tables = sqlite_tables(uri, FIX)
    if tables and MLFLOW_TABLE not in tables:
        raise BenchError(f"{parsed.database} is not an MLflow database (its tables: "
                         f"{', '.join(sorted(tables)[:6])}); {FIX}")
    folder = Path(parsed.database).resolve().parent
    if Path(parsed.database).exists():
        return
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        problem = "is not writable" if folder.is_dir() else "does not exist"
        raise BenchError(f"the folder {folder} of the tracking store {parsed.database} {problem} (MLflow writes "
                         "its database and a lock file there); create it, or point MLFLOW_TRACKING_URI elsewhere")


def _connect_to_database(uri: str) -> None:
    """One connection and a cheap query, without retries."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    timeout = {"connect_timeout": CONNECT_TIMEOUT_S} if uri.startswith(("postgresql", "mysql")) else {}
    try:
        engine = create_engine(uri, poolclass=NullPool, connect_args=timeout)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # SQLAlchemy and driver errors have many types
        raise BenchError(f"cannot reach the tracking store {redact(uri)} ({_reason(exc)}); check its host, "
                         f"port, user and password, or {FIX}") from None


def _open_mlflow_engine(uri: str) -> None:
    """Have MLflow make its engine for a database server now, while it answers: MLflow retries making one
    for about 100 s (``MAX_RETRY_COUNT`` in ``mlflow/store/db/utils.py``) but keeps it for the process, and
    using it fails at once, so a server that goes away later fails the logging of a run without that wait."""
    from mlflow import MlflowClient

    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # the server went away since the connection above
        raise BenchError(f"cannot reach the tracking store {redact(uri)} ({_reason(exc)}); {FIX}") from None


def _ask_server(uri: str) -> None:
    """One request to the MLflow server (an experiment search, which needs its credentials), without retries."""
    from mlflow import MlflowClient

    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CONNECT_TIMEOUT_S)}
    saved = {name: os.environ.get(name) for name in quick}
    os.environ.update(quick)
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # connection, HTTP and MLflow errors
        raise BenchError(f"cannot reach the MLflow server {redact(uri)} ({_reason(exc)}); check that it runs and "
                         f"the credentials (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD), or {FIX}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reason(exc: Exception) -> str:
    """An exception's first line (a database driver's under SQLAlchemy's), without secrets, at most 200 characters."""
    exc = getattr(exc, "orig", None) or exc
    lines = [line for line in str(exc).strip().splitlines()
             if not line.startswith("(raised as a result of")] or [type(exc).__name__]  # SQLAlchemy's note first
    return redact(lines[0])[:200]


def _mlflow():
    import mlflow

    check_store()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def experiment_name(dataset: str) -> str:
    return f"bench/{dataset}"


def artifact_root() -> Path | None:
    """The folder that holds the artifacts of the experiments created here: ``mlruns`` beside an SQLite
    store's database file, whatever the working directory. ``mlruns`` is the folder MLflow itself uses
    for a database store (``DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH`` in ``mlflow/store/tracking/__init__.py``,
    resolved against the working directory), so the default store ``./mlflow.db`` keeps its artifacts
    where MLflow puts them. None for any other store: a server places artifacts itself (its
    ``--default-artifact-root`` or ``--artifacts-destination``), and a database server has no folder."""
    from sqlalchemy.engine import make_url

    uri = tracking_uri()
    database = make_url(uri).database if uri.startswith("sqlite:") else None
    if database in (None, "", ":memory:"):
        return None
    return Path(database).resolve().parent / ARTIFACTS


def _experiment_id(client, dataset: str) -> str:
    """The id of the dataset's experiment; one created here keeps its artifacts in ``artifact_root``, in
    a folder named after it (an existing one keeps the location it was created with). Call it under
    ``_store_lock``."""
    from mlflow.entities import LifecycleStage
    from mlflow.exceptions import MlflowException

    name = experiment_name(dataset)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        root = artifact_root()
        location = str(root / name.replace("/", "_")) if root else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:  # created meanwhile by a process that shares a server or database
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == LifecycleStage.DELETED:
        uri, number = redact(tracking_uri()), experiment.experiment_id
        store = "--tracking-uri" if uri.startswith(("http://", "https://")) else "--backend-store-uri"
        raise BenchError(f"experiment '{name}' was deleted in {uri}; restore it (`mlflow experiments restore "
                         f"--experiment-id {number}`) or remove it for good (`mlflow gc {store} {uri} "
                         f"--experiment-ids {number}`)")
    return experiment.experiment_id


@contextlib.contextmanager
def _store_lock(name: str = ""):
    """With an SQLite store, hold a file lock beside the database for a block: processes that start
    together (sweep workers, ``bench run --jobs``) would otherwise race to create its schema, and
    MLflow's migrations and SQLite's writers are not safe under that race. A no-op for servers.
    ``name`` names a lock of its own, for a block that holds the store's lock inside it."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        yield
        return
    with open(Path(uri.removeprefix("sqlite:///") + name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ceiling_lock():
    """Held from finding a data ceiling missing until it is logged, so that processes logging to one SQLite
    store at once track each ceiling once."""
    return _store_lock(".ceiling")


def tags(result: RunResult) -> dict[str, str]:
    table = {
        "model": result.model,
        "dataset": result.dataset,
        "dataset_sha256": result.dataset_sha256,
        "split": result.split,
        "split_sha256": result.split_hash,
        "card_sha256": result.card_hash,
        "seed": str(result.seed),
        "preset": result.preset or "default",
        "baseline": "true" if result.baseline else "false",
        "device": result.device,
        "status": result.status,
        **source_state.describe(),
        "metrics_version": METRICS_VERSION,
        "wall_time_s": f"{result.wall_time_s:.3f}",
        "peak_memory_mb": f"{result.peak_memory_mb:.1f}",
        **{f"time.{phase}_s": f"{seconds:.3f}" for phase, seconds in result.phase_seconds.items()},
    }
    table.update({f"version.{name}": version for name, version in package_versions().items()})
    table.update(result.numeric)
    table.update(result.environment)
    if result.error:
        table["error"] = result.error[:5000]
    return table


def _write_artifacts(result: RunResult, folder: Path) -> None:
    (folder / "split.json").write_text(result.split_json)
    if result.per_perturbation is not None:
        result.per_perturbation.to_csv(folder / "per_perturbation.csv", index=False)
    prediction_files.write(result, folder)
    if result.traceback:
        (folder / "traceback.txt").write_text(result.traceback)


def _metrics(result: RunResult) -> list:
    """The result's metrics at its end, and its training curve as the history of metric ``CURVE``."""
    from mlflow.entities import Metric

    ended = result.ended_ms or now_ms()
    return ([Metric(key, float(value), ended, 0) for key, value in result.metrics.items()]
            + [Metric(CURVE, value, timestamp, step) for step, value, timestamp in result.curve])


def _store_failures() -> tuple[type[BaseException], ...]:
    """What a store that fails while a run is logged raises (it went away, or its disk is full)."""
    import requests
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return MlflowException, SQLAlchemyError, requests.RequestException, OSError


def _failed_while_logging(result: RunResult, exc: BaseException) -> str:
    return (f"the tracking store {redact(tracking_uri())} failed while logging {result.model}/{result.split}"
            f"/seed{result.seed} ({_reason(exc)})")


def log_run(result: RunResult, parent_run_id: str | None = None, extra_tags: dict | None = None) -> str:
    """Log one run (params, metrics, tags, artifacts), as a child of ``parent_run_id`` when given (a sweep
    trial), timed by the result's start and end; return its MLflow run id. Where the store fails (it went
    away after the check), the run is kept in a local folder (``unlogged``) and a ``BenchError`` says how
    to import it."""
    try:
        return _log_run(result, parent_run_id, extra_tags)
    except _store_failures() as exc:
        failure = _failed_while_logging(result, exc)
        try:
            kept = unlogged.save(result, parent_run_id, extra_tags)
        except OSError as saving:
            raise BenchError(f"{failure}, and the run could not be kept locally either ({saving}); the run is "
                             "lost: free space or fix the store, then run it again") from None
        raise BenchError(f"{failure}; the run is kept in {kept}: log it once the store is back with "
                         f"`bench import-runs {kept.parent}`") from None


def import_run(path: Path) -> str:
    """Log the run kept in ``path`` by ``log_run`` when the store failed, then remove the file; return its
    MLflow run id. Where the store fails again, the file stays for the next import."""
    record = unlogged.load(path)
    try:
        run_id = _log_run(record["result"], record["parent_run_id"], record["extra_tags"])
    except _store_failures() as exc:
        raise BenchError(f"{_failed_while_logging(record['result'], exc)}; {path} stays: import it again once the "
                         "store is back") from None
    path.unlink()
    return run_id


def _log_run(result: RunResult, parent_run_id: str | None, extra_tags: dict | None) -> str:
    from mlflow.entities import Param
    from mlflow.tracking.context import registry as context

    client = _client()
    status = "FINISHED" if result.status in ("FINISHED", "SKIPPED") else "FAILED"
    run_tags = {**tags(result), **(extra_tags or {}), HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    if parent_run_id is not None:
        run_tags["mlflow.parentRunId"] = parent_run_id
    with _store_lock():
        experiment_id = _experiment_id(client, result.dataset)
        # the context's tags (user, source, its git commit), as mlflow.start_run adds them (mlflow/tracking/fluent.py)
        run_id = client.create_run(experiment_id, start_time=result.started_ms or None,
                                   tags=context.resolve_tags(run_tags),
                                   run_name=f"{result.model}/{result.split}/seed{result.seed}").info.run_id
        try:
            client.log_batch(run_id, metrics=_metrics(result),
                             params=[Param(key, str(value)) for key, value in result.params.items()])
            with tempfile.TemporaryDirectory() as folder:
                _write_artifacts(result, Path(folder))
                client.log_artifacts(run_id, folder)
        except (KeyboardInterrupt, SystemExit):
            client.set_tag(run_id, "error", "stopped while it was being logged (Ctrl-C or a termination signal)")
            client.set_terminated(run_id, "KILLED")
            raise
        except BaseException:
            _drop_local_artifacts(client, run_id)  # the partial ones; on a full disk, that frees space too
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, status, end_time=result.ended_ms or None)
        return run_id


def _drop_local_artifacts(client, run_id: str) -> None:
    """Remove the artifacts of a run whose artifact folder is local (an SQLite store's ``mlruns``)."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    uri = client.get_run(run_id).info.artifact_uri
    if uri.startswith("file:") or "://" not in uri:
        shutil.rmtree(local_file_uri_to_path(uri), ignore_errors=True)


class SweepParent:
    """The one MLflow parent run of a sweep study, agreed on by all of its workers.

    MLflow has no compare-and-set, so the workers agree without one. A worker looks for the study's
    parents (runs tagged with a key of the study name and the storage), and creates one only when it
    finds none; then it reads them again, and every worker takes the oldest (by start time, then run
    id). Workers that start together may each create one; a worker whose own parent is not the oldest
    moves that parent's trial runs to the oldest and deletes it. ``run_id`` is asked again before each
    trial is logged, so a worker that saw only its own parent at first (another was created by a worker
    whose clock is behind) still ends on the common one. With an SQLite store the search and the
    creation hold the store's file lock, so only one parent is ever created."""

    def __init__(self, dataset: str, study: str, storage: str, setup: dict):
        self._dataset = dataset
        self._key = hashlib.sha256(f"{study}\n{storage}".encode()).hexdigest()[:32]
        self._tags = {SWEEP_KEY: self._key, "sweep_study": study, "sweep_storage": storage,
                      **source_state.describe(), **{k: str(v) for k, v in setup.items()}}
        self._run_name = f"sweep/{study}"
        self._mine: str | None = None

    def run_id(self) -> str:
        """The parent's run id now (created when the study has none)."""
        client = _client()
        with _store_lock():
            experiment_id = _experiment_id(client, self._dataset)
            parents = self._parents(client, experiment_id) or self._create(client, experiment_id)
        oldest = min(parents, key=lambda run: (run.info.start_time, run.info.run_id)).info.run_id
        if self._mine not in (None, oldest):
            self._give_up_own(client, experiment_id, oldest)
        return oldest

    def _parents(self, client, experiment_id: str) -> list:
        return client.search_runs([experiment_id], filter_string=f"tags.{SWEEP_KEY} = '{self._key}'")

    def _create(self, client, experiment_id: str) -> list:
        """Create this worker's parent, RUNNING until a worker ``end``s it; return the parents found then."""
        self._mine = client.create_run(experiment_id, run_name=self._run_name, tags=self._tags).info.run_id
        return self._parents(client, experiment_id)

    def begin(self) -> str:
        """The parent's run id, RUNNING again when an earlier worker ended it: the parent spans the sweep, from
        its first worker's start to its last worker's end."""
        parent = self.run_id()
        client = _client()
        if client.get_run(parent).info.status != "RUNNING":
            client.update_run(parent, status="RUNNING")
        return parent

    def end(self) -> None:
        """FINISHED, ending now: called by a worker that leaves no trial running (the last one out)."""
        _client().set_terminated(self.run_id(), "FINISHED")

    def _give_up_own(self, client, experiment_id: str, oldest: str) -> None:
        """Move the trial runs under this worker's parent to the oldest parent, and delete its own."""
        for child in _children(client, experiment_id, self._mine):
            client.set_tag(child.info.run_id, "mlflow.parentRunId", oldest)
        client.delete_run(self._mine)
        self._mine = None

    def fail_dead_trial_runs(self, running_trials: set[int]) -> int:
        """Mark FAILED the trial runs still RUNNING whose trial is not (their worker died while logging
        them, and the trial was failed since); return how many."""
        parent = self.run_id()
        client = _client()
        live = {str(number) for number in running_trials}
        dead = [run for run in _children(client, client.get_run(parent).info.experiment_id, parent, "RUNNING")
                if run.data.tags.get("sweep_trial") not in live]
        for run in dead:
            client.set_terminated(run.info.run_id, "FAILED")
        return len(dead)


def _client():
    """An MLflow client; made under the store's lock, because making the first one creates the schema. The
    first one a process makes closes the runs that processes killed while logging them left RUNNING."""
    from mlflow import MlflowClient

    _mlflow()
    with _store_lock(), _removed_when_half_made():
        client = MlflowClient()
        if tracking_uri() not in _abandoned_closed:
            _close_abandoned(client)
            _abandoned_closed.add(tracking_uri())
        return client


@contextlib.contextmanager
def _removed_when_half_made():
    """Remove the SQLite store's database (and its journal) when it did not exist before the block and the
    block fails: a store whose creation failed (a full disk) is left half made."""
    if not _store_missing():
        yield
        return
    try:
        yield
    except BaseException:
        database = Path(tracking_uri().removeprefix("sqlite:///"))
        for path in (database, database.with_name(f"{database.name}-journal")):
            path.unlink(missing_ok=True)
        raise


def _close_abandoned(client) -> None:
    """Mark FAILED ("process gone") the runs left RUNNING by a process of this machine that no longer runs: a
    run is RUNNING only while it is logged, and a process killed then (SIGKILL, out of memory) cannot close it.
    Runs logged on other machines are left to them: whether their process runs cannot be seen from here."""
    experiments = [e.experiment_id for e in client.search_experiments() if e.name.startswith(experiment_name(""))]
    if not experiments:
        return
    where = f"attributes.status = 'RUNNING' and tags.{HOST_TAG} = '{socket.gethostname()}'"
    for run in client.search_runs(experiments, filter_string=where, max_results=50000):
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and not processes.alive(int(pid)):
            client.set_tag(run.info.run_id, "error", f"process gone: process {pid} ended while logging the run")
            client.set_terminated(run.info.run_id, "FAILED")


def _children(client, experiment_id: str, parent_run_id: str, status: str | None = None) -> list:
    """The runs whose parent is ``parent_run_id`` (only those in ``status`` when given)."""
    where = f"tags.mlflow.parentRunId = '{parent_run_id}'" + (f" and attributes.status = '{status}'" if status else "")
    return client.search_runs([experiment_id], filter_string=where, max_results=50000)


def _store_missing() -> bool:
    """Whether the tracking store is an SQLite file that does not exist yet: then nothing is tracked, and
    reading must not create it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    uri = tracking_uri()
    try:
        database = make_url(uri).database if uri.startswith("sqlite:") else None
    except ArgumentError:
        return False  # check_store says what is wrong with it
    return bool(database) and database != ":memory:" and not Path(database).exists()


def tracked_datasets() -> list[str]:
    """Names of the datasets that have an experiment in the tracking store."""
    if _store_missing():
        return []
    mlflow = _mlflow()
    prefix = experiment_name("")
    return sorted(e.name.removeprefix(prefix) for e in mlflow.search_experiments() if e.name.startswith(prefix))


def run_artifact(run_id: str, name: str, folder: Path) -> Path | None:
    """Download one artifact of a run into ``folder``; None when the run has no such artifact."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    _mlflow()
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name, dst_path=str(folder)))
    except (MlflowException, OSError):
        return None


def _experiment(dataset: str):
    """The dataset's experiment; None when nothing of it is tracked (reading never creates the store)."""
    if _store_missing():
        return None
    return _mlflow().get_experiment_by_name(experiment_name(dataset))


def search_runs(dataset: str, filter_string: str = "") -> pd.DataFrame:
    """Tracked runs of a dataset as a DataFrame (MLflow's ``search_runs`` layout)."""
    experiment = _experiment(dataset)
    if experiment is None:
        return pd.DataFrame()
    return _mlflow().search_runs([experiment.experiment_id], filter_string=filter_string)


def _status(run) -> str:
    """How a run ended: its ``status`` tag (FINISHED, FAILED or SKIPPED), FAILED also where its logging failed
    or was stopped (KILLED), and UNFINISHED where MLflow never saw it end (being logged, or its process was
    killed then and no command has closed it since)."""
    if run.info.status not in ("FINISHED", "FAILED", "KILLED"):
        return UNFINISHED
    tagged = run.data.tags.get("status")
    if tagged == "SKIPPED":
        return tagged
    return "FAILED" if "FAILED" in (tagged, run.info.status) or run.info.status == "KILLED" else "FINISHED"


def _rows(run) -> list[dict]:
    """The rows of one run: its fields, then one (subgroup, metric, value) per metric ``<subgroup>/<metric>``."""
    tags = run.data.tags
    fields = {**{name: tags.get(name) for name in RUN_COLUMNS}, "run_id": run.info.run_id, "status": _status(run),
              "start_time": run.info.start_time, "sweep_trial": "mlflow.parentRunId" in tags,
              "params": dict(run.data.params)}
    scores = [(*key.rpartition("/")[::2], value) for key, value in run.data.metrics.items()]
    return [{**fields, "subgroup": subgroup, "metric": metric, "value": value}
            for subgroup, metric, value in scores or [(None, None, float("nan"))]]


def runs(dataset: str) -> pd.DataFrame:
    """The tracked runs of a dataset's models as flat rows: one per (run, metric), with the run's fields
    (``RUN_COLUMNS``) repeated on each; a run without metrics (a failed or skipped one) is one row whose
    subgroup, metric and value are missing. ``status`` is FINISHED, FAILED, SKIPPED or UNFINISHED (``_status``);
    ``params`` a dict of the run's parameters as strings; ``start_time`` milliseconds since the epoch;
    ``sweep_trial`` whether the run is a sweep's trial. Neither a run without a model nor a sweep's parent
    (``SweepParent``: it only groups trials, though tagged with the sweep's model, split and seed) is a row."""
    experiment = _experiment(dataset)
    found = [] if experiment is None else _mlflow().search_runs([experiment.experiment_id], output_format="list")
    models = [run for run in found if "model" in run.data.tags and SWEEP_KEY not in run.data.tags]
    table = pd.DataFrame([row for run in models for row in _rows(run)], columns=[*RUN_COLUMNS, *SCORE_COLUMNS])
    table["seed"] = pd.to_numeric(table["seed"]).astype("Int64")
    return table
