"""GEARS' GO graph kept on disk: built once per gene universe, its annotations, threshold and top_k.

The genome-wide graph takes about 9 s to build on one core; a process that finds it in
``paths.cache_dir() / "gears"`` reads it in about 0.05 s. The file name is a
sha256 of the method, the threshold, ``top_k`` and ``GeneOntology.annotation_digest`` of the
universe (its genes in order and their GO-term sets), so other annotations or another universe never
reuse it. A file that cannot be read or does not fit the universe is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core import atomic, paths
from bench.data.gene_ontology import GeneOntology

METHOD = "gears-go-jaccard-v1"


def cache_path(service: GeneOntology, genes: list[str], threshold: float, top_k: int) -> Path:
    key = hashlib.sha256(f"{METHOD}\n{threshold!r}\n{top_k}\n".encode())
    key.update(service.annotation_digest(genes).encode())
    return paths.cache_dir() / "gears" / f"go-{key.hexdigest()[:32]}.npz"


def go_edges(service: GeneOntology, genes: list[str], threshold: float, top_k: int) -> pd.DataFrame:
    """``service.graph(genes, threshold, top_k)``, read from the cache when it holds it."""
    path = cache_path(service, genes, threshold, top_k)
    if path.exists():
        try:
            return _read(path, genes)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            warnings.warn(f"GEARS GO graph cache {path} is unusable ({exc}); rebuilding it", stacklevel=2)
    edges = service.graph(genes, threshold=threshold, top_k=top_k)
    _write(path, edges, genes)
    return edges


def _read(path: Path, genes: list[str]) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as stored:
        source, target, weight = stored["source"], stored["target"], stored["importance"]
    if not (len(source) == len(target) == len(weight)) or source.dtype.kind != "i" or target.dtype.kind != "i":
        raise ValueError("not three equally long columns of node positions and weights")
    if len(source) and (min(source.min(), target.min()) < 0 or max(source.max(), target.max()) >= len(genes)):
        raise ValueError("node positions outside the gene universe")
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
        warnings.warn(f"could not cache GEARS' GO graph at {path} ({exc})", stacklevel=3)
