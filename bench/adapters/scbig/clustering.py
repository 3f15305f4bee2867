"""Gene-Relation Clustering (scBIG; Ruan et al., ICML 2026, arXiv 2602.04901): equal-sized gene modules.

Gene embeddings (L2-normalised) -> k-means -> ``rounds`` of balanced entropic optimal transport (POT's
log-domain Sinkhorn, ``reg`` 0.1, equal capacities) whose cost for gene g and cluster k is the cosine
distance to k's centroid scaled to [0, 1] plus ``1 - share of k's members that are g's neighbours`` in
a relation graph; each round's plan is rounded to clusters of exactly the capacities (sizes differ by
at most one gene when K does not divide G) and the centroids are recomputed.

Number of clusters: ``K = min(k_max, max(1, G // min_size))`` — the paper's K = 32 on panels of at least
``32 * min_size`` genes, fewer on small panels so that a module keeps at least ``min_size`` genes.
"""

from __future__ import annotations

import numpy as np
import ot
import pandas as pd
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.preprocessing import normalize


def n_clusters(n_genes: int, k_max: int = 32, min_size: int = 8) -> int:
    return min(k_max, max(1, n_genes // min_size))


def capacities(n_genes: int, k: int) -> np.ndarray:
    """Cluster sizes: ``G // K`` each, one more for the first ``G % K`` clusters."""
    sizes = np.full(k, n_genes // k)
    sizes[: n_genes % k] += 1
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


def relation_cost(neighbours: sparse.csr_matrix, labels: np.ndarray, k: int) -> np.ndarray:
    """``1 - share of cluster k's members that are gene g's neighbours``, a (G, K) matrix."""
    membership = sparse.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), labels)), shape=(len(labels), k))
    sizes = np.maximum(np.asarray(membership.sum(axis=0)).ravel(), 1)
    return 1.0 - np.asarray((neighbours @ membership).todense()) / sizes


def round_to_capacities(plan: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Assign genes to clusters greedily by descending transport mass, never exceeding a capacity."""
    labels = np.full(plan.shape[0], -1)
    left = sizes.copy()
    unassigned = plan.shape[0]
    for flat in np.argsort(-plan, axis=None, kind="stable"):
        gene, cluster = divmod(int(flat), plan.shape[1])
        if labels[gene] < 0 and left[cluster] > 0:
            labels[gene] = cluster
            left[cluster] -= 1
            unassigned -= 1
            if not unassigned:
                break
    return labels


def centroids(embeddings: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    sums = np.zeros((k, embeddings.shape[1]))
    np.add.at(sums, labels, embeddings)
    return normalize(sums)


def gene_relation_clusters(embeddings: np.ndarray, neighbours: sparse.csr_matrix, k: int, seed: int,
                           rounds: int = 3, reg: float = 0.1) -> np.ndarray:
    """Cluster label of every gene (0..k-1), clusters of sizes ``capacities(G, k)``."""
    n_genes = embeddings.shape[0]
    sizes = capacities(n_genes, k)
    if k == 1:
        return np.zeros(n_genes, dtype=np.int64)
    unit = normalize(np.asarray(embeddings, dtype=np.float64))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(unit).labels_
    source = np.full(n_genes, 1.0 / n_genes)
    target = sizes / n_genes
    for _ in range(rounds):
        distance = (1.0 - unit @ centroids(unit, labels, k).T) / 2.0
        cost = distance + relation_cost(neighbours, labels, k)
        plan = ot.sinkhorn(source, target, cost, reg, method="sinkhorn_log", numItermax=1000, warn=False)
        labels = round_to_capacities(plan, sizes)
    return labels.astype(np.int64)


def random_clusters(n_genes: int, k: int, seed: int) -> np.ndarray:
    """The ablation: the same cluster sizes, genes assigned at random."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(k), capacities(n_genes, k)))


def gene_order(labels: np.ndarray) -> np.ndarray:
    """The permutation that sorts genes by cluster (stable: panel order within a cluster)."""
    return np.argsort(labels, kind="stable")
