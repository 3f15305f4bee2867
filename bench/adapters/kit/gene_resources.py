"""Readers of gene resource files that users download and name by path, for any adapter: gene-embedding
pickles (GeneCompass's layout or a flat ``{symbol: vector}`` dict), the STRING protein graph, per-gene
ESM protein features and GMT gene sets; ``gene_graph`` and ``gene_sets`` fall back on the harness's
Gene Ontology knowledge when no file is named.

A missing or malformed file is a one-line ModelError naming the file and what to do. Text files may be
gzip- or zip-compressed, told by their first bytes (``bench.core.textfiles``).
"""

from __future__ import annotations

import csv
import io
import pickle
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.adapters.kit import resource_files
from bench.core.api import TrainData
from bench.core.errors import ModelError
from bench.core.textfiles import READ_ERRORS, compression, existing, one_line, open_text

CHUNK_ROWS = 1_000_000


def _existing(path: str | Path, what: str) -> Path:
    """The file at ``path``, recorded as read by this run (``resource_files``)."""
    found = existing(path, what, ModelError, "check the path or leave the parameter empty")
    resource_files.record(found)
    return found


def as_vector(value: object) -> np.ndarray:
    """A list, array or tensor as a float32 array."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)


def vector_rows(vectors: list[np.ndarray | None], width: int) -> tuple[np.ndarray, np.ndarray]:
    """A (len(vectors), width) float32 matrix, zero rows for None, and the mask of rows not None."""
    found = np.array([v is not None for v in vectors], dtype=bool)
    matrix = np.zeros((len(vectors), width), dtype=np.float32)
    for row in np.flatnonzero(found):
        matrix[row] = vectors[row]
    return matrix, found


@dataclass(frozen=True)
class GeneEmbeddingFile:
    """A gene-embedding file's stores: vectors by gene symbol and by Ensembl id (float32, all ``width``
    long), and the symbol-to-id map. A flat file fills ``symbols`` only."""

    symbols: dict[str, np.ndarray]
    ensembl: dict[str, np.ndarray]
    symbol_to_ensembl: dict
    width: int

    def lookup(self, genes: Sequence[str], symbols_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``vector_rows`` of ``genes``: each looked up by symbol, then (unless ``symbols_only``) under the
        symbol's Ensembl id, then under its own name in the Ensembl-id store."""
        return vector_rows([self.symbols.get(g) if symbols_only else self._find(g) for g in genes], self.width)

    def _find(self, gene: str) -> np.ndarray | None:
        vector = self.symbols.get(gene)
        if vector is None and gene in self.symbol_to_ensembl:
            vector = self.ensembl.get(self.symbol_to_ensembl[gene])
        return self.ensembl.get(gene) if vector is None else vector


GENECOMPASS_KEYS = ("gene_symbol_embeddings", "gene_embeddings", "symbol_to_ensembl")
GENE_VECTORS_FIX = ("expected GeneCompass's dict of gene_symbol_embeddings, gene_embeddings and symbol_to_ensembl "
                    "(and embedding_dim), or a {gene symbol: 1-D vector} dict")


def read_gene_embeddings(path: str | Path) -> GeneEmbeddingFile:
    """The stores of a pickled gene-embedding file.

    Two layouts, told apart by their keys: GeneCompass's ``genecompass_gene_embeddings_full.pkl``
    (``GENECOMPASS_KEYS`` of dicts, optional ``embedding_dim``), and a flat ``{symbol: vector}`` dict (as
    other gene embeddings ship). Vectors (lists, arrays or tensors) must be finite and of one length.
    Pickles run code: use trusted files.
    """
    path = _existing(path, "gene embeddings file")
    try:
        with open(path, "rb") as handle:
            content = pickle.load(handle)
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError, RuntimeError,
            *READ_ERRORS) as exc:
        raise ModelError(f"cannot read gene embeddings file {path} ({one_line(exc, 200)}); "
                         f"{GENE_VECTORS_FIX}") from None
    if isinstance(content, dict) and not {"gene_symbol_embeddings", "gene_embeddings"} & content.keys():
        content = {"gene_symbol_embeddings": content}
    symbols, ensembl, symbol_to_ensembl = _genecompass_stores(path, content)
    width = _vector_width(path, [*symbols.values(), *ensembl.values()], content.get("embedding_dim"))
    return GeneEmbeddingFile(symbols, ensembl, symbol_to_ensembl, width)


def _genecompass_stores(path: Path, content: object) -> tuple[dict, dict, dict]:
    """The symbol store, the Ensembl-id store (vectors as float32 arrays) and the symbol-to-id map."""
    stores = [content.get(key, {}) for key in GENECOMPASS_KEYS] if isinstance(content, dict) else [None]
    if not all(isinstance(store, dict) for store in stores):
        raise ModelError(f"gene embeddings file {path} has an unknown layout; {GENE_VECTORS_FIX}")
    try:
        symbols, ensembl = ({str(g): as_vector(v) for g, v in store.items()} for store in stores[:2])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ModelError(f"gene embeddings file {path} holds values that are not vectors ({one_line(exc, 200)}); "
                         f"{GENE_VECTORS_FIX}") from None
    return symbols, ensembl, stores[2]


def _vector_width(path: Path, vectors: list[np.ndarray], embedding_dim: object) -> int:
    if not vectors:
        raise ModelError(f"gene embeddings file {path} holds no gene vectors; {GENE_VECTORS_FIX}")
    shapes = sorted({v.shape for v in vectors})
    if len(shapes) != 1 or len(shapes[0]) != 1:
        raise ModelError(f"gene embeddings in {path} are not 1-D vectors of one size ({shapes[:3]}); "
                         "download the file again")
    width = shapes[0][0]
    if embedding_dim is not None and embedding_dim != width:
        raise ModelError(f"gene embeddings file {path} says embedding_dim {embedding_dim}, but its vectors have "
                         f"{width} values; download it again")
    if not all(np.isfinite(v).all() for v in vectors):
        raise ModelError(f"gene embeddings in {path} are not all finite (NaN or infinite values); download it again")
    return width


def read_string_graph(
    info_path: str | Path, links_path: str | Path, genes: Sequence[str], min_score: int = 700
) -> pd.DataFrame:
    """STRING edges among ``genes`` with ``combined_score >= min_score``: columns ``source``, ``target``,
    ``importance`` (score / 1000). Proteins are named by ``preferred_name`` of ``protein.info``.

    STRING lists each pair in both directions; here each unordered pair appears once, ``source`` being
    the gene listed first in ``genes`` (the best score when several proteins share a name). Links files
    run to gigabytes, so they are read in chunks.
    """
    info_path = _existing(info_path, "STRING protein.info file")
    links_path = _existing(links_path, "STRING protein.links file")
    position = {g: i for i, g in enumerate(dict.fromkeys(genes))}
    try:
        info = pd.read_csv(info_path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, compression=compression(info_path))
        names = info.set_index(info.columns[0])["preferred_name"]
    except (KeyError, *READ_ERRORS) as exc:
        raise ModelError(
            f"cannot read STRING info file {info_path} ({one_line(exc, 200)}); expected the tab-separated "
            "protein.info with columns #string_protein_id and preferred_name"
        ) from None
    code = names[names.isin(list(position))].map(position)
    if code.empty:
        raise ModelError(f"no gene of the dataset is named in STRING info file {info_path}; use the species' file")
    pairs = [np.zeros((0, 3), dtype=np.int64)]
    try:
        with pd.read_csv(links_path, sep=" ", usecols=["protein1", "protein2", "combined_score"],
                         dtype={"protein1": str, "protein2": str, "combined_score": np.int64},
                         compression=compression(links_path), chunksize=CHUNK_ROWS) as reader:
            for chunk in reader:
                chunk = chunk[chunk["combined_score"] >= min_score]
                a, b = chunk["protein1"].map(code).to_numpy(), chunk["protein2"].map(code).to_numpy()
                keep = ~np.isnan(a) & ~np.isnan(b) & (a != b)
                ends = np.sort(np.stack([a[keep], b[keep]], axis=1), axis=1).astype(np.int64)
                pairs.append(np.column_stack([ends, chunk["combined_score"].to_numpy()[keep]]))
    except READ_ERRORS as exc:
        raise ModelError(
            f"cannot read STRING links file {links_path} ({one_line(exc, 200)}); expected the space-separated "
            "protein.links with header 'protein1 protein2 combined_score'"
        ) from None
    edges = pd.DataFrame(np.concatenate(pairs), columns=["a", "b", "score"]).groupby(["a", "b"], as_index=False).max()
    ordered = np.asarray(list(position), dtype=object)
    return pd.DataFrame({"source": ordered[edges["a"]], "target": ordered[edges["b"]],
                         "importance": edges["score"].to_numpy(np.float64) / 1000.0})


def gene_graph(train: TrainData, string_info: str = "", string_links: str = "", min_score: int = 700) -> pd.DataFrame:
    """The relation graph of ``train.genes`` (``source``, ``target``, ``importance``): STRING's when its files
    are named, else the harness's Gene Ontology graph, else no edges."""
    if string_info or string_links:
        return read_string_graph(string_info, string_links, train.genes, min_score)
    if train.gene_knowledge is None:
        return pd.DataFrame(columns=["source", "target", "importance"])
    return train.gene_knowledge.graph(train.genes)


ESM_FIX = ("expected one torch.save'd {gene symbol: 1-D tensor} (as scBIG's ESM2_pert_features.pt) or a directory "
           "of <gene symbol>.pt files")


def read_esm_features(path: str | Path, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ESM protein features of ``genes``: a ``(len(genes), dim)`` float32 matrix, zero rows for genes
    without features, and the found mask. ``dim`` is the file's (or directory's) even when no gene is found.

    ``path`` is one file of all genes (as scBIG's ``ESM2_pert_features.pt``, read as its
    ``scbig/experiments/train_norman_additive.py`` does), or a directory of per-gene files as fair-esm's
    ``extract.py`` writes them (see ``_esm_file_vector``).
    """
    path = Path(path)
    vectors = _esm_directory(path, genes) if path.is_dir() else _esm_table(_existing(path, "ESM features file"))
    sizes = sorted({len(v) for v in vectors.values()})
    if len(sizes) != 1:
        raise ModelError(f"ESM features in {path} are not of one size {sizes[:3]}; compute them with one model")
    return vector_rows([vectors.get(g) for g in genes], sizes[0])


def _esm_table(path: Path) -> dict[str, np.ndarray]:
    """The vectors of a single ESM file (``{gene: tensor}``), checked to be 1-D tensors."""
    table = _torch_load(path)
    if not isinstance(table, dict):
        raise ModelError(f"ESM features file {path} holds a {type(table).__name__}, not a dict; {ESM_FIX}")
    if not table:
        raise ModelError(f"ESM features file {path} is an empty dict; {ESM_FIX}")
    if not all(isinstance(v, torch.Tensor) and v.ndim == 1 for v in table.values()):
        raise ModelError(f"the values of ESM features file {path} are not all 1-D tensors; {ESM_FIX}")
    vectors = {str(gene): as_vector(value) for gene, value in table.items()}
    _check_finite(path, vectors.values())
    return vectors


def _esm_directory(directory: Path, genes: Sequence[str]) -> dict[str, np.ndarray]:
    """The vectors of the ``<gene>.pt`` files of ``genes``; with none of them, of the first file, so that
    the width is known."""
    files = {g: directory / f"{g}.pt" for g in dict.fromkeys(genes)}
    files = {g: path for g, path in files.items() if path.is_file()}
    if not files:
        first = min(directory.glob("*.pt"), default=None)
        if first is None:
            raise ModelError(f"ESM features directory {directory} has no <gene symbol>.pt files; {ESM_FIX}")
        files = {first.stem: first}
    for path in files.values():
        resource_files.record(path, directory)
    return {g: _esm_file_vector(path) for g, path in files.items()}


def _esm_file_vector(path: Path) -> np.ndarray:
    """A gene's vector from its file: a tensor (dim,) or (residues, dim), or fair-esm's ``extract.py``
    dict, whose last layer of ``mean_representations``, else of per-residue ``representations``, is
    taken; per-residue tensors are mean-pooled."""
    value = _torch_load(path)
    if isinstance(value, dict):
        value = _fair_esm_last_layer(value)
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or value.shape[-1] == 0:
        raise ModelError(f"ESM features file {path} holds no usable tensor; expected a tensor (dim,) or "
                         "(residues, dim), or fair-esm's dict with mean_representations or representations")
    vector = as_vector(value if value.ndim == 1 else value.float().mean(dim=0))
    _check_finite(path, [vector])
    return vector


def _fair_esm_last_layer(output: dict) -> object:
    for key in ("mean_representations", "representations"):
        layers = output.get(key)
        if isinstance(layers, dict) and layers:
            return layers[max(layers)]
    return None


def _check_finite(path: Path, vectors: Iterable[np.ndarray]) -> None:
    if not all(np.isfinite(v).all() for v in vectors):
        raise ModelError(f"ESM features file {path} contains NaN or infinite values; compute it again")


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, *READ_ERRORS) as exc:
        raise ModelError(f"cannot load ESM features file {path} ({one_line(exc, 200)}); {ESM_FIX}") from None


def read_gmt(path: str | Path, genes: Sequence[str], min_genes: int = 1, max_genes: int | None = None,
             limit: int | None = None) -> list[tuple[str, list[str]]]:
    """Pathways of a GMT file: ``(name, members among genes)`` for each line of at least three
    tab-separated fields (name, description or id, genes) with ``min_genes`` to ``max_genes`` (None: no
    bound) of ``genes``; other lines are skipped. In file order, names may repeat; members in ``genes``
    order. With ``limit``, only the ``limit`` largest of them (the earlier on ties), still in file order.

    The defaults keep every pathway with a gene of the panel (as scBIG's official reader,
    ``scbig/models/_gcae_impl.py``, ``load_pathway_gene_matrix``). The file is plain text, gzip or zip
    (all members are read), told by its first bytes, as Reactome's ``ReactomePathways.gmt.zip``.
    """
    path = _existing(path, "GMT pathways file")
    rows = [fields for fields in (line.strip().split("\t") for line in _gmt_lines(path)) if len(fields) >= 3]
    if not rows:
        raise ModelError(f"GMT file {path} has no line of name, description and genes (tab-separated); "
                         "download it again")
    position = {g: i for i, g in enumerate(dict.fromkeys(genes))}
    ordered = list(position)
    sets = []
    for name, _, *members in rows:
        kept = [ordered[i] for i in sorted({position[g] for g in members if g in position})]
        if min_genes <= len(kept) and (max_genes is None or len(kept) <= max_genes):
            sets.append((name, kept))
    if limit is not None:
        largest = sorted(range(len(sets)), key=lambda i: -len(sets[i][1]))[:limit]
        sets = [sets[i] for i in sorted(largest)]
    return sets


def _gmt_lines(path: Path) -> list[str]:
    try:
        if compression(path) == "zip":
            return _zip_lines(path)
        with open_text(path) as handle:
            return list(handle)
    except READ_ERRORS as exc:
        raise ModelError(f"cannot read GMT file {path} ({one_line(exc, 200)}); download it again") from None


def _zip_lines(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        members = [member for member in archive.infolist() if not member.is_dir()]
        if not members:
            raise ModelError(f"GMT archive {path} holds no file; download it again")
        lines = []
        for member in members:
            with io.TextIOWrapper(archive.open(member), encoding="utf-8") as handle:
                lines.extend(handle)
        return lines


def gene_sets(train: TrainData, gmt: str = "", min_genes: int = 1, max_genes: int | None = None,
              limit: int | None = None, go_limit: int = 64) -> list[np.ndarray]:
    """Gene-index arrays (into ``train.genes``) of gene sets, possibly none: a GMT file's (``read_gmt``), in
    file order, else at most ``go_limit`` of the harness's Gene Ontology sets, the largest first."""
    if gmt:
        chosen = read_gmt(gmt, train.genes, min_genes, max_genes, limit)
    elif train.gene_knowledge is not None:
        sets = train.gene_knowledge.gene_sets(train.genes)
        chosen = sorted(sets.items(), key=lambda item: (-len(item[1]), item[0]))[:go_limit]
    else:
        chosen = []
    index = {g: i for i, g in enumerate(train.genes)}
    return [np.array([index[g] for g in members]) for _, members in chosen]
