"""Bad input to every command: exit code 2, one line on stderr, no traceback, nothing partial left.

Each case runs ``bench`` as a user would (a whole process, in an empty working directory) and then
checks that the folder holds no file the command left behind (a tracking database, a half-written table).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def bench(args: list[str], cwd, env: dict | None = None):
    full = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'runs.db'}", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=full, cwd=cwd,
                          timeout=300)


def assert_one_line_error(out, message: str) -> None:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    assert message in lines[0], lines[0]


USAGE = [
    (["run", "--modle", "linear"], "No such option: --modle"),
    (["run", "--data", "x.h5ad"], "No such option: --data"),
    (["run"], "Missing option '--model'"),
    (["run", "--model", "linear", "--jobs", "x"], "'--jobs'"),
    (["frob"], "No such command 'frob'"),
    (["sweep", "--model", "linear", "--trials", "many"], "'--trials'"),
    (["data", "fecth", "norman"], "No such command 'fecth'"),
    (["run", "--model", ","], "--model names no model"),
    (["run", "--model", "linear", "--seeds", "5-1"], "seeds '5-1' count down"),
    (["run", "--model", "linear", "--seeds", "1-"], "seeds '1-' is not a seed list"),
    (["run", "--model", "linear", "--seeds", ","], "seeds ',' is not a seed list"),
    (["run", "--model", "lineer"], "unknown model 'lineer'; did you mean 'linear'"),
    (["run", "--model", "linear", "--jobs", "0"], "'--jobs' / '-j': Input should be greater than or equal to 1"),
    (["run", "--model", "linear", "--threads", "-1"], "'--threads': Input should be greater than or equal to 0"),
    (["run", "--model", "linear", "--split", "unseen_doubles"], "did you mean 'unseen_double'"),
    (["run", "--model", "linear", "--seeds", "one"], "seeds 'one' is not a seed list"),
    (["run", "--model", "linear", "--param", "lambda=1"], "no parameter 'lambda'; allowed:"),
    (["run", "--model", "linear", "--param", "ridge"], "must look like key=value"),
    (["run", "--model", "linear", "--param", "ridge=lots"], "parameter 'ridge' must be float"),
    (["run", "--model", "linear", "--preset", "fats"], "did you mean 'fast'"),
    (["run", "--model", "linear", "--device", "cuda", "--dataset", "synthetic"], "sees no CUDA GPU"),
    (["run", "--model", "linear", "--device", "tpu"], "'--device': 'tpu' is not one of 'auto', 'cpu', 'cuda'"),
    (["run", "--model", "linear", "--metrics", "pearsn"], "unknown metric 'pearsn'"),
    (["run", "--model", "linear", "--dataset", "normann"], "did you mean 'norman'"),
    (["run", "--model", "linear", "--dataset", "absent.h5ad"], "dataset file absent.h5ad does not exist"),
    (["list", "modles"], "'modles' is not one of 'models', 'datasets', 'splits', 'metrics', 'all'"),
    (["sweep", "--model", "mean"], "model 'mean' has no [search_space]"),
    (["sweep", "--model", "linear", "--trials", "0"], "'--trials': Input should be greater than or equal to 1"),
    (["sweep", "--model", "linear", "--seed", "-1"], "'--seed': Input should be greater than or equal to 0"),
    (["sweep", "--model", "linear", "--timeout", "0"], "--timeout 0 must be positive"),
    (["sweep", "--model", "linear", "--metric", "pearson_dleta"], "did you mean 'pearson_delta'"),
    (["leaderboard"], "no tracked runs in sqlite:///"),
    (["leaderboard", "--dataset", "synthetic", "--metric", "pearsn"], "unknown metric 'pearsn'"),
    (["leaderboard", "--split", "unseen_doubles"], "did you mean 'unseen_double'"),
    (["check", "--reference", "absent.csv"], "no reference file absent.csv"),
    (["export", "--dataset", "synthetic", "--out", "x", "--seed", "-1"],
     "'--seed': Input should be greater than or equal to 0"),
    (["score", "--dataset", "synthetic", "--predictions", "p.h5ad", "--seed", "-1"],
     "'--seed': Input should be greater than or equal to 0"),
    (["data", "fetch", "normann"], "did you mean 'norman'"),
    (["data", "import", "norman_subset", "absent.h5ad"], "absent.h5ad is not a file"),
]


@pytest.mark.parametrize("args, message", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    out = bench(args, tmp_path)
    assert_one_line_error(out, message)
    assert list(tmp_path.iterdir()) == []


def h5ad(path) -> None:
    """A small valid h5ad file whose perturbation column is ``guide`` with control value ``NT``."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    obs = pd.DataFrame({"guide": ["NT"] * 10 + ["A"] * 10}, index=[f"c{i}" for i in range(20)])
    ad.AnnData(np.ones((20, 5), dtype=np.float32), obs=obs, var=pd.DataFrame(index=list("ABCDE"))).write_h5ad(path)


REFERENCE_HEADER = "dataset,split,model,preset,seeds,metric,subgroup,mean,sd,n_seeds,tolerance,numeric_profile,recorded_on\n"
REFERENCE_LINE = 'synthetic,simulation,mean,default,1,mse,all,0.1,0,1,0.01,"x86-64-v3, 1 thread",cpu\n'

# (arguments, expected message, files to write into the working directory first)
WITH_FILES = [
    (["run", "--model", "mean", "--dataset", "notes.h5ad"], "not a readable .h5ad file", {"notes.h5ad": "hello"}),
    (["run", "--model", "mean", "--dataset", "good.h5ad"], "no perturbation column 'condition'", {"good.h5ad": h5ad}),
    (["run", "--model", "mean", "--dataset", "good.h5ad", "--perturbation-key", "gide"],
     "no perturbation column 'gide'", {"good.h5ad": h5ad}),
    (["run", "--model", "mean", "--dataset", "good.h5ad", "--perturbation-key", "guide"],
     "no control cells: no obs['guide'] equals 'ctrl'", {"good.h5ad": h5ad}),
    (["run", "--model", "mean", "--dataset", "gene_ontology"], "'gene_ontology' is a resource", {}),
    (["run", "--model", "mean", "--dataset", "norman_subset", "--perturbation-key", "x"],
     "--perturbation-key applies to .h5ad paths only", {}),
    (["check", "--reference", "ref.csv"], "ref.csv line 3: unknown model 'maen'",
     {"ref.csv": REFERENCE_HEADER + REFERENCE_LINE + REFERENCE_LINE.replace("mean", "maen")}),
    (["check", "--reference", "ref.csv"], "ref.csv line 2: no reference mean; run `bench check --update`",
     {"ref.csv": REFERENCE_HEADER + REFERENCE_LINE.replace("0.1,0,1,0.01", ",,,")}),
    (["check", "--reference", "ref.csv"], "ref.csv line 3 repeats an earlier line",
     {"ref.csv": REFERENCE_HEADER + REFERENCE_LINE * 2}),
    (["check", "--reference", "ref.csv"], "ref.csv lacks column(s)", {"ref.csv": "\x00\x01 not a table\n"}),
    (["check", "--reference", "ref.csv"], "ref.csv line 2: unknown subgroup 'combo_seen3'",
     {"ref.csv": REFERENCE_HEADER + REFERENCE_LINE.replace(",all,", ",combo_seen3,")}),
    (["check", "--reference", "ref.csv", "--jobs", "0"], "'--jobs' / '-j': Input should be greater than or equal to 1",
     {"ref.csv": REFERENCE_HEADER}),
    (["data", "import", "norman_subset", "notes.h5ad"], "nothing was written", {"notes.h5ad": "hello", "store/": None}),
]


def optuna_db(path) -> None:
    import optuna

    optuna.create_study(storage=f"sqlite:///{path}", study_name="s")


def mlflow_db(path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{path}")
    mlflow.search_experiments()


def tracked_run(path) -> None:
    """A tracking store at ``path`` with one run of the mean baseline on the simulator."""
    out = bench(["run", "--model", "mean", "--dataset", "synthetic"], path.parent,
                env={"MLFLOW_TRACKING_URI": f"sqlite:///{path}"})
    assert out.returncode == 0, out.stderr


# (arguments, expected message, files to write first, environment)
STORES = [
    (["run", "--model", "mean"], "has scheme 'ftp', which MLflow cannot track to", {}, {"MLFLOW_TRACKING_URI": "ftp://h/x"}),
    (["run", "--model", "mean"], "is not a database URL SQLAlchemy can parse", {}, {"MLFLOW_TRACKING_URI": "sqlite:/x.db"}),
    (["run", "--model", "mean"], "names a file store, which MLflow 3 refuses", {},
     {"MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}),
    (["run", "--model", "mean"], "sweeps.db is not an MLflow database", {"sweeps.db": optuna_db},
     {"MLFLOW_TRACKING_URI": "sqlite:///sweeps.db"}),
    (["run", "--model", "mean"], "cannot read corrupt.db as an SQLite database", {"corrupt.db": "x" * 4096},
     {"MLFLOW_TRACKING_URI": "sqlite:///corrupt.db"}),
    (["leaderboard"], "notes.db is not an MLflow database", {"notes.db": optuna_db},
     {"MLFLOW_TRACKING_URI": "sqlite:///notes.db"}),
    (["sweep", "--model", "linear", "--storage", "sqlite:///mlflow.db"], "mlflow.db is MLflow's tracking database",
     {"mlflow.db": mlflow_db}, {}),
    (["sweep", "--model", "linear", "--storage", "ftp://h/x"], "--storage ftp://h/x is not a database URL", {}, {}),
    (["sweep", "--model", "linear", "--storage", "sqlite:///notes.db"], "cannot read notes.db as an SQLite database",
     {"notes.db": "not a database"}, {}),
    pytest.param(["leaderboard", "--dataset", "synthetic", "--out", "board.md"],
                 "cannot write leaderboards to board.md: it is a file", {"runs.db": tracked_run, "board.md": "mine"}, {},
                 marks=pytest.mark.slow),  # a tracked run first
    pytest.param(["leaderboard", "--dataset", "synthetic", "--out", "board.md/x"], "cannot write leaderboards to board.md/x",
                 {"runs.db": tracked_run, "board.md": "mine"}, {}, marks=pytest.mark.slow),
]


def _write(folder, files: dict) -> None:
    for name, content in files.items():
        if name.endswith("/"):
            (folder / name).mkdir()
        elif callable(content):
            content(folder / name)
        else:
            (folder / name).write_text(content)


def _contents(folder) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _case_id(case) -> str:
    args, message = (case.values if hasattr(case, "values") else case)[:2]  # a pytest.param or a tuple
    return " ".join(args) + " " + message[:20]


@pytest.mark.parametrize("args, message, files, env", STORES, ids=[_case_id(case) for case in STORES])
def test_bad_stores_and_outputs_are_one_line_errors_that_change_nothing(args, message, files, env, tmp_path):
    _write(tmp_path, files)
    before = _contents(tmp_path)
    assert_one_line_error(bench(args, tmp_path, env), message)
    assert _contents(tmp_path) == before


@pytest.mark.parametrize("args, message, files", WITH_FILES, ids=[" ".join(a) for a, _, _ in WITH_FILES])
def test_bad_files_are_one_line_errors_that_leave_nothing_behind(args, message, files, tmp_path):
    _write(tmp_path, files)
    before = _contents(tmp_path)
    out = bench(args, tmp_path, env={"BENCH_DATA_DIR": str(tmp_path / "store")} if "store/" in files else None)
    assert_one_line_error(out, message)
    assert _contents(tmp_path) == before


# (the card's adapter, the source of ghost_adapter.py beside it, the error's end)
BROKEN_ADAPTERS = [
    (":Ghost", "", "adapter must be 'module:Class', got ':Ghost'"),
    ("ghost_adapter:Ghost", "def broken(:\n",
     "cannot import adapter module 'ghost_adapter' (SyntaxError: invalid syntax)"),
    ("ghost_adapter:Ghost", "raise RuntimeError('no GPU driver found')\n",
     "cannot import adapter module 'ghost_adapter' (RuntimeError: no GPU driver found)"),
]


@pytest.mark.parametrize("adapter, source, message", BROKEN_ADAPTERS, ids=["empty module", "syntax error", "raises"])
def test_a_card_whose_adapter_cannot_be_imported_is_a_one_line_error(adapter, source, message, tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "ghost.toml").write_text(f'name = "ghost"\nadapter = "{adapter}"\ndescription = "t"\ncitation = "t"\n')
    (cards / "ghost_adapter.py").write_text(source)
    env = {"BENCH_CARDS_DIR": str(cards), "PYTHONDONTWRITEBYTECODE": "1"}
    out = bench(["run", "--model", "ghost", "--dataset", "synthetic", "--dry-run"], tmp_path, env)
    assert_one_line_error(out, message)
    assert f"{cards / 'ghost.toml'}: " in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cards"]
    debug = bench(["--debug", "run", "--model", "ghost", "--dataset", "synthetic", "--dry-run"], tmp_path, env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
