"""GEARS' perturbation graph and gene-to-GO mapping, built offline from the harness's Gene Ontology.

GEARS (Roohani et al., Nat Biotechnol 2024) embeds a perturbation through a graph over the genes it
may perturb: two genes are linked when the Jaccard index of their GO-term sets exceeds 0.1, and each
gene keeps its 20 most similar genes plus itself (``gears/utils.py``, ``make_GO`` and
``get_similarity_network``). cell-gears downloads the gene-to-GO mapping and that graph from Harvard
Dataverse; here both come from the harness's Gene Ontology service (NCBI gene2go and gene_info). The
nodes are every gene with a GO annotation, so any annotated gene can be queried after training, as
with GEARS' own genome-scale graph; a dataset's outdated symbols are mapped to their official nodes.

A gene without a GO annotation is never silently dropped (GEARS would give it index -1, i.e. treat
its cells as unperturbed). A gene perturbed in training becomes an isolated node, whose embedding GEARS
learns from that gene's own cells; any other gene cannot be represented and raises a ModelError.

When the data store lacks the GO files, or no gene perturbed in training has a GO annotation (the
simulator, non-human symbols), ``perturbation_graph="auto"`` uses GEARS' co-expression graph instead
(``network_type='co-express'``: Pearson |r| over training control and single-perturbation cells), whose
nodes are the measured genes.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from bench.conditions import genes_of
from bench.data.gene_ontology import GeneOntology, load_gene_ontology
from bench.errors import DataError, ModelError

GRAPHS = ("auto", "go", "coexpression")
GO_THRESHOLD = 0.1


@dataclass
class _GoIndex:
    """Every annotated gene of one Gene Ontology service, with GEARS' GO edges per ``top_k``."""

    symbols: list[str]
    by_gene_id: dict[int, str]
    gene2go: dict[str, set[str]]
    edges: dict[int, pd.DataFrame] = field(default_factory=dict)

    def go_edges(self, service: GeneOntology, top_k: int) -> pd.DataFrame:
        if top_k not in self.edges:
            self.edges[top_k] = service.graph(self.symbols, threshold=GO_THRESHOLD, top_k=top_k)
        return self.edges[top_k]


_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _go_index(service: GeneOntology) -> _GoIndex:
    """Built once per service and process: the genome-wide GO graph takes several seconds."""
    if service not in _INDEXES:
        symbols = service.symbols
        by_gene_id = {service.resolve(s): s for s in symbols}
        _INDEXES[service] = _GoIndex(symbols, by_gene_id, service.gene_to_go(symbols))
    return _INDEXES[service]


@functools.cache
def _stored_ontology() -> GeneOntology:
    return load_gene_ontology()


def ontology(knowledge: object, required: bool) -> GeneOntology | None:
    """The Gene Ontology service behind ``TrainData.gene_knowledge``: the object itself, the service of
    the CLI's ``StoreGeneKnowledge``, else the one in the data store. ``None`` when the store lacks the
    files, unless ``required`` (then the store's one-line DataError)."""
    if isinstance(knowledge, GeneOntology):
        return knowledge
    service = getattr(knowledge, "service", None)
    found = service() if callable(service) else None
    if found is not None:
        return found
    try:
        return _stored_ontology()
    except DataError:
        if required:
            raise
        return None


@dataclass
class PerturbationGraph:
    """The genes GEARS may perturb (``gene2go``: node -> GO terms, empty for a node without any) and
    how a dataset's gene symbols map to them."""

    kind: str
    gene2go: dict[str, set[str]]
    isolated: list[str]
    node_of: Callable[[str], str | None]
    service: GeneOntology | None = None

    @property
    def nodes(self) -> list[str]:
        return sorted(self.gene2go)

    def check(self, conditions: Iterable[str]) -> None:
        """Raise a one-line ModelError naming every gene of ``conditions`` that is not a node."""
        conditions = list(conditions)
        missing = sorted({g for c in conditions for g in genes_of(c) if self.node_of(g) is None})
        if missing:
            example = next(c for c in conditions if set(genes_of(c)) & set(missing))
            reason = "has no Gene Ontology annotation" if self.kind == "go" else "is not a measured gene"
            raise ModelError(
                f"GEARS cannot represent gene(s) {', '.join(missing)} (e.g. in condition '{example}'): such a "
                f"gene {reason} and is not perturbed in training, so it is no node of GEARS' perturbation graph"
            )

    def nodes_of(self, condition: str) -> list[str]:
        """The graph nodes a canonical condition perturbs (call ``check`` first)."""
        return [self.node_of(g) for g in genes_of(condition)]

    def go_edges(self, top_k: int) -> pd.DataFrame:
        """GEARS' GO edges (``source``, ``target``, ``importance``): each target's ``top_k`` sources by
        Jaccard index, plus a self loop of weight 1 on every node (GEARS keeps ``k + 1`` with itself)."""
        loops = pd.DataFrame({"source": self.nodes, "target": self.nodes, "importance": 1.0})
        return pd.concat([_go_index(self.service).go_edges(self.service, top_k), loops], ignore_index=True)


def build(mode: str, knowledge: object, seen: set[str], measured: list[str]) -> PerturbationGraph:
    """The perturbation graph for ``mode`` (``auto``, ``go`` or ``coexpression``), given the genes
    perturbed in training (``seen``) and the measured genes."""
    if mode != "coexpression":
        service = ontology(knowledge, required=mode == "go")
        if service is not None and (mode == "go" or any(gene in service for gene in seen)):
            return _go_graph(service, seen)
        reason = "no Gene Ontology in the data store" if service is None else "no perturbed gene has a GO annotation"
        print(f"gears: {reason}; using GEARS' co-expression graph of the measured genes to embed perturbations",
              file=sys.stderr)
    return _coexpression_graph(measured, seen)


def _go_graph(service: GeneOntology, seen: set[str]) -> PerturbationGraph:
    index = _go_index(service)

    def annotated(gene: str) -> str | None:
        return gene if gene in index.gene2go else index.by_gene_id.get(service.resolve(gene))

    isolated = sorted(g for g in seen if annotated(g) is None)
    _notice_isolated(isolated, "have no Gene Ontology annotation")
    extra = set(isolated)

    def node_of(gene: str) -> str | None:
        return annotated(gene) or (gene if gene in extra else None)

    gene2go = {**index.gene2go, **{g: set() for g in isolated}}
    return PerturbationGraph("go", gene2go, isolated, node_of, service)


def _coexpression_graph(measured: list[str], seen: set[str]) -> PerturbationGraph:
    nodes = set(measured) | set(seen)
    isolated = sorted(set(seen) - set(measured))
    _notice_isolated(isolated, "are not measured")
    return PerturbationGraph("coexpression", {g: set() for g in nodes}, isolated, lambda g: g if g in nodes else None)


def _notice_isolated(genes: list[str], reason: str) -> None:
    if genes:
        print(f"gears: perturbed gene(s) {', '.join(genes)} {reason}; GEARS learns them from their training cells "
              "only (isolated nodes of its perturbation graph)", file=sys.stderr)


def edge_tensors(edges: pd.DataFrame, node_map: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """GEARS' ``G_go`` and ``G_go_weight``: a ``2 x E`` index tensor (sources, targets) and weights."""
    source = edges["source"].map(node_map).to_numpy(dtype=np.int64)
    target = edges["target"].map(node_map).to_numpy(dtype=np.int64)
    weight = edges["importance"].to_numpy(dtype=np.float32)
    return torch.from_numpy(np.stack([source, target])), torch.from_numpy(weight)
