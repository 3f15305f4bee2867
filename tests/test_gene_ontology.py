"""The Gene Ontology service, checked against sets computed here from the raw NCBI files."""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import real_data_file
from threadpoolctl import threadpool_limits

from bench.core import paths
from bench.core.api import GeneKnowledge
from bench.core.errors import DataError
from bench.data import gene_ontology
from bench.data.gene_ontology import GeneOntology, load_gene_ontology
from bench.data.go_similarity import GoSimilarity
from bench.data.knowledge import StoreGeneKnowledge
from bench.data.manifest import read_manifest
from bench.data.ncbi import read_gene2go, read_gene_info

GENE2GO = "gene2go_human.gz"
GENE_INFO = "Homo_sapiens.gene_info.gz"
HEADER_GO = "#tax_id\tGeneID\tGO_ID\tEvidence\tQualifier\tGO_term\tPubMed\tCategory\n"
HEADER_INFO = "#tax_id\tGeneID\tSymbol\tLocusTag\tSynonyms\tdbXrefs\tdescription\n"
UNKNOWN = "NOT_A_GENE_XYZ"
GENES = (
    "RPL5 RPL11 RPL23 RPS6 RPS19 CDK1 CDK2 CDK4 CDK6 CCNB1 CCND1 SMAD2 SMAD3 SMAD4 TGFBR1 KRT8 KRT18 "
    "KRT19 HBA1 HBA2 HBB TP53 MDM2 ATM CHEK2 MYC MAX JUN FOS ALB INS SYP SNAP25 STX1A GATA1 TAL1 KLF1 "
    "CEBPA CEBPB SPI1 ELMSAN1 C19orf26 " + UNKNOWN
).split()


def _rows(path: Path):
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        for row in reader:
            yield dict(zip(header, row))


@pytest.fixture(scope="module")
def raw():
    """Symbols, synonyms and GO sets read with plain csv and sets, independently of the service."""
    info = list(_rows(real_data_file(GENE_INFO)))
    terms: dict[int, set[str]] = {}
    category: dict[str, str] = {}
    for row in _rows(real_data_file(GENE2GO)):
        if row["#tax_id"] == "9606" and not row["Qualifier"].startswith("NOT"):
            terms.setdefault(int(row["GeneID"]), set()).add(row["GO_ID"])
            category[row["GO_ID"]] = row["Category"]
    symbol_count: dict[str, int] = {}
    for row in info:
        symbol_count[row["Symbol"]] = symbol_count.get(row["Symbol"], 0) + 1
    by_symbol = {r["Symbol"]: int(r["GeneID"]) for r in info if symbol_count[r["Symbol"]] == 1}
    synonym_genes: dict[str, set[int]] = {}
    for row in info:
        for synonym in row["Synonyms"].split("|"):
            if synonym != "-":
                synonym_genes.setdefault(synonym, set()).add(int(row["GeneID"]))
    return {"terms": terms, "category": category, "by_symbol": by_symbol, "symbols": set(symbol_count),
            "synonym_genes": synonym_genes}


@pytest.fixture(scope="module")
def tables():
    return read_gene2go(real_data_file(GENE2GO)), read_gene_info(real_data_file(GENE_INFO))


@pytest.fixture(scope="module")
def go(tables):
    return GeneOntology(*tables)


def _raw_terms(raw, symbol: str) -> set[str]:
    return raw["terms"].get(raw["by_symbol"].get(symbol), set())


def test_resolves_official_symbols_and_unique_synonyms(go, raw):
    for old, new in [("ELMSAN1", "MIDEAS"), ("C19orf26", "CBARP"), ("C3orf72", "FOXL2NB")]:
        assert go.resolve(new) == raw["by_symbol"][new]
        assert go.resolve(old) == raw["by_symbol"][new] and type(go.resolve(old)) is int
        assert go.go_terms(old) == _raw_terms(raw, new)
    assert go.resolve(UNKNOWN) is None
    assert go.go_terms(UNKNOWN) == frozenset()
    ambiguous = sorted(
        s for s, ids in raw["synonym_genes"].items() if len(ids) > 1 and s not in raw["symbols"]
    )
    assert ambiguous
    assert all(go.resolve(s) is None for s in ambiguous[:50])
    assert "TP53" in go and UNKNOWN not in go


def test_go_terms_equal_the_file(go, raw):
    for symbol in ["TP53", "RPL5", "SMAD3", "HBA1"]:
        assert go.go_terms(symbol) == _raw_terms(raw, symbol)
    mapping = go.gene_to_go(GENES)
    assert UNKNOWN not in mapping
    assert mapping["CDK1"] == _raw_terms(raw, "CDK1")


@pytest.mark.parametrize("threshold, top_k", [(0.1, 20), (0.1, 3), (0.25, 2)])
def test_real_graph_is_top_k_set_jaccard(go, raw, threshold, top_k):
    genes = [g for g in GENES if g != UNKNOWN]
    sets = {g: _raw_terms(raw, g) for g in genes}
    sets["ELMSAN1"], sets["C19orf26"] = _raw_terms(raw, "MIDEAS"), _raw_terms(raw, "CBARP")
    expected = {}
    for target in genes:
        scored = []
        for position, source in enumerate(genes):
            union = sets[target] | sets[source]
            weight = len(sets[target] & sets[source]) / len(union) if union else 0.0
            if source != target and weight > threshold:
                scored.append((-weight, position, source, weight))
        for _, _, source, weight in sorted(scored)[:top_k]:
            expected[(source, target)] = weight

    edges = go.graph(GENES, threshold=threshold, top_k=top_k)

    assert list(edges.columns) == ["source", "target", "importance"]
    found = {(s, t): w for s, t, w in edges.itertuples(index=False)}
    assert len(found) == len(edges)
    assert found.keys() == expected.keys()
    assert [found[k] for k in expected] == pytest.approx([expected[k] for k in expected], abs=1e-12)
    assert (edges["source"] != edges["target"]).all()
    assert (edges["importance"] > threshold).all()
    assert edges.groupby("target").size().max() <= top_k
    assert UNKNOWN not in set(edges["source"]) | set(edges["target"])


def _raw_gene_sets(raw, genes: list[str], ids: dict[str, int], category: str, low: int, high: int):
    members: dict[str, list[str]] = {}
    for gene in genes:
        for term in raw["terms"].get(ids.get(gene), ()):
            if raw["category"][term] == category:
                members.setdefault(term, []).append(gene)
    return {t: m for t, m in sorted(members.items()) if low <= len(m) <= high}


@pytest.mark.parametrize("category, low, high", [("Process", 5, 200), ("Function", 3, 50), ("Component", 10, 500)])
def test_real_gene_sets_equal_the_file(go, raw, tables, category, low, high):
    assert set(tables[0]["Category"]) == {"Process", "Function", "Component"}
    symbols = sorted(s for s, g in raw["by_symbol"].items() if g in raw["terms"])[::7]
    genes = ["ELMSAN1", UNKNOWN, *symbols, "TP53", "ELMSAN1"]
    ids = {**raw["by_symbol"], "ELMSAN1": raw["by_symbol"]["MIDEAS"]}
    expected = _raw_gene_sets(raw, list(dict.fromkeys(genes)), ids, category, low, high)

    sets = go.gene_sets(genes, category=category, min_size=low, max_size=high)

    assert len(expected) > 50 and any("ELMSAN1" in m for m in expected.values())
    assert list(sets) == list(expected)
    assert sets == expected


def test_gene_sets_of_a_tiny_ontology_worked_by_hand():
    """A-E annotated, F not; OLDB is B's synonym. P1 {A,B,C,D}, P2 {B,D}, P3 {E}, F1 {A,B,C} (Function)."""
    pairs = [(1, "P1"), (2, "P1"), (3, "P1"), (4, "P1"), (2, "P2"), (4, "P2"), (5, "P3"),
             (1, "F1"), (2, "F1"), (3, "F1")]
    annotations = pd.DataFrame(
        [(g, f"GO:{t}", "Function" if t.startswith("F") else "Process") for g, t in pairs],
        columns=["GeneID", "GO_ID", "Category"],
    )
    info = pd.DataFrame({"GeneID": range(1, 7), "Symbol": list("ABCDEF"), "Synonyms": [[], ["OLDB"], [], [], [], []]})
    go = GeneOntology(annotations, info)
    genes = ["D", "OLDB", "X", "C", "A", "F", "E", "D"]

    assert go.gene_sets(genes, min_size=2) == {"GO:P1": ["D", "OLDB", "C", "A"], "GO:P2": ["D", "OLDB"]}
    assert list(go.gene_sets(genes, min_size=1)) == ["GO:P1", "GO:P2", "GO:P3"]
    assert go.gene_sets(genes, min_size=1, max_size=2) == {"GO:P2": ["D", "OLDB"], "GO:P3": ["E"]}
    assert go.gene_sets(["A", "B", "E"], min_size=3) == {}
    assert go.gene_sets(genes, category="Function", min_size=3) == {"GO:F1": ["OLDB", "C", "A"]}
    assert go.gene_sets(genes, category="Component", min_size=1) == {}
    assert go.gene_sets([], min_size=1) == {}
    with pytest.raises(ValueError, match="Component, Function, Process"):
        go.gene_sets(genes, category="process")
    without = GeneOntology(annotations.drop(columns="Category"), info)
    with pytest.raises(ValueError, match="Category"):
        without.gene_sets(genes)
    assert without._fingerprint(3) == go._fingerprint(3)


def _write_gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as handle:
        handle.write(text)
    return path


@pytest.fixture()
def tiny(tmp_path):
    """Genes 1-4 (A-D): A {1,2,3}, B {1,2,4}, C {1,5,6,7}, D {8}; a NOT line and mouse lines must not count."""
    lines = [
        (1, "GO:1", "-"), (1, "GO:2", "enables"), (1, "GO:3", "-"),
        (2, "GO:1", "-"), (2, "GO:2", "-"), (2, "GO:4", "-"),
        (3, "GO:1", "-"), (3, "GO:5", "-"), (3, "GO:6", "-"), (3, "GO:7", "-"),
        (4, "GO:8", "-"), (4, "GO:1", "NOT enables"),
    ]
    gene2go = HEADER_GO + "".join(f"9606\t{g}\t{t}\tIDA\t{q}\t-\t-\tProcess\n" for g, t, q in lines)
    gene2go += "10090\t1\tGO:4\tIDA\t-\t-\t-\tProcess\n10090\t5\tGO:1\tIDA\t-\t-\t-\tProcess\n"
    info = HEADER_INFO + (
        "9606\t1\tA\t-\tOLDA|SHARED\t-\tgene a\n"
        "9606\t2\tB\t-\tSHARED\t-\tgene b\n"
        "9606\t3\tC\t-\t-\t-\tgene c\n"
        "9606\t4\tD\t-\t-\t-\tgene d\n"
        "10090\t5\tE\t-\t-\t-\tmouse gene\n"
    )
    return _write_gz(tmp_path / "gene2go.gz", gene2go), _write_gz(tmp_path / "gene_info.gz", info)


def _edges(frame) -> list[tuple[str, str, float]]:
    return sorted((s, t, round(w, 12)) for s, t, w in frame.itertuples(index=False))


def test_tiny_files_graph_worked_by_hand(tiny):
    go = GeneOntology.from_files(*tiny)
    assert isinstance(go, GeneKnowledge)
    assert go.go_terms("A") == {"GO:1", "GO:2", "GO:3"}
    assert go.go_terms("D") == {"GO:8"}
    assert go.resolve("OLDA") == 1 and go.resolve("SHARED") is None and go.resolve("E") is None
    sixth = round(1 / 6, 12)
    genes = ["OLDA", "B", "C", "D", "SHARED"]
    assert _edges(go.graph(genes)) == sorted(
        [("B", "OLDA", 0.5), ("OLDA", "B", 0.5), ("C", "OLDA", sixth),
         ("C", "B", sixth), ("OLDA", "C", sixth), ("B", "C", sixth)]
    )
    assert _edges(go.graph(genes, top_k=1)) == sorted([("B", "OLDA", 0.5), ("OLDA", "B", 0.5), ("OLDA", "C", sixth)])
    assert _edges(go.graph(genes, threshold=0.2)) == [("B", "OLDA", 0.5), ("OLDA", "B", 0.5)]
    assert go.graph(genes, threshold=0.5).empty
    assert go.gene_sets(["C", "SHARED", "B", "OLDA"], min_size=2) == {"GO:1": ["C", "B", "OLDA"], "GO:2": ["B", "OLDA"]}


def test_go_annotations_name_every_annotated_gene(tiny):
    """Official symbols of the human genes with a GO term (not D's NOT line, not mouse E), outdated ones
    mapped; built once per service."""
    go = GeneOntology.from_files(*tiny)
    annotations = go.go_annotations()
    assert annotations is go.go_annotations()
    assert annotations.gene2go == {"A": {"GO:1", "GO:2", "GO:3"}, "B": {"GO:1", "GO:2", "GO:4"},
                                   "C": {"GO:1", "GO:5", "GO:6", "GO:7"}, "D": {"GO:8"}}
    assert [annotations.official(g) for g in ("A", "OLDA", "SHARED", "E", "NOPE")] == ["A", "A", None, None, None]
    assert _edges(annotations.similarity_graph(["A", "B", "C"], 0.2, 20)) == [("A", "B", 0.5), ("B", "A", 0.5)]


def test_store_without_gene_ontology_has_no_go_annotations(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    assert StoreGeneKnowledge().go_annotations() is None
    assert "warning: no Gene Ontology features" in capsys.readouterr().err


def test_go_graph_is_cached_on_disk(tiny, monkeypatch, tmp_path):
    """A fresh service (as in a new process) reads the file (the builder fails if called); an unreadable or
    inconsistent file is rebuilt with a warning; other genes, threshold or top_k have their own file."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    genes = ["A", "B", "C", "D"]
    built = GoSimilarity(GeneOntology.from_files(*tiny)).similarity_graph(genes, 0.1, 20)
    fresh = GoSimilarity(GeneOntology.from_files(*tiny))
    path = fresh.cache_path(genes, 0.1, 20)
    assert list((tmp_path / "cache" / "gene_ontology").iterdir()) == [path]
    others = {fresh.cache_path(genes, 0.1, 5), fresh.cache_path(genes[:3], 0.1, 20), fresh.cache_path(genes, 0.2, 20)}
    assert path not in others and len(others) == 3
    original = GeneOntology.graph

    def refuse(*args, **kwargs):
        raise AssertionError("the cached GO graph should have been read")

    monkeypatch.setattr(GeneOntology, "graph", refuse)
    pd.testing.assert_frame_equal(fresh.similarity_graph(genes, 0.1, 20), built)
    out_of_range = tmp_path / "out_of_range.npz"
    np.savez(out_of_range, source=np.array([0, 7]), target=np.array([1, 0]), importance=np.array([1.0, 1.0]))
    for corrupt in (b"not a zip file", out_of_range.read_bytes()):
        path.write_bytes(corrupt)
        monkeypatch.setattr(GeneOntology, "graph", original)
        with pytest.warns(UserWarning, match="GO graph cache .* is unusable"):
            pd.testing.assert_frame_equal(GoSimilarity(fresh.ontology).similarity_graph(genes, 0.1, 20), built)
        monkeypatch.setattr(GeneOntology, "graph", refuse)
        pd.testing.assert_frame_equal(GoSimilarity(fresh.ontology).similarity_graph(genes, 0.1, 20), built)


def test_tiny_embeddings(tiny):
    go = GeneOntology.from_files(*tiny)
    vectors, mask = go.embeddings(["A", "B", "C", "D", "E"], dim=3)
    assert vectors.shape == (5, 3) and vectors.dtype == np.float32
    assert mask.tolist() == [True, True, True, True, False]
    assert not vectors[4].any()
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[3]


def test_tiny_embeddings_follow_the_lsa_definition(tiny):
    go = GeneOntology.from_files(*tiny)
    incidence = np.array(
        [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1]],
        dtype=float,
    )
    weighted = incidence * (np.log(5 / (1 + incidence.sum(axis=0))) + 1)
    weighted /= np.linalg.norm(weighted, axis=1, keepdims=True)
    left, values, _ = np.linalg.svd(weighted)
    projected = left[:, :2] * values[:2]
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    vectors, mask = go.embeddings(["A", "B", "C", "D"], dim=2)
    assert mask.all()
    assert vectors @ vectors.T == pytest.approx(projected @ projected.T, abs=1e-5)


def test_real_embeddings_match_sklearn_lsa(go, tables):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    annotations = tables[0]
    documents = annotations.groupby("GeneID")["GO_ID"].apply(" ".join)
    tfidf = TfidfVectorizer(token_pattern=r"\S+", lowercase=False).fit_transform(documents)
    with threadpool_limits(1):
        reduced = TruncatedSVD(n_components=gene_ontology.EMBEDDING_DIM, algorithm="arpack").fit_transform(tfidf)
    genes = ["TP53", "RPL5", "RPL11", "CDK1", "SMAD3", "HBA1", "KRT8", "ALB"]
    picked = reduced[documents.index.get_indexer([go.resolve(g) for g in genes])]
    picked /= np.linalg.norm(picked, axis=1, keepdims=True)
    vectors, _ = go.embeddings(genes)
    assert vectors @ vectors.T == pytest.approx(picked @ picked.T, abs=1e-3)


def test_embeddings_of_real_genes(go, raw):
    unannotated = next(s for s, g in raw["by_symbol"].items() if g not in raw["terms"])
    genes = ["RPL5", "RPL11", "SYP", "HBA1", "HBA2", "TP53", "SMAD2", "SMAD3", "ALB", UNKNOWN, unannotated]
    vectors, mask = go.embeddings(genes)
    assert vectors.shape == (len(genes), gene_ontology.EMBEDDING_DIM) and vectors.dtype == np.float32
    assert mask.tolist() == [True] * 9 + [False, False]
    assert not vectors[~mask].any()
    assert np.linalg.norm(vectors[mask], axis=1) == pytest.approx(1.0, abs=1e-5)
    row = {g: vectors[i] for i, g in enumerate(genes)}
    for gene, similar, unrelated in [("RPL5", "RPL11", "SYP"), ("HBA1", "HBA2", "TP53"), ("SMAD2", "SMAD3", "ALB")]:
        sets = {g: _raw_terms(raw, g) for g in (gene, similar, unrelated)}
        assert len(sets[gene] & sets[similar]) / len(sets[gene] | sets[similar]) > 0.3
        assert len(sets[gene] & sets[unrelated]) / len(sets[gene] | sets[unrelated]) < 0.1
        assert row[gene] @ row[similar] > row[gene] @ row[unrelated] + 0.3


def test_annotation_digest_follows_the_genes_and_their_terms(go, tables):
    """The key of GEARS' on-disk GO graph: equal for the same genes and annotations (in another service
    object too), different when the genes, their order, their names or their terms differ."""
    genes = ["SMAD2", "SMAD3", "TP53", "ELMSAN1"]
    digest = go.annotation_digest(genes)
    assert GeneOntology(*tables).annotation_digest(genes) == digest
    annotations, info = tables
    smad2 = info.loc[info["Symbol"] == "SMAD2", "GeneID"].iloc[0]
    fewer = GeneOntology(annotations[annotations["GeneID"] != smad2], info)
    extra = pd.DataFrame({"GeneID": [smad2], "GO_ID": ["GO:0000001"], "Category": ["Process"]})
    more = GeneOntology(pd.concat([annotations, extra], ignore_index=True), info)
    others = {go.annotation_digest(genes[::-1]), go.annotation_digest(genes[:3]), fewer.annotation_digest(genes),
              more.annotation_digest(genes), go.annotation_digest([*genes[:3], "MIDEAS"])}
    assert digest not in others and len(others) == 5


def test_embeddings_are_deterministic_and_cached(tables, monkeypatch, tmp_path):
    genes = ["TP53", "CDK1", "MYC"]
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "first"))
    first, _ = GeneOntology(*tables).embeddings(genes)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "second"))
    second, _ = GeneOntology(*tables).embeddings(genes)
    assert np.array_equal(first, second)
    cached = list((paths.cache_dir() / "gene_ontology").iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npy"

    def refit(*_):
        raise AssertionError("the cached embeddings should have been used")

    monkeypatch.setattr(gene_ontology, "_lsa", refit)
    third, _ = GeneOntology(*tables).embeddings(genes)
    assert np.array_equal(first, third)


def test_a_cached_table_is_written_whole_with_the_usual_permissions(tmp_path):
    path = tmp_path / "gene_ontology" / "lsa.npy"
    table = np.arange(12, dtype=np.float32).reshape(3, 4)
    gene_ontology._save_table(path, table)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert np.array_equal(gene_ontology._load_table(path, (3, 4)), table)
    assert [p.name for p in path.parent.iterdir()] == ["lsa.npy"]


def _assert_one_line_error(path_a: Path, path_b: Path, words: str) -> None:
    with pytest.raises(DataError) as caught:
        GeneOntology.from_files(path_a, path_b)
    message = str(caught.value)
    assert "\n" not in message and words in message


def test_malformed_files_raise_one_line_data_errors(tiny, tmp_path):
    gene2go, info = tiny
    no_go_id = _write_gz(tmp_path / "bad.gz", "#tax_id\tGeneID\tEvidence\tQualifier\n9606\t1\tIDA\t-\n")
    _assert_one_line_error(no_go_id, info, "GO_ID")
    rows = "".join(f"9606\t{g}\tGO:{g % 97}\tIDA\t-\t-\t-\tProcess\n" for g in range(60_000))
    whole = _write_gz(tmp_path / "whole.gz", HEADER_GO + rows).read_bytes()
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    _assert_one_line_error(truncated, info, "truncated")
    not_integer = _write_gz(tmp_path / "id.gz", HEADER_GO + "9606\tone\tGO:1\tIDA\t-\t-\t-\tProcess\n")
    _assert_one_line_error(not_integer, info, "GeneID")
    mouse_only = _write_gz(tmp_path / "mouse.gz", HEADER_GO + "10090\t1\tGO:1\tIDA\t-\t-\t-\tProcess\n")
    _assert_one_line_error(mouse_only, info, "tax_id 9606")
    _assert_one_line_error(gene2go, tmp_path / "absent.gz", "does not exist")


def test_manifest_names_and_checksums_match_the_store():
    manifest = read_manifest(paths.datasets_dir() / "gene_ontology.toml")
    assert manifest.kind == "resource" and manifest.format == "ncbi_gene"
    for role in ("gene2go", "gene_info"):
        entry = manifest.file(role)
        assert entry.mutable and entry.url.startswith("https://ftp.ncbi.nlm.nih.gov/gene/DATA/")
        assert hashlib.sha256(real_data_file(entry.name).read_bytes()).hexdigest() == entry.sha256


def test_load_gene_ontology_names_the_missing_file(tmp_path):
    (tmp_path / GENE2GO).write_bytes(b"")
    with pytest.raises(DataError) as caught:
        load_gene_ontology(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and GENE_INFO in message and "bench data fetch gene_ontology" in message


def test_load_gene_ontology_from_the_store(raw):
    assert load_gene_ontology().resolve("C3orf72") == raw["by_symbol"]["FOXL2NB"]
