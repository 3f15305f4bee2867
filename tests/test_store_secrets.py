"""A tracking store's password never reaches the terminal or a file; a store bench cannot reach is refused
before any training; a run whose store failed after training is kept and imported later."""

from __future__ import annotations

import socket
import textwrap

import pytest
from conftest import adapter_catalog, bench
from postgres import postgres

from bench.core.errors import BenchError
from bench.core.redaction import redact, remember
from bench.workflows import tracking

TOKEN = "Tok3n_f0r_this_test_only"  # a password found nowhere else, so any leak of it is found by grep


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("text, shown", [
    ("tracked in http://alice:pw1@host:5000; see http://alice:pw1@host:5000/api",
     "tracked in http://alice:***@host:5000; see http://alice:***@host:5000/api"),
    ("'postgresql+psycopg://u:p@ss/w@h:5432/db'", "'postgresql+psycopg://u:***@h:5432/db'"),
    ("https://h/mlflow?token=abc&x=1", "https://h/mlflow?token=***&x=1"),
    ("postgresql://h/db?sslmode=require&password=zz", "postgresql://h/db?sslmode=require&password=***"),
    ("http://host:5000/api and u@example.org", "http://host:5000/api and u@example.org"),
    ("journal:/shared/u:p@h/study.log", "journal:/shared/u:p@h/study.log"),
    ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:pa:ss@h:5432/db?sslmode=require", "postgresql://u:***@h:5432/db?sslmode=require"),
    ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql+psycopg://u:p@ss@h/db", "postgresql+psycopg://u:***@h/db"),
    ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("postgresql://h/db", "postgresql://h/db"),
    ("sqlite:///sweeps.db", "sqlite:///sweeps.db"),
    ("sqlite:////shared/sweeps.db", "sqlite:////shared/sweeps.db"),
])
def test_every_url_in_a_text_loses_its_password(text, shown):
    assert redact(text) == shown


def test_known_secrets_are_hidden_wherever_they_appear(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u:s%40fe-word@h/db")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "server-secret")
    remember("postgresql://w:storage-secret@h/db")
    said = "auth failed for s@fe-word and s%40fe-word; server-secret; storage-secret; a 'pw' stays"
    assert redact(said) == "auth failed for *** and ***; ***; ***; a 'pw' stays"


def test_an_unreachable_server_is_refused_by_one_request(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{TOKEN}@127.0.0.1:{free_port()}")
    with pytest.raises(BenchError, match=r"cannot reach the MLflow server http://alice:\*\*\*@127\.0\.0\.1") as raised:
        tracking.check_store()
    assert TOKEN not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("uri, message", [
    ("sqlite://mlflow.db", "names no SQLite file .*sqlite:///mlflow.db \\(three slashes\\)"),
    ("sqlite://", "names no SQLite file"),
    ("sqlite:///no/such/folder/mlflow.db", "the folder .*/no/such/folder of the tracking store .* does not exist"),
])
def test_an_sqlite_store_that_cannot_hold_runs_is_refused(uri, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(BenchError, match=message):
        tracking.check_store()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_wrong_password_is_refused_before_training(tmp_path):
    with postgres(TOKEN) as server:
        wrong = server.url.replace(TOKEN, "not-the-password")
        out = bench("run", "--model", "mean", "--dataset", "synthetic", cwd=tmp_path,
                    env={"MLFLOW_TRACKING_URI": wrong, "MLFLOW_TRACKING_PASSWORD": TOKEN})
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        assert "cannot reach the tracking store postgresql://postgres:***@localhost" in lines[0]
        assert "password authentication failed" in lines[0]
        assert "fitting" not in out.stdout and "runs" not in server.dump()  # refused before MLflow made its tables
        assert TOKEN not in out.stdout + out.stderr


@pytest.mark.slow
def test_the_password_is_nowhere_in_what_bench_prints_or_writes(tmp_path):
    with postgres(TOKEN) as server:
        env = {"MLFLOW_TRACKING_URI": server.url, "COLUMNS": "200"}
        said = []

        def run(*args, code=0):
            out = bench(*args, cwd=tmp_path, env=env)
            said.append(out.stdout + out.stderr)
            assert out.returncode == code, out.stderr
            return out

        assert "tracked in postgresql://postgres:***@localhost" in run("run", "--model", "mean,additive",
                                                                       "--dataset", "synthetic").stdout
        predictions = next(tmp_path.rglob("predictions.h5ad"))
        run("score", "--dataset", "synthetic", "--predictions", str(predictions), "--name", "mine")
        run("export", "--dataset", "synthetic", "--out", str(tmp_path / "exported"))
        run("leaderboard", "--out", str(tmp_path / "boards"))
        run("leaderboard", "--dataset", "nothing-here", code=2)
        run("--debug", "leaderboard", "--dataset", "nothing-here", code=2)
        assert "Traceback" in said[-1] and "postgres:***@" in said[-1]
        rows = server.dump()
        assert "mine" in rows and "additive" in rows  # the runs are there: the grep below looks at them
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 10
    leaks = [str(path) for path in files if TOKEN.encode() in path.read_bytes()]
    leaks += [f"output of command {i}" for i, text in enumerate(said) if TOKEN in text]
    assert TOKEN not in rows and not leaks, leaks


STOPPER = textwrap.dedent(
    '''
    import os, subprocess
    import pandas as pd
    from bench.core.api import Prediction

    class StopsTheStore:
        """Fits, then stops the tracking store's server: the run ends with no store to log to."""
        def fit(self, train):
            subprocess.run(os.environ["STOP_THE_STORE"].split(), check=True, cwd="/", capture_output=True)
        def predict(self, query):
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))
    '''
)


@pytest.mark.slow
def test_a_run_whose_store_went_away_is_kept_and_imported_later(tmp_path, monkeypatch):
    cards = adapter_catalog(tmp_path, monkeypatch, "store_stopper", STOPPER, {"stopper": "StopsTheStore"}) / "models"
    monkeypatch.delenv("BENCH_CATALOG")  # the card is a user card: the catalog's datasets stay known
    work = tmp_path / "work"
    work.mkdir()
    with postgres(TOKEN) as server:
        stop = ["runuser", "-u", "postgres", "--", str(server.bin_dir / "pg_ctl"), "-D", str(server.data), "-m",
                "immediate", "stop"]
        env = {"MLFLOW_TRACKING_URI": server.url, "STOP_THE_STORE": " ".join(stop), "PYTHONPATH": str(tmp_path),
               "BENCH_CARDS_DIR": str(cards)}
        out = bench("run", "--model", "stopper", "--dataset", "synthetic", "--seeds", "3", cwd=work, env=env)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1, out.stderr
        kept = sorted((work / "unlogged-runs").iterdir())
        assert [path.name.startswith("stopper-simulation-seed3-") for path in kept] == [True]
        assert f"the run is kept in {kept[0]}" in lines[0] and "bench import-runs" in lines[0]
        assert TOKEN not in out.stdout + out.stderr

        server.start()
        imported = bench("import-runs", str(work / "unlogged-runs"), cwd=work, env=env)
        assert imported.returncode == 0, imported.stderr
        assert "1 run(s) logged" in imported.stdout and not list((work / "unlogged-runs").iterdir())
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        runs = tracking.runs("synthetic")
        stopper = runs[runs["model"] == "stopper"]
        assert set(stopper["status"]) == {"FINISHED"} and set(stopper["seed"]) == {3}
        assert stopper["metric"].notna().sum() > 10
        assert tracking.run_artifact(stopper["run_id"].iloc[0], "per_perturbation.csv", tmp_path / "fetched")


@pytest.mark.slow
@pytest.mark.parametrize("args, env, message", [
    (["leaderboard"], {"MLFLOW_TRACKING_URI": f"postgresql://u:{TOKEN}@127.0.0.1:{{port}}/db"},
     "cannot reach the tracking store postgresql://u:***@127.0.0.1"),
    (["run", "--model", "mean", "--dataset", "synthetic"],
     {"MLFLOW_TRACKING_URI": f"http://u:{TOKEN}@127.0.0.1:{{port}}"}, "cannot reach the MLflow server http://u:***@"),
    (["sweep", "--model", "linear", "--dataset", "synthetic", "--no-track", "--storage",
      f"postgresql://u:{TOKEN}@127.0.0.1:{{port}}/db"], {}, "cannot open sweep storage postgresql://u:***@127.0.0.1"),
], ids=["tracking database", "tracking server", "sweep storage"])
def test_an_unreachable_store_is_one_line_without_its_password(args, env, message, tmp_path):
    port = free_port()
    out = bench(*[arg.format(port=port) for arg in args], cwd=tmp_path,
                env={name: value.format(port=port) for name, value in env.items()})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr
    assert TOKEN not in out.stdout + out.stderr and list(tmp_path.iterdir()) == []
