"""Gene Ontology knowledge for models, loaded from the data store on first use.

When the store lacks the Gene Ontology files, models still run: every gene simply has no prior
features, and a one-time warning says how to get them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.core.errors import DataError


class StoreGeneKnowledge:
    """A ``GeneKnowledge`` that reads the Gene Ontology service lazily from the data store."""

    DIMENSION = 64

    def __init__(self) -> None:
        self._service = None
        self._missing = False

    def _get(self):
        if self._service is None and not self._missing:
            from bench.data.gene_ontology import load_gene_ontology

            try:
                self._service = load_gene_ontology()
            except DataError as exc:
                self._missing = True
                print(f"warning: no Gene Ontology features ({exc})", file=sys.stderr)
        return self._service

    def go_annotations(self):
        service = self._get()
        return None if service is None else service.go_annotations()

    def embeddings(self, genes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        service = self._get()
        if service is None:
            return np.zeros((len(genes), self.DIMENSION), dtype=np.float32), np.zeros(len(genes), dtype=bool)
        return service.embeddings(genes)

    def graph(self, genes: Sequence[str]) -> pd.DataFrame:
        service = self._get()
        if service is None:
            return pd.DataFrame(columns=["source", "target", "importance"])
        return service.graph(genes)

    def gene_sets(self, genes: Sequence[str]) -> dict[str, list[str]]:
        service = self._get()
        return {} if service is None else service.gene_sets(genes)
