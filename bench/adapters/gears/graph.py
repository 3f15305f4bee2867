"""GEARS' perturbation graph: its nodes, the node of each dataset gene, and its edges (``docs/gears.md``).

With a Gene Ontology the nodes are every annotated gene (``gene_universe="genome"``) or cell-gears'
``default_pert_graph=False`` rule on the data it is given (``"dataset"``), the edges GEARS' GO graph plus a
self loop per node. A gene perturbed in training without annotation is an isolated node (GEARS would give
it index -1); any other gene outside the graph is a one-line ModelError. Without GO, or when no gene
perturbed in training is annotated, ``"auto"`` uses GEARS' co-expression graph of the measured genes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from bench.core.api import GeneKnowledge, GoAnnotations
from bench.core.conditions import genes_of
from bench.core.errors import DataError, ModelError

GRAPHS = ("auto", "go", "coexpression")
UNIVERSES = ("genome", "dataset")
GO_THRESHOLD = 0.1


@dataclass
class PerturbationGraph:
    """``gene2go``: node -> GO terms (none for an isolated or co-expression node); ``unrepresented``: why a
    gene is no node; ``annotations``: the GO that names a gene's node (None: a co-expression graph)."""

    gene2go: dict[str, set[str]]
    isolated: list[str]
    unrepresented: str
    annotations: GoAnnotations | None = None

    @property
    def kind(self) -> str:
        return "coexpression" if self.annotations is None else "go"

    @property
    def nodes(self) -> list[str]:
        return sorted(self.gene2go)

    def node_of(self, gene: str) -> str | None:
        """The node of a dataset's gene symbol (an outdated GO symbol mapped), None if it has none."""
        node = (self.annotations.official(gene) if self.annotations is not None else None) or gene
        return node if node in self.gene2go else None

    def check(self, conditions: Iterable[str]) -> None:
        """A one-line ModelError naming every gene of ``conditions`` that is not a node."""
        conditions = list(conditions)
        missing = sorted({g for c in conditions for g in genes_of(c) if self.node_of(g) is None})
        if missing:
            example = next(c for c in conditions if set(genes_of(c)) & set(missing))
            raise ModelError(
                f"GEARS cannot represent gene(s) {', '.join(missing)} (e.g. in condition '{example}'): such a "
                f"gene {self.unrepresented}, so it is no node of GEARS' perturbation graph"
            )

    def nodes_of(self, condition: str) -> list[str]:
        """The graph nodes a canonical condition perturbs (call ``check`` first)."""
        return [self.node_of(g) for g in genes_of(condition)]

    def go_edges(self, top_k: int) -> pd.DataFrame:
        """The GO edges among the annotated nodes plus a self loop of weight 1 on every node."""
        annotated = sorted(set(self.gene2go) - set(self.isolated))
        loops = pd.DataFrame({"source": self.nodes, "target": self.nodes, "importance": 1.0})
        edges = self.annotations.similarity_graph(annotated, GO_THRESHOLD, top_k)
        return pd.concat([edges, loops], ignore_index=True)


def build(mode: str, knowledge: GeneKnowledge | None, seen: set[str], measured: list[str], universe: str = "genome",
          validation: Iterable[str] = ()) -> PerturbationGraph:
    """The graph for ``mode``, given the genes perturbed in training (``seen``), the measured genes and, for
    the ``dataset`` universe, the genes perturbed in validation."""
    if mode != "coexpression":
        go = knowledge.go_annotations() if knowledge is not None else None
        if go is None and mode == "go":
            raise DataError("perturbation_graph 'go' needs the Gene Ontology: bench data fetch gene_ontology")
        if go is not None and (mode == "go" or any(go.official(g) is not None for g in seen)):
            isolated = _isolated(sorted(g for g in seen if go.official(g) is None), "have no Gene Ontology annotation")
            if universe == "genome":
                gene2go, unrepresented = go.gene2go, "has no Gene Ontology annotation and is not perturbed in training"
            else:
                genes = [*measured, *seen, *validation]
                gene2go = {node: go.gene2go[node] for g in genes if (node := go.official(g)) is not None}
                unrepresented = ("has no Gene Ontology annotation or is neither measured nor perturbed in training or "
                                 "validation (gene_universe 'dataset'; 'genome' has every annotated gene)")
            return PerturbationGraph({**gene2go, **{g: set() for g in isolated}}, isolated, unrepresented, go)
        reason = "no Gene Ontology in the data store" if go is None else "no perturbed gene has a GO annotation"
        print(f"gears: {reason}; using GEARS' co-expression graph of the measured genes to embed perturbations",
              file=sys.stderr)
    isolated = _isolated(sorted(set(seen) - set(measured)), "are not measured")
    return PerturbationGraph({g: set() for g in set(measured) | set(seen)}, isolated,
                             "is not a measured gene and is not perturbed in training")


def _isolated(genes: list[str], reason: str) -> list[str]:
    """``genes``, announced as isolated nodes when there are any."""
    if genes:
        print(f"gears: perturbed gene(s) {', '.join(genes)} {reason}; GEARS learns them from their training cells "
              "only (isolated nodes of its perturbation graph)", file=sys.stderr)
    return genes


def edge_tensors(edges: pd.DataFrame, node_map: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """GEARS' ``G_go`` and ``G_go_weight``: a ``2 x E`` index tensor (sources, targets) and weights."""
    source = edges["source"].map(node_map).to_numpy(dtype=np.int64)
    target = edges["target"].map(node_map).to_numpy(dtype=np.int64)
    weight = edges["importance"].to_numpy(dtype=np.float32)
    return torch.from_numpy(np.stack([source, target])), torch.from_numpy(weight)
