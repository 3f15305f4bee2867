"""Readers of scBIG's official resources (``kit.gene_resources``, and ``scbig.priors`` for GeneCompass's
lookups), on small files in the official layouts, checked by hand."""

from __future__ import annotations

import gzip
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.adapters.kit import gene_resources as resources
from bench.adapters.scbig import priors
from bench.core.errors import ModelError

INFO_HEADER = "#string_protein_id\tpreferred_name\tprotein_size\tannotation\n"
LINKS_HEADER = "protein1 protein2 combined_score\n"


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(path.stem, text)
    else:
        path.write_text(text)
    return path


def _pickle(path: Path, value: object) -> Path:
    path.write_bytes(pickle.dumps(value))
    return path


def _fails(call, *words: str) -> None:
    with pytest.raises(ModelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def genecompass(**overrides) -> dict:
    """GeneCompass's layout. A: in the symbol store (and, differently, under its Ensembl id); B: under
    its Ensembl id only; C: its Ensembl id is absent, found under the raw key; D: nowhere."""
    return {
        "gene_embeddings": {"ENSG_A": [9.0, 9.0, 9.0], "ENSG_B": np.array([0.5, -1.0, 2.0]),
                            "C": torch.tensor([7.0, 8.0, 9.0])},
        "gene_symbol_embeddings": {"A": np.array([1.0, 2.0, 3.0], dtype=np.float32)},
        "symbol_to_ensembl": {"A": "ENSG_A", "B": "ENSG_B", "C": "ENSG_C"},
        "embedding_dim": 3,
        **overrides,
    }


def test_gene_vectors_from_the_official_genecompass_layout(tmp_path):
    vectors = priors.read_gene_vectors(_pickle(tmp_path / "gc.pkl", genecompass()), ["D", "C", "B", "A"])
    assert vectors.clustering.dtype == np.float32 and vectors.positional.dtype == np.float32
    assert vectors.clustering.tolist() == [[0, 0, 0], [7, 8, 9], [0.5, -1, 2], [1, 2, 3]]
    assert vectors.clustering_found.tolist() == [False, True, True, True]
    assert vectors.positional.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 2, 3]]
    assert vectors.positional_found.tolist() == [False, False, False, True]


def test_gene_vectors_without_embedding_dim_or_a_store(tmp_path):
    layout = genecompass()
    del layout["embedding_dim"], layout["gene_symbol_embeddings"], layout["symbol_to_ensembl"]
    vectors = priors.read_gene_vectors(_pickle(tmp_path / "gc.pkl", layout), ["ENSG_B", "B"])
    assert vectors.clustering.tolist() == [[0.5, -1, 2], [0, 0, 0]]
    assert vectors.clustering_found.tolist() == [True, False]
    assert not vectors.positional.any() and not vectors.positional_found.any()


def test_gene_vectors_from_a_flat_file(tmp_path):
    table = {"A": [1, 2, 3], "B": np.array([0.5, -1.0, 2.0]), "C": torch.tensor([7.0, 8, 9])}
    vectors = priors.read_gene_vectors(_pickle(tmp_path / "emb.pkl", table), ["C", "X", "A"])
    assert vectors.clustering.tolist() == [[7, 8, 9], [0, 0, 0], [1, 2, 3]]
    assert vectors.clustering_found.tolist() == [True, False, True]
    assert np.array_equal(vectors.positional, vectors.clustering)
    assert np.array_equal(vectors.positional_found, vectors.clustering_found)


@pytest.mark.parametrize(
    "content, words",
    [
        (b"certainly not a pickle", "cannot read"),
        (pickle.dumps([[1.0, 2.0]]), "gene_symbol_embeddings"),
        (pickle.dumps(genecompass(gene_symbol_embeddings=[[1.0, 2.0, 3.0]])), "gene_symbol_embeddings"),
        (pickle.dumps(genecompass(symbol_to_ensembl=None)), "gene_symbol_embeddings"),
        (pickle.dumps({"embeddings": {"A": [1.0, 2.0]}}), "gene_symbol_embeddings"),
        (pickle.dumps({"A": ["x", "y"]}), "gene_symbol_embeddings"),
        (pickle.dumps({}), "no gene vectors"),
        (pickle.dumps(genecompass(gene_embeddings={}, gene_symbol_embeddings={})), "no gene vectors"),
        (pickle.dumps({"A": [1.0, 2.0], "B": [1.0, 2.0, 3.0]}), "one size"),
        (pickle.dumps(genecompass(gene_symbol_embeddings={"A": [1.0, 2.0]})), "one size"),
        (pickle.dumps({"A": np.ones((2, 2))}), "one size"),
        (pickle.dumps(genecompass(embedding_dim=768)), "embedding_dim 768"),
        (pickle.dumps({"A": [1.0, float("nan")]}), "finite"),
    ],
)
def test_malformed_gene_vectors(tmp_path, content, words):
    path = tmp_path / "emb.pkl"
    path.write_bytes(content)
    _fails(lambda: priors.read_gene_vectors(path, ["A"]), str(path), words)


def test_missing_gene_vectors_file(tmp_path):
    _fails(lambda: priors.read_gene_vectors(tmp_path / "absent.pkl", ["A"]), "absent.pkl", "does not exist")


def _string_files(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    """Proteins p1-p5 name A, B, C, Z (not a dataset gene) and A again (p5, a second A protein)."""
    info = INFO_HEADER + "".join(
        f"9606.p{i}\t{name}\t100\tsome \"quoted\" text\n" for i, name in enumerate("ABCZA", start=1)
    )
    links = LINKS_HEADER + (
        "9606.p1 9606.p2 900\n9606.p2 9606.p1 900\n"  # A-B, both directions
        "9606.p3 9606.p1 750\n9606.p1 9606.p3 750\n"  # C-A
        "9606.p2 9606.p3 699\n"  # below the threshold
        "9606.p1 9606.p4 999\n"  # Z is not a dataset gene
        "9606.p1 9606.p5 990\n"  # A-A through two proteins: a self loop
        "9606.p5 9606.p2 950\n"  # A-B again through p5: the better score wins
        "9606.p6 9606.p2 999\n"  # p6 is not in the info file
    )
    return _write(tmp_path / f"info.txt{suffix}", info), _write(tmp_path / f"links.txt{suffix}", links)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_string_graph_worked_by_hand(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(resources, "CHUNK_ROWS", 2)
    info, links = _string_files(tmp_path, suffix)
    edges = resources.read_string_graph(info, links, ["C", "B", "A", "D"])
    assert list(edges.columns) == ["source", "target", "importance"]
    assert edges.values.tolist() == [["C", "A", 0.75], ["B", "A", 0.95]]
    strict = resources.read_string_graph(info, links, ["A", "B", "C"], min_score=900)
    assert strict.values.tolist() == [["A", "B", 0.95]]
    loose = resources.read_string_graph(info, links, ["A", "B", "C"], min_score=0)
    assert loose.values.tolist() == [["A", "B", 0.95], ["A", "C", 0.75], ["B", "C", 0.699]]
    assert resources.read_string_graph(info, links, ["A", "C"], min_score=750).values.tolist() == [["A", "C", 0.75]]
    assert resources.read_string_graph(info, links, ["A", "B"], min_score=1000).empty


def test_string_graph_errors(tmp_path):
    info, links = _string_files(tmp_path, "")
    genes = ["A", "B"]
    _fails(lambda: resources.read_string_graph(tmp_path / "no_info", links, genes), "no_info", "does not exist")
    _fails(lambda: resources.read_string_graph(info, tmp_path / "no_links", genes), "no_links", "does not exist")
    no_name = _write(tmp_path / "no_name.txt", "#string_protein_id\tname\n9606.p1\tA\n")
    _fails(lambda: resources.read_string_graph(no_name, links, genes), "no_name.txt", "preferred_name")
    _fails(lambda: resources.read_string_graph(info, links, ["X", "Y"]), "info.txt", "no gene of the dataset")
    tabs = _write(tmp_path / "tabs.txt", "protein1\tprotein2\tcombined_score\n9606.p1\t9606.p2\t900\n")
    _fails(lambda: resources.read_string_graph(info, tabs, genes), "tabs.txt", "protein1 protein2 combined_score")
    score = _write(tmp_path / "score.txt", LINKS_HEADER + "9606.p1 9606.p2 high\n")
    _fails(lambda: resources.read_string_graph(info, score, genes), "score.txt", "cannot read")
    whole = _write(tmp_path / "big.gz", LINKS_HEADER + "".join(f"9606.p{i} 9606.p2 {i % 999}\n" for i in range(90_000)))
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    _fails(lambda: resources.read_string_graph(info, truncated, genes), "truncated.gz", "cannot read")


def test_read_string_graph_returns_a_frame_for_no_edges(tmp_path):
    info = _write(tmp_path / "info.txt", INFO_HEADER + "9606.p1\tA\t1\tx\n")
    links = _write(tmp_path / "links.txt", LINKS_HEADER)
    edges = resources.read_string_graph(info, links, ["A"])
    assert isinstance(edges, pd.DataFrame) and edges.empty and list(edges.columns) == ["source", "target", "importance"]


def test_esm_features_from_the_official_single_file(tmp_path):
    path = tmp_path / "ESM2_pert_features.pt"
    torch.save({"A": torch.tensor([1.0, -1.0]), "B": torch.tensor([2.0, 3.0], dtype=torch.float64)}, path)
    features, found = resources.read_esm_features(path, ["B", "X", "A", "B"])
    assert features.dtype == np.float32 and found.dtype == bool
    assert features.tolist() == [[2, 3], [0, 0], [1, -1], [2, 3]]
    assert found.tolist() == [True, False, True, True]
    features, found = resources.read_esm_features(str(path), ["X"])
    assert features.shape == (1, 2) and not features.any() and not found.any()


@pytest.mark.parametrize(
    "value, words",
    [
        (torch.ones(3), "not a dict"),
        ({}, "empty dict"),
        ({"A": "MKT"}, "1-D tensors"),
        ({"A": torch.ones(2, 3)}, "1-D tensors"),
        ({"A": torch.ones(2), "B": torch.ones(3)}, "one size"),
        ({"A": torch.tensor([1.0, float("nan")])}, "infinite"),
    ],
)
def test_malformed_esm_single_file(tmp_path, value, words):
    path = tmp_path / "ESM2_pert_features.pt"
    torch.save(value, path)
    _fails(lambda: resources.read_esm_features(path, ["A"]), str(path), words)


def _esm_directory(tmp_path: Path) -> Path:
    """fair-esm's extract.py layout and plain tensors. A: a vector; B: residues (1, 2) and (3, 4), mean
    (2, 3); C: mean_representations, layer 33 wins; E: per-residue representations only, mean (4, 1)."""
    directory = tmp_path / "esm"
    directory.mkdir()
    torch.save(torch.tensor([1.0, -1.0], dtype=torch.float64), directory / "A.pt")
    torch.save(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.bfloat16), directory / "B.pt")
    layers = {6: torch.tensor([9.0, 9.0]), 33: torch.tensor([0.5, 0.25]), 12: torch.tensor([8.0, 8.0])}
    torch.save({"label": "C", "mean_representations": layers}, directory / "C.pt")
    residues = {6: torch.ones(2, 2), 33: torch.tensor([[5.0, 0.0], [3.0, 2.0]])}
    torch.save({"label": "E", "representations": residues}, directory / "E.pt")
    return directory


def test_esm_features_from_a_directory(tmp_path):
    directory = _esm_directory(tmp_path)
    features, found = resources.read_esm_features(directory, ["C", "X", "A", "B", "E", "A"])
    assert features.dtype == np.float32 and found.dtype == bool
    assert features.tolist() == [[0.5, 0.25], [0, 0], [1, -1], [2, 3], [4, 1], [1, -1]]
    assert found.tolist() == [True, False, True, True, True, True]
    features, found = resources.read_esm_features(str(directory), ["X", "Y"])
    assert features.shape == (2, 2) and not features.any() and not found.any()
    features, found = resources.read_esm_features(directory, [])
    assert features.shape == (0, 2) and found.shape == (0,)


@pytest.mark.parametrize(
    "value, words",
    [
        (torch.ones(2, 2, 2), "no usable tensor"),
        ({"label": "A", "contacts": torch.ones(2, 2)}, "no usable tensor"),
        ({"mean_representations": {}}, "no usable tensor"),
        (torch.tensor([1.0, float("inf")]), "infinite"),
    ],
)
def test_malformed_esm_directory_files(tmp_path, value, words):
    directory = _esm_directory(tmp_path)
    torch.save(value, directory / "D.pt")
    _fails(lambda: resources.read_esm_features(directory, ["A", "D"]), "D.pt", words)


def test_esm_errors(tmp_path):
    directory = _esm_directory(tmp_path)
    _fails(lambda: resources.read_esm_features(tmp_path / "absent", ["A"]), "absent", "does not exist")
    (directory / "D.pt").write_bytes(b"not a tensor file")
    _fails(lambda: resources.read_esm_features(directory, ["D"]), "D.pt", "cannot load")
    _fails(lambda: resources.read_esm_features(directory / "D.pt", ["D"]), "D.pt", "cannot load")
    torch.save(torch.ones(3), directory / "F.pt")
    _fails(lambda: resources.read_esm_features(directory, ["A", "F"]), str(directory), "[2, 3]")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(lambda: resources.read_esm_features(empty, ["A"]), "empty", "no <gene symbol>.pt")


REACTOME = (
    "Second pathway\tR-HSA-2\tB\tA\tQ\n"
    "\n"
    "First pathway\tR-HSA-1\tC\tB\tA\tD\r\n"
    "No members\tR-HSA-3\n"
    "just a name\n"
    "None of ours\tR-HSA-4\tX\tY\tZ\n"
    "Single gene\tR-HSA-5\tD\tX\n"
    "Second pathway\tR-HSA-6\tC\n"
)


@pytest.mark.parametrize("name", ["ReactomePathways.gmt", "ReactomePathways.gmt.gz", "ReactomePathways.gmt.zip"])
def test_gmt_official_filter(tmp_path, name):
    """Every line of three or more fields with a panel gene is kept, in file order (names may repeat)."""
    path = _write(tmp_path / name, REACTOME)
    genes = ["D", "A", "C", "B", "A"]
    assert resources.read_gmt(path, genes) == [
        ("Second pathway", ["A", "B"]), ("First pathway", ["D", "A", "C", "B"]),
        ("Single gene", ["D"]), ("Second pathway", ["C"])]


def test_gmt_size_filter_and_limit(tmp_path):
    path = _write(tmp_path / "ReactomePathways.gmt", REACTOME)
    genes = ["A", "B", "C", "D"]
    assert [name for name, _ in resources.read_gmt(path, genes, min_genes=2)] == ["Second pathway", "First pathway"]
    assert resources.read_gmt(path, genes, max_genes=2) == [
        ("Second pathway", ["A", "B"]), ("Single gene", ["D"]), ("Second pathway", ["C"])]
    assert resources.read_gmt(path, genes, limit=2) == [
        ("Second pathway", ["A", "B"]), ("First pathway", ["A", "B", "C", "D"])]
    assert resources.read_gmt(path, genes, max_genes=2, limit=2) == [
        ("Second pathway", ["A", "B"]), ("Single gene", ["D"])]
    assert resources.read_gmt(path, ["Q"], min_genes=2) == []


def test_gmt_reads_every_zip_member(tmp_path):
    path = tmp_path / "pathways.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("folder/", "")
        archive.writestr("folder/one.gmt", "One\tR-HSA-1\tA")
        archive.writestr("two.gmt", "Two\tR-HSA-2\tB\tA\n")
    assert resources.read_gmt(path, ["A", "B"]) == [("One", ["A"]), ("Two", ["A", "B"])]


def test_gmt_errors(tmp_path):
    _fails(lambda: resources.read_gmt(tmp_path / "absent.gmt", ["A"]), "absent.gmt", "does not exist")
    empty = _write(tmp_path / "empty.gmt", "\n\n")
    _fails(lambda: resources.read_gmt(empty, ["A"]), "empty.gmt", "no line of")
    spaces = _write(tmp_path / "spaces.gmt", "R-HSA-1 not tab separated A B\n")
    _fails(lambda: resources.read_gmt(spaces, ["A"]), "spaces.gmt", "no line of")
    binary = tmp_path / "binary.gmt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    _fails(lambda: resources.read_gmt(binary, ["A"]), "binary.gmt", "cannot read")
    no_members = tmp_path / "no_members.gmt.zip"
    zipfile.ZipFile(no_members, "w").close()
    _fails(lambda: resources.read_gmt(no_members, ["A"]), "no_members.gmt.zip", "holds no file")
    broken_zip = tmp_path / "broken.gmt.zip"
    broken_zip.write_bytes(_write(tmp_path / "whole.gmt.zip", REACTOME * 50).read_bytes()[:60])
    _fails(lambda: resources.read_gmt(broken_zip, ["A"]), "broken.gmt.zip", "cannot read")
    broken_gzip = tmp_path / "broken.gmt.gz"
    broken_gzip.write_bytes(_write(tmp_path / "whole.gmt.gz", REACTOME * 50).read_bytes()[:30])
    _fails(lambda: resources.read_gmt(broken_gzip, ["A"]), "broken.gmt.gz", "cannot read")
