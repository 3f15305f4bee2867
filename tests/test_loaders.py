"""Loaders to canonical AnnData: real files through the store, hand-made files for every other case."""

from __future__ import annotations

import hashlib

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from conftest import real_data_file

from bench.core.errors import DataError
from bench.data.datasets import default_dataset, load_dataset
from bench.data.formats import parse_condition
from bench.data.loaders import load_h5ad, log_normalise
from bench.data.store import DataStore


def write(tmp_path, X, labels, key="condition", name="data.h5ad", var=None, **obs_columns) -> str:
    X = np.asarray(X, dtype=np.float32) if not sp.issparse(X) else X
    obs = pd.DataFrame({key: labels, **obs_columns}, index=[f"cell{i}" for i in range(len(labels))])
    var = var if var is not None else pd.DataFrame(index=[f"G{j}" for j in range(X.shape[1])])
    path = tmp_path / name
    ad.AnnData(X=X, obs=obs, var=var).write_h5ad(path)
    return path


def dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def log_data(n_cells: int, n_genes: int = 6, seed: int = 0) -> np.ndarray:
    return np.log1p(np.random.default_rng(seed).gamma(2.0, 1.5, size=(n_cells, n_genes)))


# ---- real data, through the store ------------------------------------------------------------------


def test_norman_subset_facts():
    source_path = real_data_file("perturbench_devel.h5ad")
    dataset = load_dataset("norman_subset")
    adata = dataset.adata
    conditions = adata.obs["condition"]
    assert adata.shape == (3375, 500) and (conditions == "ctrl").sum() == 100
    singles = {c for c in conditions.unique() if c != "ctrl" and "+" not in c}
    doubles = {c for c in conditions.unique() if "+" in c}
    assert len(singles) == 18 and len(doubles) == 15
    both = [d for d in doubles if all(g in singles for g in d.split("+"))]
    one = [d for d in doubles if sum(g in singles for g in d.split("+")) == 1]
    assert (len(both), len(one), len(doubles) - len(both) - len(one)) == (5, 3, 7)
    assert "PTPN12+SAMD1" in doubles and "SAMD1+PTPN12" not in set(conditions)
    assert all(d.split("+") == sorted(d.split("+")) for d in doubles)
    assert set(adata.obs["cell_type"]) == {"k562"}
    assert adata.X.dtype == np.float32 and sp.isspmatrix_csr(adata.X)
    source = ad.read_h5ad(source_path)
    source = source[source.obs["dataset"] == "norman19"]
    np.testing.assert_allclose(adata.X.toarray(), source.X.toarray(), rtol=1e-6)
    assert list(adata.obs_names) == list(source.obs_names) and list(adata.var_names) == list(source.var_names)
    assert dataset.sha256 == "220998f5630c813228c8661c86dd52244b9ac87127511289af90e0d900d8429b"
    assert adata.uns["bench"] == {"dataset": "norman_subset", "sha256": dataset.sha256}


def test_mcfaline23_subset_facts():
    real_data_file("perturbench_devel.h5ad")
    adata = load_dataset("mcfaline23_subset").adata
    assert set(adata.obs["cell_type"]) == {"A172", "T98G", "U87MG"}
    for cell_type in ("A172", "T98G", "U87MG"):
        conditions = set(adata.obs.loc[adata.obs["cell_type"] == cell_type, "condition"])
        assert "ctrl" in conditions and len(conditions - {"ctrl"}) == 9
        assert all("+" not in c for c in conditions)


def test_gears_fixture():
    source_path = real_data_file("gears_format_fixture.h5ad")
    adata = load_dataset("gears_norman_fixture").adata
    source = ad.read_h5ad(source_path)
    assert adata.shape == (50, 50) and list(adata.obs_names) == list(source.obs_names)
    assert list(adata.var_names) == list(source.var["feature_name"])
    assert list(adata.var["gene_id"]) == list(source.var_names)
    mapped = dict(zip(source.obs["condition"], adata.obs["condition"]))
    assert mapped["ctrl"] == "ctrl" and mapped["COL1A1+ctrl"] == "COL1A1" and mapped["ctrl+ETS2"] == "ETS2"
    assert mapped["MAP2K6+ELMSAN1"] == "ELMSAN1+MAP2K6" and mapped["ZC3HAV1+CEBPE"] == "CEBPE+ZC3HAV1"
    assert (adata.obs["condition"] == "ctrl").sum() == 6
    assert sp.issparse(adata.X) == sp.issparse(source.X)
    assert sp.issparse(adata.layers["counts"]) == sp.issparse(source.layers["counts"])
    np.testing.assert_array_equal(dense(adata.layers["counts"]), dense(source.layers["counts"]))
    np.testing.assert_allclose(dense(adata.X), dense(source.X))


# ---- formats on hand-made files --------------------------------------------------------------------


def test_scperturb_counts_are_normalised_and_kept(tmp_path):
    rng = np.random.default_rng(1)
    counts = rng.poisson(3.0, size=(40, 12)).astype(np.float32)
    labels = ["control"] * 10 + ["G1"] * 10 + ["G2_G1"] * 10 + ["G3"] * 10
    path = write(tmp_path, sp.csr_matrix(counts), labels, key="perturbation", cell_line=["K562"] * 40)
    adata = load_h5ad(path, "scperturb")
    assert list(pd.unique(adata.obs["condition"])) == ["ctrl", "G1", "G1+G2", "G3"]
    assert set(adata.obs["cell_type"]) == {"K562"}
    expected = ad.AnnData(counts.copy())
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    assert sp.isspmatrix_csr(adata.X) and adata.X.dtype == np.float32
    np.testing.assert_allclose(adata.X.toarray(), expected.X, rtol=1e-5)
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), counts)


def test_log_normalise_matches_scanpy_dense_and_sparse():
    counts = np.random.default_rng(2).poisson(2.0, size=(20, 7)).astype(np.float64)
    counts[3] = 0
    expected = ad.AnnData(counts.copy())
    sc.pp.normalize_total(expected, target_sum=1e4)
    sc.pp.log1p(expected)
    np.testing.assert_allclose(log_normalise(counts), expected.X, rtol=1e-5)
    np.testing.assert_allclose(log_normalise(sp.csr_matrix(counts)).toarray(), expected.X, rtol=1e-5)


def test_generic_h5ad_by_path_with_keys(tmp_path):
    X = log_data(9)
    var = pd.DataFrame({"symbol": [f"S{j}" for j in range(6)]}, index=[f"ENSG{j}" for j in range(6)])
    labels = ["NT"] * 3 + ["S2"] * 3 + ["S4+S1"] * 3
    path = write(tmp_path, X, labels, key="guide", name="my_screen.h5ad", var=var, line=["HEK"] * 9)
    dataset = load_dataset(
        str(path), perturbation_key="guide", control_value="NT", cell_type_key="line", gene_symbols_key="symbol"
    )
    assert dataset.name == "my_screen"
    assert dataset.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    adata = dataset.adata
    assert list(adata.obs["condition"]) == ["ctrl"] * 3 + ["S2"] * 3 + ["S1+S4"] * 3
    assert set(adata.obs["cell_type"]) == {"HEK"} and list(adata.var_names) == list(var["symbol"])
    assert isinstance(adata.X, np.ndarray) and adata.X.dtype == np.float32
    np.testing.assert_allclose(adata.X, X.astype(np.float32))
    assert "counts" not in adata.layers


def test_generic_defaults_and_separator(tmp_path):
    path = write(tmp_path, log_data(6), ["ctrl", "ctrl", "B|A", "A", "A", "B|A"], key="condition")
    adata = load_h5ad(path, "h5ad", {"separator": "|"})
    assert list(adata.obs["condition"]) == ["ctrl", "ctrl", "A+B", "A", "A", "A+B"]
    assert set(adata.obs["cell_type"]) == {"default"}


def test_duplicate_cell_names_are_made_unique(tmp_path):
    adata = ad.AnnData(
        X=log_data(4).astype(np.float32),
        obs=pd.DataFrame({"condition": ["ctrl", "ctrl", "A", "A"]}, index=["c", "c", "d", "d"]),
    )
    path = tmp_path / "dups.h5ad"
    adata.write_h5ad(path)
    assert load_h5ad(path, "h5ad").obs_names.is_unique


@pytest.mark.parametrize(
    "label, control, separator, expected",
    [
        ("control", "control", "+", "ctrl"),
        ("KLF1", "control", "+", "KLF1"),
        ("SAMD1+PTPN12", "control", "+", "PTPN12+SAMD1"),
        ("A+ctrl", "ctrl", "+", "A"),
        ("ctrl+B", "ctrl", "+", "B"),
        ("B_A", "control", "_", "A+B"),
        (" A ", "ctrl", "+", "A"),
    ],
)
def test_parse_condition(label, control, separator, expected):
    assert parse_condition(label, control, separator) == expected


@pytest.mark.parametrize("label", ["A+B+C", "A+ctrl+B", "ctrl+ctrl", "A+", "A+A", "ctrl+ctrl+A"])
def test_parse_condition_refuses(label):
    with pytest.raises(ValueError):
        parse_condition(label, "ctrl", "+")


def test_ctrl_cannot_name_a_gene():
    with pytest.raises(ValueError, match="reserved"):
        parse_condition("ctrl", "control", "+")


# ---- malformed input: one-line errors that name the problem ----------------------------------------


def malformed(tmp_path, case: str):
    """``(path, format, keys)`` of a broken file."""
    X = log_data(6)
    labels = ["ctrl", "ctrl", "A", "A", "A+B", "A+B"]
    if case == "no control":
        return write(tmp_path, X, ["A", "A", "B", "B", "A+B", "A+B"]), "h5ad", {}
    if case == "triple":
        return write(tmp_path, X, [*labels[:5], "A+B+C"]), "h5ad", {}
    if case == "control inside a double":
        return write(tmp_path, X, [*labels[:5], "A+ctrl+B"]), "gears", {}
    if case in ("nan", "inf", "negative"):
        X[2, 3] = {"nan": np.nan, "inf": np.inf, "negative": -0.5}[case]
        return write(tmp_path, X, labels), "h5ad", {}
    if case == "not log":
        return write(tmp_path, X * 100, labels), "h5ad", {}
    if case == "duplicate symbols":
        var = pd.DataFrame({"gene_name": ["A", "B", "C", "A", "D", "E"]}, index=[f"E{j}" for j in range(6)])
        return write(tmp_path, X, labels, var=var), "gears", {}
    if case == "duplicate var names":
        return write(tmp_path, X, labels, var=pd.DataFrame(index=["A", "B", "B", "C", "D", "E"])), "h5ad", {}
    if case == "no symbol column":
        return write(tmp_path, X, labels), "gears", {}
    if case == "missing obs key":
        return write(tmp_path, X, labels, key="guide"), "h5ad", {}
    if case == "missing cell type key":
        return write(tmp_path, X, labels), "h5ad", {"cell_type": "line"}
    if case == "unlabelled cells":
        return write(tmp_path, X, [*labels[:5], None]), "h5ad", {}
    if case == "absent subset":
        return write(tmp_path, X, labels, dataset=["x"] * 6), "h5ad", {"subset": {"key": "dataset", "value": "y"}}
    if case == "cell type without controls":
        return write(tmp_path, X, labels, cell_type=["a", "a", "b", "b", "a", "b"]), "h5ad", {}
    if case == "truncated":
        path = write(tmp_path, X, labels)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "h5ad", {}
    if case == "not h5ad":
        path = tmp_path / "data.h5ad"
        path.write_text("cell,gene\n1,2\n")
        return path, "h5ad", {}
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no control", r"no control cells: no obs\['condition'\] equals 'ctrl' \(values: 'A', 'B', 'A\+B'\)"),
        ("triple", r"unknown condition syntax 'A\+B\+C' .*3 genes"),
        ("control inside a double", r"unknown condition syntax 'A\+ctrl\+B'"),
        ("nan", "NaN or infinite values"),
        ("inf", "NaN or infinite values"),
        ("negative", "negative values"),
        ("not log", "neither raw counts .* nor log-normalised"),
        ("duplicate symbols", r"duplicate gene symbol 'A' in var\['gene_name'\]"),
        ("duplicate var names", "duplicate gene symbol 'B' in var_names"),
        ("no symbol column", "var has no gene symbol column 'gene_name'"),
        ("missing obs key", "obs has no perturbation column 'condition'"),
        ("missing cell type key", "obs has no cell type column 'line'"),
        ("unlabelled cells", "1 cells have no label"),
        ("absent subset", r"no cell has obs\['dataset'\] == 'y'"),
        ("cell type without controls", "cell type 'b' has no control cells"),
        ("truncated", "truncated or corrupt"),
        ("not h5ad", "truncated or corrupt"),
    ],
)
def test_malformed_input_is_a_one_line_error(tmp_path, case, message):
    path, fmt, keys = malformed(tmp_path, case)
    with pytest.raises(DataError, match=message) as error:
        load_h5ad(path, fmt, keys)
    assert "\n" not in str(error.value)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.h5ad"))


# ---- names, simulated datasets, the default ---------------------------------------------------------


def test_unknown_names_and_misused_options():
    with pytest.raises(DataError, match="did you mean 'norman_subset'"):
        load_dataset("norman_subet")
    with pytest.raises(DataError, match="--perturbation-key applies to .h5ad paths only"):
        load_dataset("norman_subset", perturbation_key="guide")
    with pytest.raises(DataError, match="is a resource, not a perturbation dataset"):
        load_dataset("gene_ontology")


TINY = """name = "{name}"
format = "synthetic"
description = "d"
license = "l"
citation = "c"
[simulator]
n_cells = 300
n_genes = 60
n_modules = 4
n_singles = 5
n_doubles = 5
seed = {seed}
"""


def test_simulated_datasets_are_made_once_and_cached(tmp_path, monkeypatch):
    import bench.data.simulator as simulator

    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    (home / "datasets" / "tiny.toml").write_text(TINY.format(name="tiny", seed=1))
    (home / "datasets" / "tiny2.toml").write_text(TINY.format(name="tiny2", seed=2))
    monkeypatch.setenv("BENCH_CATALOG", str(home))
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    original = simulator.simulate
    monkeypatch.setattr(simulator, "simulate", lambda **kw: calls.append(kw) or original(**kw))
    first = load_dataset("tiny")
    second = load_dataset("tiny")
    assert len(calls) == 1 and first.sha256 == second.sha256
    assert (second.adata.X != first.adata.X).nnz == 0
    assert list(second.adata.obs["condition"]) == list(first.adata.obs["condition"])
    assert second.adata.obs["condition"].dtype == object and second.adata.X.dtype == np.float32
    assert second.adata.uns["bench"] == {"dataset": "tiny", "sha256": first.sha256}
    assert sorted(p.name for p in (tmp_path / "cache" / "synthetic").iterdir()) == [f"{first.sha256}.h5ad"]
    assert load_dataset("tiny2").sha256 != first.sha256 and len(calls) == 2


def test_default_dataset(tmp_path):
    store = DataStore(tmp_path)
    name, note = default_dataset(store)
    assert name == "synthetic" and "bench data fetch norman" in note and "\n" not in note
    (tmp_path / "perturbench_devel.h5ad").write_bytes(b"")
    name, note = default_dataset(store)
    assert name == "norman_subset" and "bench data fetch norman" in note
    (tmp_path / "gears_norman.h5ad").write_bytes(b"")
    assert default_dataset(store)[0] == "norman"
