"""Readers of scBIG's official resources, on small files whose contents are checked by hand."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.adapters.scbig import resources
from bench.errors import ModelError

INFO_HEADER = "#string_protein_id\tpreferred_name\tprotein_size\tannotation\n"
LINKS_HEADER = "protein1 protein2 combined_score\n"


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as handle:
            handle.write(text)
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


def test_gene_vectors_from_lists_arrays_and_tensors(tmp_path):
    table = {"A": [1, 2, 3], "B": np.array([0.5, -1.0, 2.0]), "C": torch.tensor([7.0, 8, 9])}
    vectors = resources.read_gene_vectors(_pickle(tmp_path / "emb.pkl", table))
    assert list(vectors) == ["A", "B", "C"]
    assert all(v.dtype == np.float32 and v.shape == (3,) for v in vectors.values())
    assert [v.tolist() for v in vectors.values()] == [[1, 2, 3], [0.5, -1, 2], [7, 8, 9]]


@pytest.mark.parametrize(
    "content, words",
    [
        (b"certainly not a pickle", "cannot read"),
        (pickle.dumps([[1.0, 2.0]]), "cannot read"),
        (pickle.dumps({"A": ["x", "y"]}), "cannot read"),
        (pickle.dumps({}), "one size"),
        (pickle.dumps({"A": [1.0, 2.0], "B": [1.0, 2.0, 3.0]}), "one size"),
        (pickle.dumps({"A": np.ones((2, 2))}), "one size"),
        (pickle.dumps({"A": [1.0, float("nan")]}), "finite"),
    ],
)
def test_malformed_gene_vectors(tmp_path, content, words):
    path = tmp_path / "emb.pkl"
    path.write_bytes(content)
    _fails(lambda: resources.read_gene_vectors(path), str(path), words, "pickle of {gene symbol")


def test_missing_gene_vectors_file(tmp_path):
    _fails(lambda: resources.read_gene_vectors(tmp_path / "absent.pkl"), "absent.pkl", "does not exist")


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


def _esm_directory(tmp_path: Path) -> Path:
    """A: a vector; B: residues (1, 2) and (3, 4), mean (2, 3); C: fair-esm's dict, layer 33 wins."""
    directory = tmp_path / "esm"
    directory.mkdir()
    torch.save(torch.tensor([1.0, -1.0], dtype=torch.float64), directory / "A.pt")
    torch.save(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.bfloat16), directory / "B.pt")
    layers = {6: torch.tensor([9.0, 9.0]), 33: torch.tensor([0.5, 0.25]), 12: torch.tensor([8.0, 8.0])}
    torch.save({"label": "C", "mean_representations": layers}, directory / "C.pt")
    return directory


def test_esm_features(tmp_path):
    directory = _esm_directory(tmp_path)
    features, found = resources.read_esm_features(directory, ["C", "X", "A", "B", "A"])
    assert features.dtype == np.float32 and found.dtype == bool
    assert features.tolist() == [[0.5, 0.25], [0, 0], [1, -1], [2, 3], [1, -1]]
    assert found.tolist() == [True, False, True, True, True]
    features, found = resources.read_esm_features(str(directory), ["X", "Y"])
    assert features.shape == (2, 2) and not features.any() and not found.any()
    features, found = resources.read_esm_features(directory, [])
    assert features.shape == (0, 2) and found.shape == (0,)


@pytest.mark.parametrize(
    "value, words",
    [
        (torch.ones(2, 2, 2), "no usable tensor"),
        ({"label": "A", "representations": {33: torch.ones(2)}}, "no usable tensor"),
        ({"mean_representations": {}}, "no usable tensor"),
        (torch.tensor([1.0, float("inf")]), "infinite"),
    ],
)
def test_malformed_esm_files(tmp_path, value, words):
    directory = _esm_directory(tmp_path)
    torch.save(value, directory / "D.pt")
    _fails(lambda: resources.read_esm_features(directory, ["A", "D"]), "D.pt", words)


def test_esm_directory_errors(tmp_path):
    directory = _esm_directory(tmp_path)
    _fails(lambda: resources.read_esm_features(tmp_path / "absent", ["A"]), "absent", "does not exist")
    (directory / "D.pt").write_bytes(b"not a tensor file")
    _fails(lambda: resources.read_esm_features(directory, ["D"]), "D.pt", "cannot load")
    torch.save(torch.ones(3), directory / "E.pt")
    _fails(lambda: resources.read_esm_features(directory, ["A", "E"]), str(directory), "[2, 3]")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(lambda: resources.read_esm_features(empty, ["A"]), "empty", "no <gene symbol>.pt")


GMT = (
    "R-HSA-2\tsecond pathway\tB\tA\tQ\n"
    "\n"
    "R-HSA-1\tfirst pathway\tC\tB\tA\tD\r\n"
    "R-HSA-3\tempty\n"
    "R-HSA-4\tnone of ours\tX\tY\tZ\n"
)


@pytest.mark.parametrize("name", ["pathways.gmt", "pathways.gmt.gz"])
def test_gmt_worked_by_hand(tmp_path, name):
    path = _write(tmp_path / name, GMT)
    genes = ["D", "A", "C", "B", "A"]
    assert resources.read_gmt(path, genes, min_size=2) == {"R-HSA-1": ["D", "A", "C", "B"], "R-HSA-2": ["A", "B"]}
    assert list(resources.read_gmt(path, genes, min_size=2)) == ["R-HSA-1", "R-HSA-2"]
    assert resources.read_gmt(path, genes, min_size=2, max_size=3) == {"R-HSA-2": ["A", "B"]}
    assert resources.read_gmt(path, genes) == {}
    assert resources.read_gmt(path, genes, min_size=0, max_size=0) == {"R-HSA-3": [], "R-HSA-4": []}


def test_gmt_errors(tmp_path):
    _fails(lambda: resources.read_gmt(tmp_path / "absent.gmt", ["A"]), "absent.gmt", "does not exist")
    empty = _write(tmp_path / "empty.gmt", "\n\n")
    _fails(lambda: resources.read_gmt(empty, ["A"]), "empty.gmt", "is empty")
    spaces = _write(tmp_path / "spaces.gmt", "R-HSA-1\tfine\tA\n\nR-HSA-2 not tab separated A B\n")
    _fails(lambda: resources.read_gmt(spaces, ["A"]), "line 3 of", "spaces.gmt")
    binary = tmp_path / "binary.gmt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    _fails(lambda: resources.read_gmt(binary, ["A"]), "binary.gmt", "cannot read")


def test_read_string_graph_returns_a_frame_for_no_edges(tmp_path):
    info = _write(tmp_path / "info.txt", INFO_HEADER + "9606.p1\tA\t1\tx\n")
    links = _write(tmp_path / "links.txt", LINKS_HEADER)
    edges = resources.read_string_graph(info, links, ["A"])
    assert isinstance(edges, pd.DataFrame) and edges.empty and list(edges.columns) == ["source", "target", "importance"]
