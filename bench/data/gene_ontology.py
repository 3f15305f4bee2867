"""The Gene Ontology service: gene symbols to GO-term sets, GEARS' GO graph, LSA gene embeddings,
per-term gene sets (pathway priors) and every annotated gene with their cached GO graph (``go_annotations``).

Built from NCBI Gene's ``gene2go`` (direct annotations, all three ontologies) and ``gene_info``
(symbols and synonyms). It gives models knowledge about genes that never appear perturbed in training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.linalg import svds
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from bench.core import atomic, paths
from bench.data.go_similarity import GoSimilarity
from bench.data.manifest import find_manifest
from bench.data.ncbi import HUMAN, read_gene2go, read_gene_info

MANIFEST = "gene_ontology"
EMBEDDING_DIM = 64
CATEGORIES = ("Component", "Function", "Process")
_EMBEDDING_METHOD = b"lsa-idf-l2-v1"
_BLOCK_ROWS = 256


class GeneOntology:
    """Direct GO annotations of one species, looked up by gene symbol (a ``bench.core.api.GeneKnowledge``).

    ``annotations``: columns ``GeneID``, ``GO_ID`` and, for ``gene_sets``, ``Category``; ``genes``:
    ``GeneID``, ``Symbol``, ``Synonyms`` (lists), as ``bench.data.ncbi`` reads them.
    """

    def __init__(self, annotations: pd.DataFrame, genes: pd.DataFrame) -> None:
        gene_codes, gene_ids = pd.factorize(annotations["GeneID"], sort=True)
        term_codes, terms = pd.factorize(annotations["GO_ID"], sort=True)
        incidence = sparse.csr_matrix(
            (np.ones(len(gene_codes), dtype=np.float32), (gene_codes, term_codes)),
            shape=(len(gene_ids), len(terms)),
        )
        incidence.sum_duplicates()
        incidence.data[:] = 1.0
        self._incidence = incidence
        self._gene_ids = np.asarray(gene_ids, dtype=np.int64)
        self._terms = np.asarray(terms, dtype=object)
        self._categories = None
        if "Category" in annotations:
            self._categories = np.empty(len(terms), dtype=object)
            self._categories[term_codes] = annotations["Category"].to_numpy()
        self._row = {int(g): i for i, g in enumerate(self._gene_ids)}
        self._by_symbol, self._by_synonym = _symbol_maps(genes, self._row)
        self._embedding_tables: dict[int, np.ndarray] = {}
        self._annotations: GoSimilarity | None = None

    @classmethod
    def from_files(cls, gene2go: Path, gene_info: Path, tax_id: int = HUMAN) -> GeneOntology:
        return cls(read_gene2go(Path(gene2go), tax_id), read_gene_info(Path(gene_info), tax_id))

    def resolve(self, symbol: str) -> int | None:
        """GeneID of an official symbol, else of a synonym that names exactly one gene, else None."""
        gene = self._by_symbol.get(symbol)
        return gene if gene is not None else self._by_synonym.get(symbol)

    @property
    def symbols(self) -> list[str]:
        """Official symbols of the genes that have GO annotations, sorted."""
        return sorted(s for s, g in self._by_symbol.items() if g in self._row)

    def __contains__(self, symbol: object) -> bool:
        return isinstance(symbol, str) and self.resolve(symbol) in self._row

    def go_terms(self, symbol: str) -> frozenset[str]:
        """The GO terms directly annotated to ``symbol`` (empty when unknown or unannotated)."""
        row = self._rows([symbol])[0]
        if row < 0:
            return frozenset()
        return frozenset(self._terms[self._incidence[row].indices])

    def gene_to_go(self, genes: Sequence[str]) -> dict[str, set[str]]:
        """``{symbol: GO terms}`` for the ``genes`` that have any annotation."""
        return {g: set(terms) for g in genes if (terms := self.go_terms(g))}

    def graph(self, genes: Sequence[str], threshold: float = 0.1, top_k: int = 20) -> pd.DataFrame:
        """GEARS' GO graph among ``genes`` (Roohani et al., Nat Biotech 2024): columns ``source``,
        ``target``, ``importance``.

        Two genes are linked when the Jaccard index of their GO-term sets exceeds ``threshold``. As in
        GEARS, edges are grouped by target and each target keeps its ``top_k`` sources by weight (ties:
        the source listed first in ``genes``). Jaccard is symmetric, so this is each gene's ``top_k``
        nearest genes. GEARS keeps ``k + 1`` including a self loop; here self loops are left out.
        """
        names = list(dict.fromkeys(genes))
        rows = self._rows(names)
        known = rows >= 0
        kept = np.asarray(names, dtype=object)[known]
        target, source, weight = _jaccard_top_k(self._incidence[rows[known]], threshold, top_k)
        return pd.DataFrame({"source": kept[source], "target": kept[target], "importance": weight})

    def go_annotations(self) -> GoSimilarity:
        """Every annotated gene, their official symbols and their GO graph, cached (built once per service)."""
        if self._annotations is None:
            self._annotations = GoSimilarity(self)
        return self._annotations

    def annotation_digest(self, genes: Sequence[str]) -> str:
        """sha256 of ``genes`` (in order) and of each one's GO-term set: everything ``graph(genes)`` reads."""
        names = list(dict.fromkeys(genes))
        rows = self._rows(names)
        annotated = self._incidence[rows[rows >= 0]]
        digest = hashlib.sha256("\n".join(names).encode())
        for part in (rows >= 0, annotated.indptr, annotated.indices):
            digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        digest.update("\n".join(self._terms[np.unique(annotated.indices)]).encode())
        return digest.hexdigest()

    def gene_sets(
        self, genes: Sequence[str], category: str = "Process", min_size: int = 5, max_size: int = 200
    ) -> dict[str, list[str]]:
        """Pathway priors: ``{GO_ID: members}`` for the terms of ``category`` directly annotated to
        ``min_size`` to ``max_size`` of ``genes`` (repeats count once), sorted by GO_ID; members keep
        the order of ``genes``.

        Terms are not propagated up the ontology: a set holds the genes annotated to the term itself.
        """
        if category not in CATEGORIES:
            raise ValueError(f"unknown GO category {category!r}; use one of {', '.join(CATEGORIES)}")
        if self._categories is None:
            raise ValueError("these GO annotations have no Category column; build them with read_gene2go")
        names = np.asarray(list(dict.fromkeys(genes)), dtype=object)
        rows = self._rows(names)
        known = rows >= 0
        columns = np.flatnonzero(self._categories == category)
        members = self._incidence[rows[known]][:, columns].tocsc()
        kept = names[known]
        sizes = np.diff(members.indptr)
        return {
            self._terms[columns[j]]: kept[members.indices[members.indptr[j] : members.indptr[j + 1]]].tolist()
            for j in np.flatnonzero((sizes >= min_size) & (sizes <= max_size))
        }

    def embeddings(self, genes: Sequence[str], dim: int = EMBEDDING_DIM) -> tuple[np.ndarray, np.ndarray]:
        """LSA gene embeddings: a ``(len(genes), dim)`` float32 matrix and a mask of genes that have one.

        A truncated SVD of the IDF-weighted gene x GO-term matrix of every annotated gene of the species,
        rows L2-normalised after projection. Unknown or unannotated genes get a zero row, mask False.
        """
        table = self._embedding_table(dim)
        rows = self._rows(genes)
        out = np.zeros((len(rows), dim), dtype=np.float32)
        mask = rows >= 0
        out[mask] = table[rows[mask]]
        return out, mask & out.any(axis=1)

    def _rows(self, genes: Sequence[str]) -> np.ndarray:
        """Incidence-matrix row of each gene, -1 when it is unknown or has no annotation."""
        return np.array([self._row.get(self.resolve(g), -1) for g in genes], dtype=np.int64)

    def _embedding_table(self, dim: int) -> np.ndarray:
        if dim not in self._embedding_tables:
            path = paths.cache_dir() / "gene_ontology" / f"lsa-{self._fingerprint(dim)}.npy"
            table = _load_table(path, (len(self._gene_ids), dim))
            if table is None:
                table = _lsa(self._incidence, dim)
                _save_table(path, table)
            self._embedding_tables[dim] = table
        return self._embedding_tables[dim]

    def _fingerprint(self, dim: int) -> str:
        """sha256 of the annotations (genes, terms, incidence), the method and ``dim``: the cache key."""
        digest = hashlib.sha256(_EMBEDDING_METHOD + str(dim).encode())
        for part in (self._gene_ids, self._incidence.indptr, self._incidence.indices):
            digest.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        digest.update("\n".join(self._terms).encode())
        return digest.hexdigest()


def load_gene_ontology(store_dir: Path | None = None) -> GeneOntology:
    """The Gene Ontology service from the files of the ``gene_ontology`` manifest in the data store
    (checksums verified by the store; a missing file is a one-line DataError saying how to get it)."""
    from bench.data.store import DataStore

    manifest = find_manifest(MANIFEST)
    store = DataStore(Path(store_dir)) if store_dir is not None else DataStore.default()
    return GeneOntology.from_files(store.require(manifest, "gene2go"), store.require(manifest, "gene_info"))


def _symbol_maps(genes: pd.DataFrame, annotated: dict[int, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Official symbol -> GeneID (a symbol shared by several genes: the annotated one, then the lowest
    GeneID) and synonym -> GeneID for synonyms that name exactly one gene."""
    ranked = genes.assign(annotated=genes["GeneID"].isin(list(annotated)))
    ranked = ranked.sort_values(["annotated", "GeneID"], ascending=[False, True])
    official = ranked.drop_duplicates("Symbol")
    pairs = genes[["GeneID", "Synonyms"]].explode("Synonyms").dropna().drop_duplicates()
    unique = pairs.drop_duplicates("Synonyms", keep=False)
    return (
        dict(zip(official["Symbol"].tolist(), official["GeneID"].tolist())),
        dict(zip(unique["Synonyms"].tolist(), unique["GeneID"].tolist())),
    )


def _jaccard_top_k(incidence: sparse.csr_matrix, threshold: float, top_k: int):
    """(target, source, weight) arrays: Jaccard > threshold, no self pairs, top_k sources per target.

    Intersections come from sparse products of row blocks (targets), so memory stays bounded.
    """
    incidence = incidence.astype(np.float64)
    sizes = np.asarray(incidence.sum(axis=1)).ravel()
    transposed = incidence.T.tocsc()
    parts = []
    for start in range(0, incidence.shape[0], _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, incidence.shape[0])
        block = incidence[start:stop] @ transposed
        counts = np.diff(block.indptr)
        shared, source = block.data, block.indices.astype(np.int64)
        weight = shared / (np.repeat(sizes[start:stop], counts) + sizes[source] - shared)
        target = np.repeat(np.arange(start, stop), counts)
        keep = (weight > threshold) & (target != source)
        target, source, weight = target[keep], source[keep], weight[keep]
        order = np.lexsort((source, -weight, target))
        target, source, weight = target[order], source[order], weight[order]
        best = np.arange(len(target)) - np.searchsorted(target, target) < top_k
        parts.append((target[best], source[best], weight[best]))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return tuple(np.concatenate(column) for column in zip(*parts))


def _lsa(incidence: sparse.csr_matrix, dim: int) -> np.ndarray:
    """Latent semantic analysis: IDF weights, L2 rows, truncated SVD, L2 rows.

    A fixed start vector and one BLAS thread make the result the same on every run and core count.
    """
    n_genes = incidence.shape[0]
    frequency = np.bincount(incidence.indices, minlength=incidence.shape[1])
    idf = np.log((1.0 + n_genes) / (1.0 + frequency)) + 1.0
    weighted = normalize(incidence @ sparse.diags(idf), norm="l2")
    rank = min(weighted.shape)
    with threadpool_limits(1):
        if rank <= dim + 1:
            left, values, _ = np.linalg.svd(weighted.toarray(), full_matrices=False)
        else:
            start = np.full(rank, 1.0 / np.sqrt(rank))
            left, values, _ = svds(weighted, k=dim, v0=start, solver="arpack")
            order = np.argsort(-values, kind="stable")
            left, values = left[:, order], values[order]
    projected = left[:, :dim] * values[:dim]
    signs = np.sign(projected[np.abs(projected).argmax(axis=0), np.arange(projected.shape[1])])
    projected = projected * np.where(signs == 0, 1.0, signs)
    table = np.zeros((n_genes, dim), dtype=np.float32)
    table[:, : projected.shape[1]] = normalize(projected, norm="l2")
    return table


def _load_table(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        table = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return table if table.shape == shape and table.dtype == np.float32 else None


def _save_table(path: Path, table: np.ndarray) -> None:
    with atomic.replacing(path) as temporary, open(temporary, "wb") as stream:
        np.save(stream, table)
