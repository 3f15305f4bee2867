"""Paths and user values print as they are, never as rich markup: every command, run with its folders and
files under ``[x]/[/root]`` (a path that rich would read as tags), in a log and in a terminal."""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import bench

from bench.workflows import reference_check

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
TERMINAL = {"TTY_COMPATIBLE": "1"}  # rich draws for a terminal: spinners, live bars, colours


@pytest.fixture
def home(tmp_path):
    """A folder under ``[x]/[/root]`` with the user's cards (one, ``mine``), data store, cache, tracking store and
    a small .h5ad screen; and the environment that points ``bench`` there."""
    root = tmp_path / "[x]" / "[/root]"
    (root / "cards").mkdir(parents=True)
    (root / "cards" / "mine.toml").write_text('name = "mine"\nextends = "mean"\ndescription = "my [bold]mean[/bold]"\n')
    obs = pd.DataFrame({"guide": ["NT"] * 10 + ["A"] * 10}, index=[f"c{i}" for i in range(20)])
    ad.AnnData(np.ones((20, 5), dtype=np.float32), obs=obs, var=pd.DataFrame(index=list("ABCDE"))).write_h5ad(
        root / "screen.h5ad")
    env = {"BENCH_CARDS_DIR": str(root / "cards"), "BENCH_DATA_DIR": str(root / "store"),
           "BENCH_CACHE_DIR": str(root / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'runs.db'}",
           "COLUMNS": "1000"}
    return root, env


def shows(out, *texts: str, code: int = 0) -> str:
    """The output, after checking the exit code, that nothing crashed and that ``texts`` print literally."""
    printed = ANSI.sub("", out.stdout + out.stderr)
    assert out.returncode == code, printed
    assert "MarkupError" not in printed and "Traceback" not in printed, printed
    for text in texts:
        assert text in printed, (text, printed)
    return printed


# (arguments, with {root} for the folder; texts to see; exit code)
COMMANDS = [
    (["list", "models"], ["my [bold]mean[/bold] [{root}/cards]", "[baseline]"], 0),
    (["run", "--model", "mine", "--dataset", "{root}/screen.h5ad", "--perturbation-key", "guide", "--control-value",
      "NT", "--dry-run"], ["dataset: {root}/screen.h5ad", "loading {root}/screen.h5ad"], 0),
    (["export", "--dataset", "synthetic", "--out", "{root}/export"], ["wrote {root}/export: "], 0),
    (["data", "path"], ["{root}/store"], 0),
    (["data", "list"], ["data store: {root}/store"], 0),
    (["data", "import", "norman_subset", "{root}/absent.h5ad"], ["{root}/absent.h5ad is not a file"], 2),
    (["leaderboard", "--out", "{root}/boards"], ["no tracked runs in sqlite:///{root}/runs.db"], 2),
    (["check", "--reference", "{root}/absent.csv"], ["no reference file {root}/absent.csv"], 2),
    (["jobs", "{root}/cards"], ["{root}/cards holds no submission"], 2),
]


@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
@pytest.mark.parametrize("args, texts, code", COMMANDS, ids=[" ".join(args[:2]) for args, _, _ in COMMANDS])
def test_commands_print_bracketed_paths_literally(args, texts, code, terminal, home):
    root, env = home
    out = bench(*[arg.format(root=root) for arg in args], env={**env, **(TERMINAL if terminal else {})}, cwd=root)
    shows(out, *[text.format(root=root) for text in texts], code=code)


@pytest.mark.slow
def test_runs_scores_checks_and_sweeps_print_bracketed_paths_and_names_literally(home):
    root, env = home
    shows(bench("run", "--model", "mine", "--dataset", "synthetic", env=env, cwd=root),
          f"tracked in sqlite:///{root}/runs.db")
    shows(bench("export", "--dataset", "synthetic", "--out", str(root / "export"), env=env, cwd=root))
    train = ad.read_h5ad(root / "export" / "train.h5ad")
    wanted = pd.read_csv(root / "export" / "conditions.csv")["condition"].tolist()
    control = np.asarray(train[train.obs["condition"] == "ctrl"].X.mean(axis=0)).ravel()
    ad.AnnData(np.tile(control, (len(wanted), 1)), obs=pd.DataFrame(index=wanted),
               var=pd.DataFrame(index=train.var_names)).write_h5ad(root / "pred.h5ad")
    out = bench("score", "--dataset", "synthetic", "--predictions", str(root / "pred.h5ad"), "--name", "ext[x]",
                env=env, cwd=root)
    printed = shows(out, f"tracked as ext[x] [external] in sqlite:///{root}/runs.db")
    assert re.search(r"^1  ext\[x\] \[external\] · 1 seed$", printed, re.MULTILINE), printed
    out = bench("leaderboard", "--dataset", "synthetic", "--out", str(root / "boards"), "--no-plots", env=env, cwd=root)
    shows(out, f"synthetic: {root}/boards/synthetic.md, {root}/boards/synthetic.csv")

    reference = root / "reference.csv"
    reference.write_text(",".join(reference_check.COLUMNS) + "\nsynthetic,simulation,mean,default,1,mse,all,,,,,,\n")
    out = bench("check", "--reference", str(reference), "--update", "--force", env=env, cwd=root)
    shows(out, f"updated {reference}: 1 line(s)")
    shows(bench("check", "--reference", str(reference), env=env, cwd=root), "all 1 line(s) within tolerance")
    out = bench("sweep", "--model", "linear", "--dataset", "synthetic", "--trials", "1", "--study", "s[/root]",
                "--storage", f"sqlite:///{root}/sweeps.db", env=env, cwd=root)
    shows(out, f"study s[/root] in sqlite:///{root}/sweeps.db", f"wrote {root}/cards/linear@synthetic.toml")
