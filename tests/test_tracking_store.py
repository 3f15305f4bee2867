"""The tracking store is checked before any training: a store MLflow cannot use is a one-line error, and
MLflow never creates its tables inside a database that is not its own."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import mlflow
import optuna
import pytest

from bench.core.errors import BenchError
from bench.workflows import tracking


def tables(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def bench(*args, env, cwd):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **env}, cwd=cwd, timeout=300)


@pytest.fixture
def use(monkeypatch):
    """Point MLFLOW_TRACKING_URI at a store."""
    return lambda uri: monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)


def test_an_optuna_database_is_refused_and_left_as_it_was(tmp_path, use):
    db = tmp_path / "sweeps.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    before = tables(db)
    use(f"sqlite:///{db}")
    with pytest.raises(BenchError, match="is not an MLflow database .*studies.*MLFLOW_TRACKING_URI") as raised:
        tracking.check_store()
    assert "\n" not in str(raised.value)
    with pytest.raises(BenchError, match="is not an MLflow database"):
        tracking.runs("anything")  # every MLflow call checks the store first
    assert tables(db) == before


def test_another_applications_database_is_refused(tmp_path, use):
    db = tmp_path / "notes.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
    use(f"sqlite:///{db}")
    with pytest.raises(BenchError, match="is not an MLflow database \\(its tables: notes\\)"):
        tracking.runs("anything")
    assert tables(db) == {"notes"}


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_was(tmp_path, use):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database\n" * 100)
    use(f"sqlite:///{db}")
    with pytest.raises(BenchError, match="cannot read .*mlflow.db as an SQLite database \\(file is not a database\\)"):
        tracking.runs("anything")
    assert db.read_bytes() == b"not a database\n" * 100


@pytest.mark.parametrize("uri, message", [
    ("ftp://host/runs", "scheme 'ftp', which MLflow cannot track to"),
    ("foo:bar", "scheme 'foo', which MLflow cannot track to"),
    ("sqlite:/runs.db", "not a database URL SQLAlchemy can parse"),
    ("postgresql:/user@host/db", "not a database URL SQLAlchemy can parse"),
    ("file:///tmp/mlruns", "file store, which MLflow 3 refuses"),
    ("mlruns", "file store, which MLflow 3 refuses"),
])
def test_a_uri_mlflow_cannot_use_is_refused(uri, message, use):
    use(uri)
    with pytest.raises(BenchError, match=message):
        tracking.check_store()


def test_a_file_store_is_accepted_when_mlflow_is_told_to_allow_it(tmp_path, use, monkeypatch):
    use(f"file://{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tracking.check_store()


def test_new_empty_and_mlflow_stores_are_accepted(tmp_path, use, monkeypatch):
    monkeypatch.chdir(tmp_path)
    use("sqlite:///new.db")
    tracking.check_store()
    assert not (tmp_path / "new.db").exists()  # the check creates nothing
    assert tracking.runs("anything").empty and tracking.tracked_datasets() == []
    assert not (tmp_path / "new.db").exists()  # reading a store that does not exist creates nothing
    mlflow.set_tracking_uri("sqlite:///new.db")
    mlflow.search_experiments()  # MLflow creates its database
    assert {"experiments", "runs"} <= tables(tmp_path / "new.db")
    tracking.check_store()
    (tmp_path / "empty.db").touch()
    use("sqlite:///empty.db")
    tracking.check_store()


@pytest.mark.slow
@pytest.mark.parametrize("command", [["leaderboard"], ["sweep", "--model", "linear"]])
def test_commands_refuse_a_wrong_store_in_one_line(tmp_path, command):
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'sweeps.db'}", study_name="s")
    out = bench(*command, env={"MLFLOW_TRACKING_URI": "sqlite:///sweeps.db"}, cwd=tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "sweeps.db is not an MLflow database" in lines[0], out.stderr
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'sweeps.db'}") == ["s"]  # refused before any sweep


KILLED_WRITER = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=DELETE"); db.execute("PRAGMA cache_size=1")
db.execute("BEGIN IMMEDIATE")
db.executemany("INSERT INTO studies VALUES (?, ?)", [(i, "x" * 500) for i in range(2000)])
os.kill(os.getpid(), signal.SIGKILL)  # mid-transaction, as a killed sweep worker
"""


def test_a_database_whose_writer_was_killed_is_read_with_its_journal_rolled_back(tmp_path):
    """A writer killed mid-transaction leaves a hot rollback journal; a read-only connection cannot roll
    it back ("attempt to write a readonly database"), which failed the restarted sweep worker in CI.
    The store check reads such a file, and SQLite restores it to its last committed state."""
    db = tmp_path / "sweeps.db"
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE studies (id INTEGER, name TEXT)")
        setup.execute("INSERT INTO studies VALUES (1, 'kept')")
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], timeout=60)
    assert (tmp_path / "sweeps.db-journal").stat().st_size > 0
    assert tracking.sqlite_tables(f"sqlite:///{db}", "fix it") == {"studies"}
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT name FROM studies").fetchall() == [("kept",)]
