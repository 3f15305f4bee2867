"""The CPA-style models (``cpa``, ``latent_additive``): learning, determinism, unseen genes, likelihoods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import held_out_error

from bench.adapters.baselines import MeanModel
from bench.adapters.cpa import CPAModel
from bench.core import registry
from bench.core.api import PredictQuery, TrainData, check_prediction
from bench.core.errors import BenchError, ModelError
from bench.evaluation import splits

CARDS = ("cpa", "latent_additive")


def fast_model(name: str, **overrides) -> CPAModel:
    card = registry.find_card(name)
    return registry.build(card, {**registry.resolve_params(card, "fast"), **overrides})


@pytest.mark.parametrize("name", CARDS)
def test_learns_held_out_additive_doubles_better_than_mean(name, held_out_doubles):
    assert len(held_out_doubles[3]) >= 3
    baseline = held_out_error(MeanModel(), held_out_doubles)
    assert held_out_error(fast_model(name), held_out_doubles) < 0.5 * baseline
    assert held_out_error(fast_model(name, epochs=0), held_out_doubles) > 0.5 * baseline


@pytest.fixture(scope="module")
def simulation(small_synthetic):
    split = splits.make(small_synthetic, "simulation", 1, "synthetic", "sha")
    return splits.apply(split, small_synthetic), split


def fit_predict(name, data, seed, conditions, knowledge=None, **overrides):
    model = fast_model(name, **overrides)
    model.fit(TrainData(cells=data.train, val=data.val, gene_knowledge=knowledge, seed=seed))
    query = PredictQuery(conditions=conditions, control=data.query_control, cell_type="type_0", seed=seed)
    return model, check_prediction(model.predict(query), query, name)


@pytest.mark.parametrize("name", CARDS)
def test_same_seed_same_predictions_other_seed_different(name, simulation):
    data, split = simulation
    conditions = sorted(split.test)
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    first = fit_predict(name, data, 3, conditions, epochs=3)[1]
    assert torch.equal(state, torch.random.get_rng_state()) and torch.get_num_threads() == threads
    second = fit_predict(name, data, 3, conditions, epochs=3)[1]
    other = fit_predict(name, data, 4, conditions, epochs=3)[1]
    assert np.array_equal(first.means.to_numpy(), second.means.to_numpy())
    assert np.array_equal(first.cells.X, second.cells.X)
    assert not np.allclose(first.means.to_numpy(), other.means.to_numpy())


class FakeKnowledge:
    """Gene Ontology stand-in: seeded 8-d embeddings for the even-numbered genes only."""

    def embeddings(self, genes):
        found = np.array([g.startswith("G") and int(g[1:]) % 2 == 0 for g in genes])
        table = np.stack([np.random.default_rng(int(g[1:]) if f else 0).normal(size=8) for g, f in zip(genes, found)])
        return (table * found[:, None]).astype(np.float32), found

    def graph(self, genes):
        raise AssertionError("not used")


@pytest.mark.parametrize("knowledge", [None, FakeKnowledge()], ids=["data-features", "go-features"])
def test_unseen_genes_are_predicted_and_differ(knowledge, simulation):
    data, split = simulation
    unseen = sorted(c for c, group in split.test.items() if group in ("unseen_single", "combo_seen0"))
    assert len(unseen) >= 2
    model, prediction = fit_predict("latent_additive", data, 1, [*unseen, "NOTAGENE"], knowledge)
    assert (model.vocabulary.features.go_dim > 0) == (knowledge is not None)
    means = prediction.means.to_numpy()
    assert np.isfinite(means).all()
    spread = np.abs(means[: len(unseen)] - means[: len(unseen)].mean(axis=0)).max(axis=1)
    assert (spread > 1e-3).all()


@pytest.mark.parametrize("name", CARDS)
def test_predicted_cells_have_shape_conditions_and_log_normalised_counts(name, simulation):
    data, split = simulation
    conditions = sorted(split.test)[:3]
    model, prediction = fit_predict(name, data, 1, conditions, epochs=2, max_cells=20)
    assert model.net.log_theta is not None  # counts layer present: "auto" chose the negative binomial
    cells = prediction.cells
    n = min(20, data.query_control.n_obs)
    assert cells.shape == (len(conditions) * n, data.train.n_vars)
    assert list(cells.var_names) == list(data.train.var_names)
    assert cells.obs["condition"].value_counts().to_dict() == {c: n for c in conditions}
    assert (cells.X >= 0).all()
    assert np.allclose(np.expm1(cells.X.astype(np.float64)).sum(axis=1), 1e4, rtol=1e-3)


def test_gaussian_cells_average_to_the_means(simulation):
    data, split = simulation
    conditions = sorted(split.test)[:2]
    model, prediction = fit_predict("cpa", data, 1, conditions, epochs=2, likelihood="gaussian")
    assert model.net.log_theta is None
    for condition in conditions:
        cells = prediction.cells[prediction.cells.obs["condition"] == condition].X
        assert np.allclose(cells.mean(axis=0), prediction.means.loc[condition].to_numpy(), atol=1e-5)


def test_negative_binomial_needs_counts(simulation):
    data, _ = simulation
    train = data.train.copy()
    del train.layers["counts"]
    with pytest.raises(ModelError, match="counts layer"):
        fast_model("cpa", likelihood="nb").fit(TrainData(cells=train, val=data.val, seed=1))


def test_cell_types_get_their_own_predictions():
    from bench.data.simulator import simulate

    adata = simulate(n_cells=600, n_genes=60, n_modules=4, n_singles=6, n_doubles=4, n_cell_types=2, seed=3)
    data = splits.apply(splits.make(adata, "simulation", 1, "synthetic2", "sha"), adata)
    model = fast_model("cpa", epochs=3)
    model.fit(TrainData(cells=data.train, val=data.val, seed=1))
    assert model.net.cell_types.num_embeddings == 2 and model.vocabulary.cell_types == ["type_0", "type_1"]
    conditions = sorted(set(data.test.obs["condition"]))
    predictions = {}
    for cell_type in ("type_0", "type_1", "type_unknown"):
        query = PredictQuery(conditions=conditions, control=data.query_control, cell_type=cell_type, seed=1)
        predictions[cell_type] = check_prediction(model.predict(query), query, "cpa").means.to_numpy()
    assert not np.allclose(predictions["type_0"], predictions["type_1"])
    assert np.isfinite(predictions["type_unknown"]).all()


@pytest.mark.parametrize("override", ["likelihood=\"poisson\"", "encoder_input=\"x\"", "dropout=1.5", "latent_dim=0"])
def test_invalid_parameters_are_one_line_user_errors(override):
    card = registry.find_card("cpa")
    with pytest.raises(BenchError, match="invalid parameters") as error:
        registry.build(card, registry.resolve_params(card, overrides=[override]))
    assert "\n" not in str(error.value)


def test_gene_ontology_embeds_unseen_genes_on_norman_subset(norman_subset):
    from bench.data.knowledge import StoreGeneKnowledge

    adata = norman_subset.adata
    split = splits.make(adata, "simulation", 1, "norman_subset", norman_subset.sha256)
    data = splits.apply(split, adata)
    model = fast_model("latent_additive", epochs=3)
    model.fit(TrainData(cells=data.train, val=data.val, gene_knowledge=StoreGeneKnowledge(), seed=1))
    assert model.net.log_theta is None and model.vocabulary.features.go_dim == 64
    unseen = sorted(c for c, group in split.test.items() if group == "unseen_single")
    cell_type = str(adata.obs["cell_type"].iloc[0])
    query = PredictQuery(conditions=unseen, control=data.query_control, cell_type=cell_type, seed=1)
    means = check_prediction(model.predict(query), query, "latent_additive").means.to_numpy()
    assert len(unseen) >= 2 and not np.allclose(means[0], means[1])
