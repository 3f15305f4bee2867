"""Readers for scBIG's official resources (Ruan et al., ICML 2026, arXiv 2602.04901), all optional:
GeneCompass gene embeddings, the STRING graph, ESM2 protein features and Reactome (GMT) pathways.

They are files the user downloads and names by path, so a missing or malformed one is a one-line
ModelError naming the file and what to do. Text files may be gzip-compressed.
"""

from __future__ import annotations

import csv
import gzip
import pickle
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.errors import ModelError

CHUNK_ROWS = 1_000_000
_READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, pd.errors.ParserError)


def _existing(path: str | Path, what: str, is_dir: bool = False) -> Path:
    path = Path(path)
    if not (path.is_dir() if is_dir else path.is_file()):
        raise ModelError(f"{what} {path} does not exist; check the path or leave the parameter empty")
    return path


def _compression(path: Path) -> str | None:
    with open(path, "rb") as handle:
        return "gzip" if handle.read(2) == b"\x1f\x8b" else None


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def _vector(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).numpy()
    return np.asarray(value, dtype=np.float32)


def read_gene_vectors(path: str | Path) -> dict[str, np.ndarray]:
    """GeneCompass-style gene embeddings: a pickled ``{symbol: vector}`` (lists, arrays or tensors) of
    1-D finite vectors of one length, returned as float32 arrays. Pickles run code: use trusted files."""
    path = _existing(path, "gene embeddings file")
    fix = "expected a pickle of {gene symbol: 1-D vector}; download it again"
    try:
        with open(path, "rb") as handle:
            vectors = {str(gene): _vector(value) for gene, value in pickle.load(handle).items()}
    except (pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError, RuntimeError,
            *_READ_ERRORS) as exc:
        raise ModelError(f"cannot read gene embeddings file {path} ({_one_line(exc)}); {fix}") from None
    shapes = sorted({v.shape for v in vectors.values()})
    if len(shapes) != 1 or len(shapes[0]) != 1 or not all(np.isfinite(v).all() for v in vectors.values()):
        raise ModelError(f"gene embeddings in {path} are not finite vectors of one size ({shapes[:3]}); {fix}")
    return vectors


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
        info = pd.read_csv(info_path, sep="\t", dtype=str, quoting=csv.QUOTE_NONE, compression=_compression(info_path))
        names = info.set_index(info.columns[0])["preferred_name"]
    except (KeyError, *_READ_ERRORS) as exc:
        raise ModelError(
            f"cannot read STRING info file {info_path} ({_one_line(exc)}); expected the tab-separated "
            "protein.info with columns #string_protein_id and preferred_name"
        ) from None
    code = names[names.isin(list(position))].map(position)
    if code.empty:
        raise ModelError(f"no gene of the dataset is named in STRING info file {info_path}; use the species' file")
    pairs = [np.zeros((0, 3), dtype=np.int64)]
    try:
        with pd.read_csv(links_path, sep=" ", usecols=["protein1", "protein2", "combined_score"],
                         dtype={"protein1": str, "protein2": str, "combined_score": np.int64},
                         compression=_compression(links_path), chunksize=CHUNK_ROWS) as reader:
            for chunk in reader:
                chunk = chunk[chunk["combined_score"] >= min_score]
                a, b = chunk["protein1"].map(code).to_numpy(), chunk["protein2"].map(code).to_numpy()
                keep = ~np.isnan(a) & ~np.isnan(b) & (a != b)
                ends = np.sort(np.stack([a[keep], b[keep]], axis=1), axis=1).astype(np.int64)
                pairs.append(np.column_stack([ends, chunk["combined_score"].to_numpy()[keep]]))
    except _READ_ERRORS as exc:
        raise ModelError(
            f"cannot read STRING links file {links_path} ({_one_line(exc)}); expected the space-separated "
            "protein.links with header 'protein1 protein2 combined_score'"
        ) from None
    edges = pd.DataFrame(np.concatenate(pairs), columns=["a", "b", "score"]).groupby(["a", "b"], as_index=False).max()
    ordered = np.asarray(list(position), dtype=object)
    return pd.DataFrame({"source": ordered[edges["a"]], "target": ordered[edges["b"]],
                         "importance": edges["score"].to_numpy(np.float64) / 1000.0})


def _esm_vector(path: Path) -> np.ndarray:
    """A per-gene vector from ``torch.save``'d ESM output: a tensor, or fair-esm's dict (last layer)."""
    fix = "expected a torch tensor (dim,) or (residues, dim), or fair-esm's dict with mean_representations"
    try:
        value = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, *_READ_ERRORS):
        raise ModelError(f"cannot load ESM features file {path}; {fix}") from None
    if isinstance(value, dict):
        layers = value.get("mean_representations")
        value = layers[max(layers)] if isinstance(layers, dict) and layers else None
    if not isinstance(value, torch.Tensor) or value.ndim not in (1, 2) or value.shape[-1] == 0:
        raise ModelError(f"ESM features file {path} holds no usable tensor; {fix}")
    vector = _vector(value if value.ndim == 1 else value.float().mean(dim=0))
    if not np.isfinite(vector).all():
        raise ModelError(f"ESM features file {path} contains NaN or infinite values; compute it again")
    return vector


def read_esm_features(directory: str | Path, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ESM2 features from ``<symbol>.pt`` files (2-D ones mean-pooled over residues): a
    ``(len(genes), dim)`` float32 matrix, zero rows for genes without a file, and the found mask.

    ``dim`` is the directory's, also when no gene in ``genes`` has a file, so calls agree on the width.
    """
    directory = _existing(directory, "ESM features directory", is_dir=True)
    files = {g: directory / f"{g}.pt" for g in dict.fromkeys(genes)}
    found = {g: _esm_vector(path) for g, path in files.items() if path.is_file()}
    first = None if found else min(directory.glob("*.pt"), default=None)
    if not found and first is None:
        raise ModelError(f"ESM features directory {directory} has no <gene symbol>.pt files; check the path")
    dims = {len(v) for v in found.values()} if found else {len(_esm_vector(first))}
    if len(dims) != 1:
        raise ModelError(f"ESM features in {directory} differ in size {sorted(dims)}; compute them with one model")
    out = np.zeros((len(genes), dims.pop()), dtype=np.float32)
    mask = np.array([g in found for g in genes], dtype=bool)
    for row in np.flatnonzero(mask):
        out[row] = found[genes[row]]
    return out, mask


def read_gmt(path: str | Path, genes: Sequence[str], min_size: int = 5, max_size: int = 200) -> dict[str, list[str]]:
    """Gene sets of a GMT file (a line: name, description, genes, tab-separated): ``{name: members}``
    for sets with ``min_size`` to ``max_size`` of ``genes``, sorted by name, members in ``genes`` order."""
    path = _existing(path, "GMT pathways file")
    opener = gzip.open if _compression(path) else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            lines = [(n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(handle, start=1) if line.strip()]
    except _READ_ERRORS as exc:
        raise ModelError(f"cannot read GMT file {path} ({_one_line(exc)}); download it again") from None
    if not lines:
        raise ModelError(f"GMT file {path} is empty; expected tab-separated lines of name, description, genes")
    for number, fields in lines:
        if len(fields) < 2 or not fields[0]:
            raise ModelError(f"line {number} of GMT file {path} lacks a name or description; expected "
                             "tab-separated lines of name, description, genes")
    names = list(dict.fromkeys(genes))
    sets = {}
    for _, (name, _, *members) in lines:
        wanted = set(members)
        kept = [g for g in names if g in wanted]
        if min_size <= len(kept) <= max_size:
            sets[name] = kept
    return dict(sorted(sets.items()))
