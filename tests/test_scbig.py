"""scBIG: Gene-Relation Clustering, the encoder, flow matching, structure losses, the adapter end to end."""

from __future__ import annotations

import gzip
import itertools
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import held_out_error
from sklearn.metrics import adjusted_rand_score

from bench import registry
from bench.adapters.baselines import ControlModel
from bench.adapters.scbig import ScBIGModel, clustering, priors
from bench.adapters.scbig.encoder import GeneClusterAwareEncoder, PCALatent, gene_moments
from bench.adapters.scbig.flow import ConditionEncoder, ot_pairs, solve
from bench.adapters.scbig.pretrain import PretrainSettings, pretrain, reconstruction_error
from bench.adapters.scbig.priors import data_gene_embeddings
from bench.adapters.scbig.structure import cluster_correlation_loss, membership, pathway_ot_loss
from bench.api import PredictQuery, TrainData
from bench.conditions import CONTROL
from bench.errors import ModelError

CARDS = ("scbig", "scbig_pca_latent", "scbig_random_clusters", "scbig_no_structure_loss")


def fast_model(name: str = "scbig", **overrides) -> ScBIGModel:
    card = registry.find_card(name)
    return registry.build(card, {**registry.resolve_params(card, "fast"), **overrides})


def planted(adata) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's module of every gene and the mask of genes that belong to a module."""
    module = np.asarray(adata.uns["simulation"]["gene_module"])
    return module, module >= 0


def test_gene_relation_clustering_recovers_planted_programs(small_synthetic):
    module, in_module = planted(small_synthetic)
    k = int(module.max()) + 1
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0])
    embeddings = data_gene_embeddings(train, np.random.default_rng(0))
    no_graph = sp.csr_matrix((small_synthetic.n_vars, small_synthetic.n_vars))
    labels = clustering.gene_relation_clusters(embeddings, no_graph, k, seed=0)
    random = clustering.random_clusters(small_synthetic.n_vars, k, seed=0)
    grc_ari = adjusted_rand_score(module[in_module], labels[in_module])
    random_ari = adjusted_rand_score(module[in_module], random[in_module])
    assert grc_ari > 0.6 and grc_ari - random_ari > 0.5, (grc_ari, random_ari)
    assert sorted(np.bincount(labels)) == sorted(clustering.capacities(small_synthetic.n_vars, k))
    order = clustering.gene_order(labels)
    assert sorted(order) == list(range(small_synthetic.n_vars))
    assert (np.diff(labels[order]) >= 0).all()


def test_relation_graph_pulls_neighbours_together():
    """Uninformative embeddings plus a graph of four cliques: three refinement rounds with the graph term
    must move the clusters towards the cliques, far beyond the same clustering without the graph."""
    genes = [f"g{i}" for i in range(40)]
    clique = np.repeat(np.arange(4), 10)
    edges = [(genes[a], genes[b]) for a, b in itertools.combinations(range(40), 2) if clique[a] == clique[b]]
    graph = pd.DataFrame(edges, columns=["source", "target"]).assign(importance=1.0)
    embeddings = np.random.default_rng(1).normal(size=(40, 8))
    with_graph = clustering.gene_relation_clusters(embeddings, clustering.adjacency(graph, genes), 4, seed=0)
    without = clustering.gene_relation_clusters(embeddings, sp.csr_matrix((40, 40)), 4, seed=0)
    assert adjusted_rand_score(clique, with_graph) > adjusted_rand_score(clique, without) + 0.3


@pytest.mark.parametrize("n_genes, expected", [(500, 32), (120, 15), (20, 2), (5, 1), (5000, 32)])
def test_number_of_clusters_rule(n_genes, expected):
    assert clustering.n_clusters(n_genes) == expected


def test_rounding_respects_capacities_and_follows_the_plan():
    plan = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.9]])
    labels = clustering.round_to_capacities(plan, np.array([2, 2]))
    assert labels.tolist() == [0, 0, 1, 1]


def test_encoder_round_trip_beats_pca_of_the_same_size(small_synthetic):
    x = small_synthetic.X.toarray().astype(np.float32)
    rows = np.random.default_rng(0).permutation(len(x))
    train, held_out = x[rows[:700]], x[rows[700:]]
    labels = clustering.random_clusters(x.shape[1], 6, seed=0)
    embeddings = data_gene_embeddings(TrainData(cells=small_synthetic[rows[:700]], val=small_synthetic[:0]),
                                      np.random.default_rng(0))
    cluster_embeddings = np.stack([embeddings[labels == c].mean(axis=0) for c in range(6)])
    torch.manual_seed(0)
    net = GeneClusterAwareEncoder(labels, cluster_embeddings, *gene_moments(train), 3, 64, 1, 4, 4, 128, 0.0)
    pretrain(net, train, held_out, PretrainSettings(40, 64, 1e-3, 8), np.random.default_rng(0), "cpu")
    gcae = reconstruction_error(net, held_out, "cpu", 256)
    pca = reconstruction_error(PCALatent(train.astype(np.float64), 3), held_out, "cpu", 256)
    assert gcae < pca, (gcae, pca)


def test_ot_pairs_minimise_the_transport_cost():
    x0, x1 = torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.randn(6, 3)
    pairs = ot_pairs(x0, x1)
    cost = lambda p: float(((x1 - x0[list(p)]) ** 2).sum())
    assert sorted(pairs) == list(range(6))
    assert cost(pairs) == pytest.approx(min(cost(p) for p in itertools.permutations(range(6))))


def test_solve_integrates_a_constant_field_exactly():
    shift = torch.tensor([[1.0, -2.0]])

    def velocity(x, t, condition):
        return shift.expand(len(x), -1)

    x0 = torch.zeros(4, 2)
    assert torch.allclose(solve(velocity, x0, torch.zeros(1, 3), steps=7), shift.expand(4, -1), atol=1e-6)


def test_condition_pooling_ignores_gene_order_and_padding():
    torch.manual_seed(0)
    encoder = ConditionEncoder(feature_dim=5, width=8, n_cell_types=1)
    a, b = torch.randn(1, 1, 5), torch.randn(1, 1, 5)
    both = torch.ones(1, 2, dtype=torch.bool)
    cell_type = torch.tensor([0])
    forward = encoder(torch.cat([a, b], dim=1), both, cell_type)
    backward = encoder(torch.cat([b, a], dim=1), both, cell_type)
    assert torch.allclose(forward, backward, atol=1e-6)
    single = encoder(torch.cat([a, torch.randn(1, 1, 5)], dim=1), torch.tensor([[True, False]]), cell_type)
    padded = encoder(torch.cat([a, torch.zeros(1, 1, 5)], dim=1), torch.tensor([[True, False]]), cell_type)
    assert torch.allclose(single, padded, atol=1e-6)


def test_structure_losses_vanish_on_the_truth_and_have_gradients():
    generator = torch.Generator().manual_seed(0)
    observed = torch.randn(32, 12, generator=generator)
    clusters = membership([np.arange(0, 4), np.arange(4, 8), np.arange(8, 12)], 12, "cpu")
    pathways = membership([np.arange(0, 6), np.arange(3, 12)], 12, "cpu")
    assert float(cluster_correlation_loss(observed, observed, clusters)) == pytest.approx(0.0, abs=1e-5)
    predicted = (observed + torch.randn(32, 12, generator=generator)).requires_grad_(True)
    correlation = cluster_correlation_loss(predicted, observed, clusters)
    shifted = pathway_ot_loss(predicted + 2.0, observed, pathways)
    assert float(correlation.detach()) > 0.05
    assert float(shifted.detach()) > float(pathway_ot_loss(observed, observed, pathways)) + 1.0
    (correlation + shifted).backward()
    assert torch.isfinite(predicted.grad).all() and predicted.grad.abs().sum() > 0


def test_flow_matching_learns_held_out_seen_doubles(held_out_doubles):
    assert len(held_out_doubles[3]) >= 3
    control = held_out_error(ControlModel(), held_out_doubles)
    assert held_out_error(fast_model(), held_out_doubles) < 0.8 * control
    assert held_out_error(fast_model(flow_steps=0), held_out_doubles) > 0.8 * control


def test_fit_is_deterministic_per_seed_and_restores_the_callers_state(held_out_doubles):
    train, val, query, held, _ = held_out_doubles
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    runs = []
    for seed in (1, 1, 2):
        model = fast_model(flow_steps=40, ae_epochs=3)
        model.fit(TrainData(cells=train, val=val, seed=seed))
        runs.append(model.predict(PredictQuery(held, query, "type_0", seed=seed)).means.to_numpy())
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_ablation_cards_change_only_their_part(small_synthetic):
    params = {name: registry.resolve_params(registry.find_card(name), "fast") for name in CARDS}
    differing = {name: {k for k in params[name] if params[name][k] != params["scbig"][k]} for name in CARDS}
    assert differing == {"scbig": set(), "scbig_pca_latent": {"latent"}, "scbig_random_clusters": {"clusters"},
                         "scbig_no_structure_loss": {"correlation_weight", "pathway_weight"}}
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1)
    pca = fast_model("scbig_pca_latent", flow_steps=2)
    pca.fit(train)
    assert isinstance(pca.latent.autoencoder, PCALatent)


def test_reports_validation_values_during_training(small_synthetic):
    condition = small_synthetic.obs["condition"].astype(str)
    val_conditions = sorted(set(condition) - {CONTROL})[:3]
    val = small_synthetic[condition.isin(val_conditions)].copy()
    train = small_synthetic[~condition.isin(val_conditions)].copy()
    reported = []
    fast_model(flow_steps=60, eval_every=20, ae_epochs=2).fit(
        TrainData(cells=train, val=val, seed=1, report=lambda step, value: reported.append((step, value))))
    assert [step for step, _ in reported] == [20, 40, 60]
    assert all(np.isfinite(value) and value < 0 for _, value in reported)


@pytest.mark.parametrize("params, message", [
    ({"clusters": "kmeans"}, "clusters must be one of"),
    ({"width": 30, "heads": 4}, "multiple of heads"),
    ({"flow_steps": -1}, ">= 0"),
    ({"gmt_min_genes": 0}, ">= 1"),
    ({"gmt_max_pathways": -1}, "GMT bounds"),
])
def test_invalid_parameters_are_one_line_errors(params, message):
    card = registry.find_card("scbig")
    with pytest.raises(Exception, match=message):
        registry.build(card, {**registry.resolve_params(card, "fast"), **params})


def official_resources(genes: list[str], folder) -> dict[str, str]:
    """The four official resources, tiny, in their published layouts: GeneCompass's nested pickle (half
    the genes by symbol, a quarter by Ensembl id), STRING's gzipped info and links, ESM2's single dict of
    tensors, Reactome's zipped GMT (four pathways of ten genes)."""
    rng = np.random.default_rng(0)
    ensembl = {g: f"ENSG{i:05d}" for i, g in enumerate(genes[1::4])}
    vectors = folder / "genecompass_gene_embeddings_full.pkl"
    vectors.write_bytes(pickle.dumps({
        "gene_embeddings": {ensembl[g]: rng.normal(size=6).astype(np.float32) for g in genes[1::4]},
        "gene_symbol_embeddings": {g: rng.normal(size=6).astype(np.float32) for g in genes[::2]},
        "symbol_to_ensembl": ensembl, "embedding_dim": 6}))
    info = folder / "9606.protein.info.v12.0.txt.gz"
    with gzip.open(info, "wt") as handle:
        handle.write("#string_protein_id\tpreferred_name\tprotein_size\tannotation\n"
                     + "".join(f"9606.P{i}\t{g}\t100\t-\n" for i, g in enumerate(genes)))
    links = folder / "9606.protein.links.v12.0.txt.gz"
    with gzip.open(links, "wt") as handle:
        handle.write("protein1 protein2 combined_score\n"
                     + "".join(f"9606.P{i} 9606.P{i + 1} 900\n" for i in range(0, 40, 2)))
    esm = folder / "ESM2_pert_features.pt"
    torch.save({g: torch.randn(5) for g in genes}, esm)
    gmt = folder / "ReactomePathways.gmt.zip"
    with zipfile.ZipFile(gmt, "w") as archive:
        archive.writestr("ReactomePathways.gmt", "".join(
            f"Pathway {j}\tR-HSA-{j}\t" + "\t".join(genes[j * 10:j * 10 + 10]) + "\n" for j in range(4)))
    return dict(gene_embeddings=str(vectors), string_info=str(info), string_links=str(links), esm_features=str(esm),
                pathways_gmt=str(gmt))


def test_official_resources_replace_the_offline_priors(small_synthetic, tmp_path):
    """The official files, given as parameters: the model reads each and still predicts."""
    resources = official_resources(list(small_synthetic.var_names), tmp_path)
    model = fast_model(flow_steps=20, ae_epochs=2, **resources)
    model.fit(TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1))
    features = model.flow.features
    assert features.esm_dim == 5
    assert features.dim == features.genes.go_dim + features.genes.data_dim + 5 + 3
    means = model.predict(PredictQuery(["G00001+G00002"], small_synthetic[:30], "type_0")).means
    assert np.isfinite(means.to_numpy()).all()
    for name in ("gene_embeddings", "string_links", "esm_features", "pathways_gmt"):
        paths = {**resources, name: str(tmp_path / "missing")}
        with pytest.raises(ModelError, match="missing"):
            fast_model(flow_steps=2, ae_epochs=1, **paths).fit(
                TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1))


def test_pathway_filter_of_a_gmt_file_follows_the_card(small_synthetic, tmp_path):
    """The paper preset keeps every Reactome pathway with a panel gene, in file order (the official
    reader); the others keep those of 5 to 200 panel genes (at most gmt_max_pathways, the largest)."""
    genes = list(small_synthetic.var_names)
    gmt = tmp_path / "ReactomePathways.gmt"
    gmt.write_text("".join(f"Pathway {n}\tR-HSA-{n}\t" + "\t".join(genes[:n]) + "\n" for n in (1, 6, 3, 8)))
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0])
    card = registry.find_card("scbig")
    sizes = {}
    for preset in ("paper", "default"):
        params = registry.resolve_params(card, preset)
        sources = priors.Sources(pathways_gmt=str(gmt), gmt_min_genes=params["gmt_min_genes"],
                                 gmt_max_genes=params["gmt_max_genes"], gmt_max_pathways=params["gmt_max_pathways"])
        sizes[preset] = [len(p) for p in priors.pathways(train, sources, params["max_pathways"])]
    assert sizes == {"paper": [1, 6, 3, 8], "default": [6, 8]}
