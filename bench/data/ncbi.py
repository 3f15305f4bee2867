"""Readers for NCBI Gene's ``gene2go`` and ``gene_info`` files, filtered to one species while reading.

NCBI publishes both for all species at once (``gene/DATA/gene2go.gz`` is gigabytes uncompressed), so
rows are read in chunks and only those of the wanted ``tax_id`` are kept. Files may be gzip or plain.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from bench.core.errors import DataError
from bench.core.textfiles import READ_ERRORS, compression, existing, one_line, open_text

HUMAN = 9606
CHUNK_ROWS = 500_000
GENE2GO_COLUMNS = ("#tax_id", "GeneID", "GO_ID", "Qualifier", "Category")
GENE_INFO_COLUMNS = ("#tax_id", "GeneID", "Symbol", "Synonyms")


def _chunks(path: Path, columns: tuple[str, ...], fmt: str, tax_id: int) -> Iterator[pd.DataFrame]:
    """The rows of ``tax_id``, as string columns, a chunk at a time; header checked first."""
    existing(path, f"{fmt} file", DataError)
    try:
        with open_text(path) as handle:
            header = handle.readline().rstrip("\n").split("\t")
    except READ_ERRORS as exc:
        raise DataError(f"cannot read {fmt} file {path} ({one_line(exc)}); download it again") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{path} is not an NCBI {fmt} file: header lacks column(s) {', '.join(missing)}; "
            f"expected the tab-separated header of NCBI's {fmt}"
        )
    wanted = str(tax_id)
    try:
        with pd.read_csv(
            path,
            sep="\t",
            usecols=list(columns),
            dtype=str,
            compression=compression(path),
            quoting=csv.QUOTE_NONE,
            na_filter=False,
            chunksize=CHUNK_ROWS,
        ) as reader:
            for chunk in reader:
                yield chunk[chunk["#tax_id"] == wanted]
    except READ_ERRORS as exc:
        raise DataError(f"{fmt} file {path} is truncated or corrupt ({one_line(exc)}); download it again") from None


def _collect(path: Path, columns: tuple[str, ...], fmt: str, tax_id: int, keep) -> pd.DataFrame:
    table = pd.concat([keep(chunk) for chunk in _chunks(path, columns, fmt, tax_id)], ignore_index=True)
    if table.empty:
        raise DataError(f"{path} has no {fmt} rows for tax_id {tax_id}; check the file and the tax_id")
    try:
        table["GeneID"] = table["GeneID"].astype("int64")
    except ValueError:
        raise DataError(f"{fmt} file {path} has a non-integer GeneID; the file is malformed") from None
    return table


def read_gene2go(path: Path, tax_id: int = HUMAN) -> pd.DataFrame:
    """Direct GO annotations of ``tax_id``: columns ``GeneID`` (int), ``GO_ID`` and ``Category`` (the
    term's ontology: ``Process``, ``Function`` or ``Component``), one row per gene-term pair.

    Annotations whose Qualifier starts with ``NOT`` state that a gene lacks the term and are dropped.
    """

    def keep(chunk: pd.DataFrame) -> pd.DataFrame:
        return chunk.loc[~chunk["Qualifier"].str.startswith("NOT"), ["GeneID", "GO_ID", "Category"]]

    table = _collect(Path(path), GENE2GO_COLUMNS, "gene2go", tax_id, keep)
    return table.drop_duplicates(ignore_index=True)


def read_gene_info(path: Path, tax_id: int = HUMAN) -> pd.DataFrame:
    """Genes of ``tax_id``: columns ``GeneID`` (int), ``Symbol`` and ``Synonyms`` (a list of strings)."""

    def keep(chunk: pd.DataFrame) -> pd.DataFrame:
        return chunk[["GeneID", "Symbol", "Synonyms"]]

    table = _collect(Path(path), GENE_INFO_COLUMNS, "gene_info", tax_id, keep)
    table["Synonyms"] = [[] if s in ("", "-") else s.split("|") for s in table["Synonyms"]]
    return table
