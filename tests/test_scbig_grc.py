"""scBIG's Gene-Relation Clustering against the official release (``scbig/clustering/grc.py``): expected
values worked out by hand or drawn independently, never by the code under test."""

from __future__ import annotations

import inspect
import pickle

import anndata as ad
import numpy as np
import ot
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans

from bench.adapters.scbig import clustering, priors
from bench.core.api import TrainData


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def _blobs(sizes: list[int], dim: int = 6, seed: int = 0) -> np.ndarray:
    """Tight groups of ``sizes`` genes around orthogonal directions, in that order."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.eye(dim)[i] + 0.01 * rng.normal(size=(n, dim)) for i, n in enumerate(sizes)])


# capacities ---------------------------------------------------------------------------------------


def test_capacities_extra_genes_go_to_the_largest_kmeans_clusters():
    # 13 genes, 4 clusters: 3 each, 1 extra; k-means sizes [2, 5, 5, 1]: tie between 1 and 2 -> 1
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3])
    assert clustering.capacities(13, 4, labels).tolist() == [3, 4, 3, 3]
    # 14 genes: 2 extra, to clusters 1 and 2; sizes [2, 5, 6, 1] -> 2 first, then 1
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3])
    assert clustering.capacities(14, 4, labels).tolist() == [3, 4, 4, 3]
    # 15 genes, 3 extra: [4, 1, 5, 5] -> 2, 3, then 0
    labels = np.array([0] * 4 + [1] + [2] * 5 + [3] * 5)
    assert clustering.capacities(15, 4, labels).tolist() == [4, 3, 4, 4]
    # no k-means labels (the ablation): the first clusters
    assert clustering.capacities(14, 4).tolist() == [4, 4, 3, 3]


def test_the_largest_kmeans_cluster_ends_one_gene_larger():
    # groups of 2, 2 and 6 genes, 3 clusters: capacities 3, 3, 3 plus one for the 6-gene group's cluster
    x = _blobs([2, 2, 6])
    kmeans = KMeans(n_clusters=3, n_init=10, random_state=42).fit(_unit(x))
    big = np.bincount(kmeans.labels_).argmax()
    assert big != 0, "the first-clusters rule would pass too: pick other groups"
    labels = clustering.gene_relation_clusters(x, sp.csr_matrix((10, 10)), 3)
    sizes = np.bincount(labels, minlength=3)
    assert sorted(sizes.tolist()) == [3, 3, 4]
    assert sizes[np.bincount(labels[4:]).argmax()] == 4  # the cluster holding most of the big group


# cost ---------------------------------------------------------------------------------------------


def test_semantic_cost_is_cosine_distance_over_its_matrix_wide_maximum():
    genes = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], dtype=np.float32)
    centres = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    # 1 - cos: [[0, 0.4], [0.2, 0.04], [0.4, 0]]; maximum 0.4
    expected = np.array([[0.0, 1.0], [0.5, 0.1], [1.0, 0.0]])
    np.testing.assert_allclose(clustering.semantic_cost(genes, centres), expected, atol=1e-6)


def test_semantic_cost_of_a_zero_vector_is_one_before_scaling():
    genes = np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32)
    centres = np.array([[1.0, 0.0], [0.6, 0.8]], dtype=np.float32)
    # 1 - cos: [[0, 0.4], [nan -> 1, nan -> 1]]; maximum 1
    with np.errstate(invalid="ignore", divide="ignore"):
        cost = clustering.semantic_cost(genes, centres)
    np.testing.assert_allclose(cost, [[0.0, 0.4], [1.0, 1.0]], atol=1e-6)


def test_relation_cost_is_one_minus_the_share_of_members_that_are_neighbours():
    # gene 0 neighbours genes 1, 2; cluster 0 = {0, 1, 2}, cluster 1 = {3}, cluster 2 empty
    edges = [(0, 1), (0, 2), (1, 3)]
    rows, cols = zip(*edges)
    graph = sp.coo_matrix((np.ones(3), (rows, cols)), shape=(4, 4)).tocsr()
    graph = ((graph + graph.T) > 0).astype(float)
    cost = clustering.relation_cost(graph, np.array([0, 0, 0, 1]), 3)
    expected = [[1 - 2 / 3, 1, 1], [1 - 1 / 3, 0, 1], [1 - 1 / 3, 1, 1], [1 - 1 / 3, 1, 1]]
    assert cost.dtype == np.float32
    np.testing.assert_allclose(cost, expected, atol=1e-7)


def test_centroids_are_normalised_member_means_and_an_empty_cluster_keeps_its_own():
    unit = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    previous = np.array([[0.0, 1.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    got = clustering.centroids(unit, np.array([0, 0, 2]), previous)
    np.testing.assert_allclose(got, [[0.5 ** 0.5, 0.5 ** 0.5], [0.6, 0.8], [1.0, 0.0]], atol=1e-6)


# rounding -----------------------------------------------------------------------------------------


def test_rounding_by_plan_then_cost_then_gene_then_cluster():
    plan = np.array([[0.2, 0.1], [0.1, 0.1], [0.1, 0.1]])
    cost = np.array([[0.5, 0.0], [0.4, 0.3], [0.4, 0.3]])
    # (0, 0) has the most mass: gene 0 -> 0 although cluster 1 is cheaper for it. Then the ties at 0.1:
    # (0, 1) cost 0 (gene 0 placed), (1, 1) and (2, 1) cost 0.3 -> gene 1 first -> 1 (now full),
    # (1, 0) and (2, 0) cost 0.4 -> gene 2 -> 0.
    assert clustering.round_to_capacities(plan, cost, np.array([2, 1])).tolist() == [0, 1, 0]


def test_rounding_full_ties_follow_cost():
    plan = np.full((2, 2), 0.25)
    cost = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert clustering.round_to_capacities(plan, cost, np.array([1, 1])).tolist() == [1, 0]


def test_rounding_orders_pairs_without_mass_by_cost():
    plan = np.array([[0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
    cost = np.array([[0.0, 0.3, 0.2], [0.0, 0.1, 0.05], [0.0, 0.5, 0.6]])
    # plan 0.5, cost ties: gene 0 -> 0 (full). Then the zero-mass pairs by cost: (1, 2) 0.05 -> gene 1
    # -> 2, (1, 1) 0.1 placed, (0, *) placed, (2, 1) 0.5 -> gene 2 -> 1
    assert clustering.round_to_capacities(plan, cost, np.array([1, 1, 1])).tolist() == [0, 2, 1]


# optimal transport ----------------------------------------------------------------------------------


def test_exact_transport_when_sinkhorn_is_not_finite(monkeypatch):
    a = np.full(4, 0.25)
    b = np.array([0.5, 0.5])
    cost = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.8, 0.1]])
    expected = ot.emd(a, b, cost)
    calls = []
    monkeypatch.setattr(ot, "sinkhorn", lambda a, b, M, *args, **kwargs: np.full(M.shape, np.nan))
    real_emd = ot.emd
    monkeypatch.setattr(ot, "emd", lambda *args, **kwargs: calls.append(1) or real_emd(*args, **kwargs))
    plan = clustering.transport_plan(a, b, cost, 0.1, 1000)
    assert calls == [1]
    np.testing.assert_array_equal(plan, expected)
    np.testing.assert_allclose(plan, [[0.25, 0], [0, 0.25], [0.25, 0], [0, 0.25]])


def test_exact_transport_when_sinkhorn_raises(monkeypatch):
    def fail(*args, **kwargs):
        raise ValueError("broken")

    monkeypatch.setattr(ot, "sinkhorn", fail)
    plan = clustering.transport_plan(np.full(2, 0.5), np.full(2, 0.5), np.array([[1.0, 0.0], [0.0, 1.0]]), 0.1, 10)
    np.testing.assert_allclose(plan, [[0, 0.5], [0.5, 0]])


def test_clustering_runs_on_the_exact_transport(monkeypatch):
    monkeypatch.setattr(ot, "sinkhorn", lambda a, b, M, *args, **kwargs: np.full(M.shape, np.nan))
    labels = clustering.gene_relation_clusters(_blobs([4, 4, 4]), sp.csr_matrix((12, 12)), 3)
    assert [len(set(labels[i:i + 4])) for i in (0, 4, 8)] == [1, 1, 1]
    assert sorted(np.bincount(labels).tolist()) == [4, 4, 4]


def test_sinkhorn_is_called_as_the_release_calls_it(monkeypatch):
    seen = []
    real = ot.sinkhorn

    def spy(a, b, M, reg, **kwargs):
        seen.append((reg, kwargs))
        return real(a, b, M, reg, **kwargs)

    monkeypatch.setattr(ot, "sinkhorn", spy)
    clustering.gene_relation_clusters(_blobs([3, 3]), sp.csr_matrix((6, 6)), 2)
    assert len(seen) == 3  # rounds
    assert seen[0] == (0.1, {"numItermax": 1000, "stopThr": 1e-9, "warn": False})  # default method


# the whole clustering ---------------------------------------------------------------------------


def test_every_cluster_gets_its_capacity_deterministically_with_seed_42():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8))
    adjacency = sp.random(50, 50, density=0.1, random_state=4)
    graph = ((adjacency + adjacency.T) > 0).astype(float).tocsr()
    graph.setdiag(0)
    graph.eliminate_zeros()
    # 50 genes, 7 clusters: 7 each and one extra to the largest k-means cluster (seed 42)
    kmeans = KMeans(n_clusters=7, n_init=10, random_state=42).fit(_unit(x))
    counts = np.bincount(kmeans.labels_, minlength=7)
    expected = np.full(7, 7)
    expected[np.argmax(counts)] += 1
    labels = clustering.gene_relation_clusters(x, graph, 7)
    assert labels.shape == (50,) and set(labels.tolist()) <= set(range(7))
    np.testing.assert_array_equal(np.bincount(labels, minlength=7), expected)
    np.testing.assert_array_equal(clustering.gene_relation_clusters(x, graph, 7), labels)
    np.testing.assert_array_equal(clustering.gene_relation_clusters(x, graph, 7, seed=42), labels)
    assert inspect.signature(clustering.gene_relation_clusters).parameters["seed"].default == 42
    assert clustering.SEED == 42


def test_the_graph_pulls_a_gene_to_its_neighbours():
    # group A = genes 0-4, group B = genes 5-9; genes 10 and 11 identical, a little closer to A
    a = np.array([[1.0, 0.05 * i] for i in range(5)])
    b = np.array([[0.05 * i, 1.0] for i in range(5)])
    x = np.vstack([a, b, [[1.0, 0.8], [1.0, 0.8]]])
    edges = [(10, j) for j in range(5, 10)] + [(11, j) for j in range(5)]
    rows, cols = zip(*edges)
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(12, 12)).tocsr()
    graph = ((graph + graph.T) > 0).astype(float).tocsr()
    labels = clustering.gene_relation_clusters(x, graph, 2)
    assert len(set(labels[:5])) == 1 and len(set(labels[5:10])) == 1 and labels[0] != labels[5]
    assert labels[10] == labels[5] and labels[11] == labels[0]
    # without the graph, the tie between the identical genes goes to the lower index: gene 10 with A
    alone = clustering.gene_relation_clusters(x, sp.csr_matrix((12, 12)), 2)
    assert alone[10] == alone[0] and alone[11] == alone[5]


def test_number_of_clusters_is_the_cards_value_guarded_by_the_panel():
    assert clustering.n_clusters(5000, 32) == 32
    assert clustering.n_clusters(40, 32) == 32  # no G // 8 rule
    assert clustering.n_clusters(10, 32) == 10


def test_gene_order_is_stable():
    assert clustering.gene_order(np.array([2, 0, 1, 0, 2, 1])).tolist() == [1, 3, 2, 5, 0, 4]


# the ablation -----------------------------------------------------------------------------------


def test_random_clusters_sizes_and_determinism():
    labels = clustering.random_clusters(10, 3, seed=5)
    assert np.bincount(labels).tolist() == [4, 3, 3]
    np.testing.assert_array_equal(clustering.random_clusters(10, 3, seed=5), labels)
    expected = np.random.default_rng(5).permutation([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(labels, expected)
    assert not np.array_equal(clustering.random_clusters(100, 8, seed=1), clustering.random_clusters(100, 8, seed=2))


# embeddings -------------------------------------------------------------------------------------


def _train(genes: list[str], n_cells: int = 30) -> TrainData:
    rng = np.random.default_rng(0)
    cells = ad.AnnData(rng.poisson(2.0, size=(n_cells, len(genes))).astype(np.float32))
    cells.var_names = genes
    cells.obs["condition"] = "ctrl"
    cells.obs["cell_type"] = "A"
    return TrainData(cells=cells, val=cells[:0].copy())


def test_genes_missing_from_genecompass_get_seed_42_noise_in_panel_order(tmp_path):
    path = tmp_path / "genecompass.pkl"
    path.write_bytes(pickle.dumps({
        "gene_symbol_embeddings": {"A": np.arange(4.0), "C": np.ones(4)},
        "gene_embeddings": {"ENSG1": np.full(4, 2.0)},
        "symbol_to_ensembl": {"B": "ENSG1"},
        "embedding_dim": 4,
    }))
    genes = ["X", "A", "B", "Y", "C", "Z"]
    train = _train(genes)
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    got = priors.embeddings(train, priors.PriorParams(gene_embeddings=str(path)), rng)
    draws = np.random.default_rng(42)
    noise = {g: draws.normal(0.0, 0.1, 4).astype(np.float32) for g in ("X", "Y", "Z")}
    expected = np.stack([noise["X"], np.arange(4.0), np.full(4, 2.0), noise["Y"], np.ones(4), noise["Z"]])
    assert got.clustering.dtype == np.float32
    np.testing.assert_array_equal(got.clustering, expected.astype(np.float32))
    # the positional code: the symbol store only, zeros elsewhere (B is found through its Ensembl id only)
    positional = np.stack([np.zeros(4), np.arange(4.0), np.zeros(4), np.zeros(4), np.ones(4), np.zeros(4)])
    np.testing.assert_array_equal(got.positional, positional.astype(np.float32))
    assert rng.bit_generator.state == state  # with a file, no data-derived vectors are drawn


def test_offline_embeddings_are_the_data_vectors_for_both_uses():
    train = _train([f"g{i}" for i in range(12)])
    got = priors.embeddings(train, priors.PriorParams(), np.random.default_rng(0))
    data = priors.data_gene_embeddings(train, np.random.default_rng(0))
    expected = data / np.linalg.norm(data, axis=1, keepdims=True)
    np.testing.assert_allclose(got.clustering, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.positional, got.clustering)
    assert got.positional is not got.clustering


@pytest.mark.parametrize("k", [1, 3])
def test_small_panels(k):
    x = _blobs([2, 2, 2])
    labels = clustering.gene_relation_clusters(x, sp.csr_matrix((6, 6)), k)
    assert sorted(np.bincount(labels).tolist()) == [6 // k] * k
