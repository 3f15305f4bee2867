"""Every annotated gene of a Gene Ontology and the GO-term similarity graph among them, kept on disk (a
``bench.core.api.GoAnnotations``; GEARS builds its perturbation graph from it).

The genome-wide graph takes about 9 s to build on one core; a process that finds it in
``paths.cache_dir() / "gene_ontology"`` reads it in about 0.05 s, and keeps it in memory. The file name is
a sha256 of the method, the threshold, ``top_k`` and ``GeneOntology.annotation_digest`` of the genes (in
order, with their GO-term sets), so other annotations or genes never reuse it. A file that cannot be read
or does not fit the genes is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bench.core import atomic, paths

if TYPE_CHECKING:
    from bench.data.gene_ontology import GeneOntology

METHOD = "gears-go-jaccard-v1"


class GoSimilarity:
    """``gene2go``: official symbol -> GO terms of every annotated gene; ``official``: a symbol's annotated
    gene; ``similarity_graph``: ``GeneOntology.graph`` memoised in the process and cached on disk."""

    def __init__(self, ontology: GeneOntology) -> None:
        self.ontology = ontology
        symbols = ontology.symbols
        self._by_gene_id = {ontology.resolve(s): s for s in symbols}
        self.gene2go = ontology.gene_to_go(symbols)
        self._graphs: dict[tuple, pd.DataFrame] = {}

    def official(self, gene: str) -> str | None:
        """The official symbol of ``gene`` (an outdated symbol or unique synonym mapped), None without annotation."""
        return gene if gene in self.gene2go else self._by_gene_id.get(self.ontology.resolve(gene))

    def similarity_graph(self, genes: Sequence[str], threshold: float, top_k: int) -> pd.DataFrame:
        """``ontology.graph(genes, threshold, top_k)``, read from memory or the disk cache when they hold it."""
        key = (tuple(genes), threshold, top_k)
        if key not in self._graphs:
            self._graphs[key] = self._cached(list(genes), threshold, top_k)
        return self._graphs[key]

    def cache_path(self, genes: list[str], threshold: float, top_k: int) -> Path:
        key = hashlib.sha256(f"{METHOD}\n{threshold!r}\n{top_k}\n".encode())
        key.update(self.ontology.annotation_digest(genes).encode())
        return paths.cache_dir() / "gene_ontology" / f"graph-{key.hexdigest()[:32]}.npz"

    def _cached(self, genes: list[str], threshold: float, top_k: int) -> pd.DataFrame:
        path = self.cache_path(genes, threshold, top_k)
        if path.exists():
            try:
                return _read(path, genes)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                warnings.warn(f"GO graph cache {path} is unusable ({exc}); rebuilding it", stacklevel=3)
        edges = self.ontology.graph(genes, threshold=threshold, top_k=top_k)
        _write(path, edges, genes)
        return edges


def _read(path: Path, genes: list[str]) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as stored:
        source, target, weight = stored["source"], stored["target"], stored["importance"]
    if not (len(source) == len(target) == len(weight)) or source.dtype.kind != "i" or target.dtype.kind != "i":
        raise ValueError("not three equally long columns of node positions and weights")
    if len(source) and (min(source.min(), target.min()) < 0 or max(source.max(), target.max()) >= len(genes)):
        raise ValueError("node positions outside the genes")
    names = np.asarray(genes, dtype=object)
    return pd.DataFrame({"source": names[source], "target": names[target], "importance": weight.astype(np.float64)})


def _write(path: Path, edges: pd.DataFrame, genes: list[str]) -> None:
    """Write atomically; a cache that cannot be written only costs time, so it warns."""
    position = {gene: i for i, gene in enumerate(genes)}
    columns = {
        "source": edges["source"].map(position).to_numpy(np.int32),
        "target": edges["target"].map(position).to_numpy(np.int32),
        "importance": edges["importance"].to_numpy(np.float64),
    }
    try:
        with atomic.replacing(path) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, **columns)
    except OSError as exc:
        warnings.warn(f"could not cache the GO graph at {path} ({exc})", stacklevel=4)
