"""A split's parts are views of the dataset (no copies), their means come from one pass over X, and
the raw counts are read only for the models whose card says they use them."""

from __future__ import annotations

import textwrap
import tracemalloc
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pytest
from conftest import adapter_catalog

from bench.core import registry
from bench.data.datasets import Dataset, add_counts, load_dataset
from bench.evaluation import splits
from bench.workflows import runner


@pytest.fixture(scope="module")
def cut(small_synthetic):
    split = splits.make(small_synthetic, "simulation", 1, "small", "sha")
    return split, splits.apply(split, small_synthetic)


def test_parts_are_views_of_the_right_cells(cut, small_synthetic):
    split, data = cut
    obs = small_synthetic.obs
    for name in ("train", "val", "test", "query_control"):
        assert getattr(data, name).is_view
    assert set(data.test.obs["condition"]) == set(split.test)
    assert set(data.val.obs["condition"]) == set(split.val)
    assert set(data.query_control.obs_names) == set(split.cells["query_control"])
    train = obs.index[obs["condition"].isin(split.train)].difference(split.cells["query_control"])
    assert set(data.train.obs_names) == set(train)


@pytest.fixture(scope="module")
def two_cell_types():
    from bench.data.simulator import simulate

    adata = simulate(n_cells=800, n_genes=40, n_modules=4, n_singles=6, n_doubles=4, n_cell_types=2, seed=3)
    return splits.apply(splits.make(adata, "simulation", 1, "two_types", "sha"), adata)


@pytest.mark.parametrize("part", ["train", "val", "test", "query_control"])
def test_means_are_the_mean_of_each_cell_type_and_conditions_cells(two_cell_types, part):
    cells = getattr(two_cell_types, part)
    dense = np.asarray(cells.X.toarray() if hasattr(cells.X, "toarray") else cells.X, dtype=np.float64)
    obs = cells.obs[["cell_type", "condition"]].astype(str)
    means = two_cell_types.means(part)
    assert sorted(means) == sorted(set(obs["cell_type"])) and len(means) == 2
    for cell_type, table in means.items():
        mine = (obs["cell_type"] == cell_type).to_numpy()
        assert list(table.index) == sorted(set(obs["condition"][mine]))
        for condition in table.index:
            rows = mine & (obs["condition"] == condition).to_numpy()
            np.testing.assert_allclose(table.loc[condition], dense[rows].mean(axis=0), rtol=1e-10)


def test_training_pseudobulk_stacks_the_training_means(two_cell_types):
    bulk = two_cell_types.pseudobulk("train")
    assert bulk.index.names == ["cell_type", "condition"]
    for cell_type, table in two_cell_types.means("train").items():
        assert "ctrl" in table.index
        np.testing.assert_array_equal(bulk.xs(cell_type, level="cell_type").to_numpy(), table.to_numpy())


def test_a_baseline_run_copies_no_expression(small_synthetic):
    """The additive baseline reads the training pseudobulk only: the run allocates far less than X
    (ten copies of the small screen's cells, so that X outweighs the run's own tables)."""
    adata = ad.concat({str(copy): small_synthetic for copy in range(10)}, index_unique="-")
    prepared = runner.PreparedDataset.of(Dataset("small_x10", adata, "b" * 64))
    card = registry.find_card("additive")
    spec = runner.RunSpec(card, {}, prepared.name, "simulation", 1)
    runner.run(spec, prepared)  # compiles and caches what a first run needs
    X = adata.X
    size = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    prepared._split = None
    tracemalloc.start()
    try:
        result = runner.run(spec, prepared)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.ok
    assert peak < 0.5 * size, f"the run allocated {peak} bytes; X is {size}"


RECORDER = textwrap.dedent(
    '''
    import pandas as pd
    from bench.core.api import Prediction

    class Recorder:
        layers = None
        def fit(self, train):
            Recorder.layers = set(train.cells.layers)
        def predict(self, query):
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))
    '''
)


@pytest.fixture
def recording_cards(tmp_path, monkeypatch):
    cards = {"reads_counts": "Recorder\ncounts = true\n", "skips_counts": "Recorder\ncounts = false\n"}
    return adapter_catalog(tmp_path, monkeypatch, "recording_adapter", RECORDER, cards)


def test_counts_are_read_for_the_models_that_use_them_only(small_synthetic, tmp_path, recording_cards):
    from recording_adapter import Recorder

    path = tmp_path / "screen.h5ad"
    small_synthetic.write_h5ad(path)
    dataset = load_dataset(path, counts=False)
    assert "counts" not in dataset.adata.layers
    prepared = runner.PreparedDataset.of(dataset)
    runner.run(runner.RunSpec(registry.find_card("skips_counts"), {}, prepared.name, "simulation", 1), prepared)
    assert Recorder.layers == set() and "counts" not in prepared.adata.layers
    runner.run(runner.RunSpec(registry.find_card("reads_counts"), {}, prepared.name, "simulation", 1), prepared)
    assert Recorder.layers == {"counts"}
    expected = small_synthetic.layers["counts"]
    np.testing.assert_array_equal(prepared.adata.layers["counts"].toarray(), expected.toarray())


def test_add_counts_leaves_data_without_counts_alone(small_synthetic):
    adata = small_synthetic.copy()
    del adata.layers["counts"]
    add_counts(adata, lambda: SimpleNamespace(adata=adata.copy()))
    assert "counts" not in adata.layers
