"""Gene-Relation Clustering (scBIG; Ruan et al., ICML 2026, arXiv 2602.04901): equal-sized gene modules.

A transcription of the official release's GRC (``ttruan2426-dot/scBIG`` @ 5659ce9,
``scbig/clustering/grc.py``, "GRC" below; run by ``scripts/prepare_norman_grc.sh:16-29`` through
``scbig/experiments/prepare_norman_grc.py:104-135``):

- rows L2-normalised as ``x / (‖x‖ + 1e-8)`` in float32 (GRC:146-147, 268);
- ``KMeans(n_clusters=K, n_init=10, random_state=42)`` on them; its centroids, L2-normalised, are the
  "previous" centroids of round one (GRC:269-271);
- capacities ``divmod(G, K)``: every cluster gets ``G // K``, the ``G % K`` clusters with the most
  k-means members one more (ties: the lower index), fixed for all rounds (GRC:187-204, 272);
- marginals ``a = 1/G``, ``b = capacities / G`` (GRC:274-275);
- each of 3 rounds (GRC:277-305): centroids = L2-normalised float32 mean of the current members' rows,
  an empty cluster keeping its previous centroid (GRC:241-251); cost = semantic + graph (weights 1, sh:24-25),
  semantic = scipy's cosine distance (NaN -> 1) divided by its matrix-wide maximum + 1e-8, graph
  ``[g, c] = 1 - (g's neighbours among c's members) / |c|`` (1 for an empty c) in float32, clipped to
  [0, 1] (GRC:150-170); plan = POT ``ot.sinkhorn(a, b, C, 0.1, numItermax=1000, stopThr=1e-9)``
  (default kernel-domain method), ``ot.emd(a, b, C)`` when it raises or is not finite (GRC:288-301);
  rounding visits the (gene, cluster) pairs by descending plan, then ascending cost, gene, cluster
  (``np.lexsort``) and assigns a free gene to a cluster with room; a gene left over goes to the cheapest
  cluster with room (GRC:207-238);
- the labels of the last round are the result (GRC:303-315; the centroids computed after the loop are
  not used downstream); genes are then ordered by a stable argsort of the labels (GRC:338-348).

Differences: the relation graph arrives as a sparse 0/1 matrix (official: a dense float32 STRING
adjacency, GRC:98-127; the neighbour counts are integers, so the graph term is the same float32 value);
K is the card's value (official 32, sh:23), lowered to G only for panels of fewer than K genes, where
k-means cannot run. ``random_clusters`` (the ablation, absent from the release) cannot use the k-means
rule for the capacities: its extra genes go to the first clusters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ot
import pandas as pd
from scipy import sparse
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans

from bench.adapters.kit.params import Params, param
from bench.core.api import no_progress

SEED = 42
"""The release's GRC seed (``--random_state 42``, sh:29): k-means and the random fill of missing genes."""


def n_clusters(n_genes: int, k: int) -> int:
    """K: the card's value (official 32, sh:23), at most one cluster per gene."""
    return min(k, n_genes)


def capacities(n_genes: int, k: int, kmeans_labels: np.ndarray | None = None) -> np.ndarray:
    """Cluster sizes: ``G // K`` each, one more for ``G % K`` clusters, GRC:187-204.

    With ``kmeans_labels`` the extra genes go to the clusters with the most members (ties: the lower
    index), as the release does; without, to the first clusters.
    """
    base, rem = divmod(n_genes, k)
    sizes = np.full(k, base, dtype=np.int64)
    if kmeans_labels is None:
        preferred = np.arange(k)
    else:
        members = np.bincount(kmeans_labels, minlength=k)
        preferred = np.lexsort((np.arange(k), -members))
    sizes[preferred[:rem]] += 1
    return sizes


def adjacency(graph: pd.DataFrame, genes: list[str]) -> sparse.csr_matrix:
    """Symmetric 0/1 adjacency of the relation graph over ``genes`` (edges to other genes dropped)."""
    index = {g: i for i, g in enumerate(genes)}
    pairs = [(index[s], index[t]) for s, t in zip(graph["source"], graph["target"])
             if s in index and t in index and s != t]
    n = len(genes)
    if not pairs:
        return sparse.csr_matrix((n, n), dtype=np.float64)
    rows, cols = map(np.asarray, zip(*pairs))
    matrix = sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    matrix = ((matrix + matrix.T) > 0).astype(np.float64)
    return matrix.tocsr()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x / (‖x‖ + 1e-8)`` row-wise, in ``x``'s dtype (GRC:146-147)."""
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def centroids(unit: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """L2-normalised mean of each cluster's rows; an empty cluster keeps ``previous`` (GRC:241-251)."""
    means = previous.copy()
    for c in range(previous.shape[0]):
        members = labels == c
        if members.any():
            means[c] = unit[members].mean(axis=0)
    return unit_rows(means)


def semantic_cost(unit: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Cosine distance (NaN -> 1), divided by its matrix-wide maximum + 1e-8 (GRC:158-160)."""
    distance = np.nan_to_num(cdist(unit, centres, metric="cosine"), nan=1.0, posinf=1.0, neginf=0.0)
    return distance / (distance.max() + 1e-8)


def relation_cost(neighbours: sparse.spmatrix, labels: np.ndarray, k: int) -> np.ndarray:
    """``1 - (g's neighbours among c's members) / |c|`` (1 for an empty c), float32 in [0, 1] (GRC:162-168)."""
    n_genes = len(labels)
    membership = sparse.csr_matrix((np.ones(n_genes), (np.arange(n_genes), labels)), shape=(n_genes, k))
    counts = np.asarray((sparse.csr_matrix(neighbours) @ membership).todense(), dtype=np.float32)
    sizes = np.bincount(labels, minlength=k)
    cost = np.ones((n_genes, k), dtype=np.float32)
    filled = sizes > 0
    cost[:, filled] = np.float32(1.0) - counts[:, filled] / sizes[filled].astype(np.float32)
    return np.clip(cost, 0.0, 1.0)


def transport_plan(a: np.ndarray, b: np.ndarray, cost: np.ndarray, reg: float, iterations: int) -> np.ndarray:
    """POT's kernel-domain Sinkhorn; exact OT (``ot.emd``) when it raises or is not finite (GRC:288-301)."""
    try:
        plan = ot.sinkhorn(a, b, cost, reg, numItermax=iterations, stopThr=1e-9, warn=False)
        if not np.isfinite(plan).all():
            raise FloatingPointError("Sinkhorn returned non-finite values")
    except Exception:  # noqa: BLE001 -- the release falls back on any failure
        plan = ot.emd(a, b, cost)
    return plan


def round_to_capacities(plan: np.ndarray, cost: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Greedy rounding of a plan to clusters of exactly ``sizes`` genes (GRC:207-238).

    Pairs are visited by descending plan, then ascending cost, then gene, then cluster; a pair assigns
    its gene when the gene is free and the cluster has room. A gene still free at the end goes to the
    cheapest cluster with room.
    """
    n_genes, k = plan.shape
    genes = np.repeat(np.arange(n_genes), k)
    clusters = np.tile(np.arange(k), n_genes)
    order = np.lexsort((clusters, genes, cost.reshape(-1), -plan.reshape(-1)))
    labels = np.full(n_genes, -1, dtype=np.int64)
    room = np.asarray(sizes, dtype=np.int64).copy()
    free = n_genes
    for flat in order:
        gene, cluster = genes[flat], clusters[flat]
        if labels[gene] < 0 and room[cluster] > 0:
            labels[gene] = cluster
            room[cluster] -= 1
            free -= 1
            if not free:
                break
    for gene in np.flatnonzero(labels < 0):
        open_ = np.flatnonzero(room > 0)
        cluster = open_[np.argmin(cost[gene, open_])]
        labels[gene] = cluster
        room[cluster] -= 1
    return labels


def gene_relation_clusters(embeddings: np.ndarray, neighbours: sparse.spmatrix, k: int, rounds: int = 3,
                           reg: float = 0.1, iterations: int = 1000, seed: int = SEED,
                           progress: Callable[..., None] = no_progress) -> np.ndarray:
    """Cluster label (0..k-1) of every gene, the official GRC (``formula1_grc_clustering``, GRC:254-315).

    ``embeddings`` (G, d): one row per gene; ``neighbours`` (G, G): symmetric 0/1 relation graph.
    ``progress`` hears the transport rounds done.
    """
    n_genes = embeddings.shape[0]
    unit = unit_rows(np.asarray(embeddings, dtype=np.float32))
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(unit)
    labels = kmeans.labels_.astype(np.int64)
    centres = unit_rows(kmeans.cluster_centers_.astype(np.float32))
    sizes = capacities(n_genes, k, labels)
    a = np.full(n_genes, 1.0 / n_genes)
    b = sizes / n_genes
    for done in range(rounds):
        progress("gene-relation clustering", done, rounds)
        centres = centroids(unit, labels, centres)
        cost = semantic_cost(unit, centres) + relation_cost(neighbours, labels, k)
        labels = round_to_capacities(transport_plan(a, b, cost, reg, iterations), cost, sizes)
    return labels


def random_clusters(n_genes: int, k: int, seed: int) -> np.ndarray:
    """The ablation: sizes ``capacities(G, K)`` (extra genes to the first clusters), genes at random."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), capacities(n_genes, k)))


def gene_order(labels: np.ndarray) -> np.ndarray:
    """The permutation that sorts genes by cluster (stable: panel order within a cluster; GRC:338-348)."""
    return np.argsort(labels, kind="stable")


@dataclass(frozen=True)
class ClusteringParams(Params):
    """Gene-Relation Clustering (``clusters = "grc"``) or random clusters (the ablation), ``n_clusters`` of them."""

    clusters: str = param("grc", choices=("grc", "random"))
    n_clusters: int = param(32, "[1, inf)")


def cluster_genes(params: ClusteringParams, embeddings: np.ndarray, relation_graph: Callable[[], pd.DataFrame],
                  genes: list[str], progress: Callable[..., None] = no_progress) -> np.ndarray:
    """The cluster label of every gene; ``relation_graph()`` (edges ``source``, ``target``) is read for GRC only."""
    k = n_clusters(len(genes), params.n_clusters)
    if params.clusters == "random":
        return random_clusters(len(genes), k, SEED)
    progress("gene-relation clustering")
    return gene_relation_clusters(embeddings, adjacency(relation_graph(), genes), k, progress=progress)
