"""`bench export` and `bench score`: predictions made outside the harness, scored as `bench run` scores cards."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import bench, real_data_file

from bench.core.errors import BenchError
from bench.workflows.external import read_predictions

GENES = ["A", "B", "C", "D"]
WANTED = pd.DataFrame({"cell_type": ["k562"] * 3, "condition": ["A", "A+B", "C"], "subgroup": ["s", "d", "s"]})


def write(tmp_path, X, obs_names, genes=GENES, obs=None, name="pred.h5ad"):
    adata = ad.AnnData(np.asarray(X, dtype=np.float32), obs=obs if obs is not None else pd.DataFrame(index=obs_names),
                       var=pd.DataFrame(index=genes))
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def read(path):
    return read_predictions(path, WANTED, GENES, "toy/simulation seed 1")


def test_means_are_read_in_the_test_sets_order(tmp_path):
    path = write(tmp_path, [[3, 3, 3, 3], [1, 1, 1, 1], [2, 2, 2, 2]], ["C", "A", "A+B"])
    means, cells = read(path)
    assert cells is None
    assert list(means.index) == [("k562", "A"), ("k562", "A+B"), ("k562", "C")]
    assert means[["A"]].to_numpy().ravel().tolist() == [1.0, 2.0, 3.0]


def test_predicted_cells_are_averaged_and_their_control_cells_ignored(tmp_path):
    obs = pd.DataFrame({"condition": ["A", "A", "A+B", "C", "ctrl"]}, index=[f"c{i}" for i in range(5)])
    path = write(tmp_path, [[1, 0, 0, 0], [3, 0, 0, 0], [5, 0, 0, 0], [7, 0, 0, 0], [100, 0, 0, 0]], None, obs=obs)
    means, cells = read(path)
    assert means["A"].tolist() == [2.0, 5.0, 7.0]
    assert sorted(cells["k562"].obs["condition"]) == ["A", "A", "A+B", "C"]


@pytest.mark.parametrize(
    ("rows", "genes", "values", "message"),
    [
        (["A", "A+B"], GENES, None, "no prediction for 1 test condition.*'C'"),
        (["A", "A+B", "C", "B+D"], GENES, None, "1 condition.*outside the test set of toy/simulation seed 1.*'B\\+D'.*another split"),
        (["A", "A+B", "C"], ["B", "A", "C", "D"], None, "different order"),
        (["A", "A+B", "C"], ["A", "B", "C", "E"], None, "1 of the dataset's genes missing \\(e.g. 'D'\\); 1 unknown \\(e.g. 'E'\\)"),
        (["A", "A+B", "C"], GENES, np.nan, "NaN or infinite values, e.g. for condition 'A\\+B'"),
        (["A", "A+B", "C", "A"], GENES, None, "condition 'A' has two rows"),
    ],
)
def test_bad_predictions_are_refused_with_what_is_wrong(tmp_path, rows, genes, values, message):
    X = np.ones((len(rows), len(genes)))
    if values is not None:
        X[1, 2] = values
    with pytest.raises(BenchError, match=message):
        read(write(tmp_path, X, rows, genes=genes))


def test_a_file_that_is_not_h5ad_or_missing_is_refused(tmp_path):
    (tmp_path / "pred.csv").write_text("condition,A\n")
    with pytest.raises(BenchError, match="cannot read .*pred.csv as an .h5ad file"):
        read(tmp_path / "pred.csv")
    with pytest.raises(BenchError, match="does not exist"):
        read(tmp_path / "absent.h5ad")


def test_several_cell_types_need_obs_cell_type(tmp_path):
    wanted = pd.concat([WANTED, WANTED.assign(cell_type="rpe1")])
    path = write(tmp_path, np.ones((3, 4)), ["A", "A+B", "C"])
    with pytest.raises(BenchError, match=r"obs\['cell_type'\] is needed.*'k562', 'rpe1'"):
        read_predictions(path, wanted, GENES, "toy")


@pytest.mark.slow
def test_numpy_additive_predictions_score_as_the_additive_card(workdir, tmp_path):
    """Export, predict with the additive rule in a few lines of numpy, score: the leaderboard row is the card's."""
    real_data_file("perturbench_devel.h5ad")
    where = ["--dataset", "norman_subset", "--split", "simulation", "--seed", "2"]
    out = bench("export", *where, "--out", str(tmp_path / "export"), **workdir)
    assert out.returncode == 0, out.stderr
    train = ad.read_h5ad(tmp_path / "export" / "train.h5ad")
    wanted = pd.read_csv(tmp_path / "export" / "conditions.csv")
    assert {"cell_type", "condition"} <= set(train.obs) and len(wanted) > 5
    X = train.X.toarray() if hasattr(train.X, "toarray") else train.X
    means = pd.DataFrame(X, columns=train.var_names).astype(float).groupby(train.obs["condition"].to_numpy()).mean()
    change = means.drop("ctrl") - means.loc["ctrl"]
    rows = [means.loc["ctrl"] + sum(change.loc[g] if g in change.index else change.mean() for g in c.split("+"))
            for c in wanted["condition"]]
    write(tmp_path, np.stack(rows), wanted["condition"].tolist(), genes=list(train.var_names))

    out = bench("score", *where, "--predictions", str(tmp_path / "pred.h5ad"), "--name", "numpy_additive", **workdir)
    assert out.returncode == 0, out.stderr
    assert "tracked as numpy_additive [external]" in out.stdout
    caption = " ".join(out.stdout.split()).split("no baseline")[1]  # bench score has no --model: no hint at one
    assert "`bench run --model additive,linear --dataset norman_subset --split simulation --seeds 2`" in caption
    assert "(e.g. --model" not in caption
    out = bench("run", "--model", "additive", *where[:4], "--seeds", "2", **workdir)
    assert out.returncode == 0, out.stderr
    out = bench("leaderboard", "--dataset", "norman_subset", "--no-plots", "--out", str(tmp_path / "lb"), **workdir)
    assert out.returncode == 0, out.stderr

    board = pd.read_csv(tmp_path / "lb" / "norman_subset.csv")
    card = board[board["label"] == "additive"].set_index(["metric", "subgroup"])["mean"]
    ours = board[board["label"] == "numpy_additive [external]"].set_index(["metric", "subgroup"])["mean"]
    assert len(card) > 10 and list(ours.index) == list(card.index)
    np.testing.assert_allclose(ours.to_numpy(), card.to_numpy(), atol=1e-5)  # float32 file, 6 decimals in the CSV


@pytest.mark.slow
def test_score_and_export_refuse_bad_input_in_one_line(workdir, tmp_path):
    real_data_file("perturbench_devel.h5ad")
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    out = bench("export", "--dataset", "norman_subset", "--out", str(folder), **workdir)
    assert out.returncode == 2 and "already exists and is not an empty folder" in out.stderr
    assert (folder / "keep.txt").read_text() == "mine" and len(list(folder.iterdir())) == 1
    out = bench("score", "--dataset", "norman_subset", "--predictions", "p.h5ad", "--name", "additive", **workdir)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "is a model card's name" in out.stderr
    out = bench("score", "--dataset", "norman_subset", "--predictions", "p.h5ad", "--name", "ceiling", **workdir)
    assert out.returncode == 2 and "is the data ceiling's name" in out.stderr
