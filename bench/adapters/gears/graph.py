"""GEARS' perturbation graph and gene-to-GO mapping, built offline from the harness's Gene Ontology.

GEARS (Roohani et al., Nat Biotechnol 2024) embeds a perturbation through a graph over the genes it
may perturb: two genes are linked when the Jaccard index of their GO-term sets exceeds 0.1, and each
gene keeps its 20 most similar genes plus itself (``gears/utils.py``, ``make_GO`` and
``get_similarity_network``). cell-gears downloads the gene-to-GO mapping from Harvard Dataverse; here it
comes from the harness's Gene Ontology service (NCBI gene2go and gene_info), and the graph is cached on
disk (``go_cache``). A dataset's outdated symbols are mapped to their official nodes.

The nodes (``gene_universe``, see ``docs/gears.md``): ``genome``, every gene with a GO annotation, so
that any annotated gene can be queried after training (like cell-gears' default, a fixed gene list
whatever the dataset); or ``dataset``, cell-gears' ``default_pert_graph=False`` rule on the data it is
given (the annotated measured genes and genes perturbed in training or validation), which cannot
represent a test gene that is neither measured nor perturbed there.

A gene without a GO annotation is never silently dropped (GEARS would give it index -1, i.e. treat
its cells as unperturbed). A gene perturbed in training becomes an isolated node, whose embedding GEARS
learns from that gene's own cells; any other gene outside the universe raises a ModelError.

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

from bench.adapters.gears import go_cache
from bench.core.conditions import genes_of
from bench.core.errors import DataError, ModelError
from bench.data.gene_ontology import GeneOntology, load_gene_ontology

GRAPHS = ("auto", "go", "coexpression")
UNIVERSES = ("genome", "dataset")
GO_THRESHOLD = 0.1


@dataclass
class _GoIndex:
    """Every annotated gene of one Gene Ontology service, and the GO edges built over its universes."""

    by_gene_id: dict[int, str]
    gene2go: dict[str, set[str]]
    edges: dict[tuple[tuple[str, ...], int], pd.DataFrame] = field(default_factory=dict)

    def annotated(self, service: GeneOntology, gene: str) -> str | None:
        """The official node name of ``gene`` (an outdated symbol mapped), None without annotation."""
        return gene if gene in self.gene2go else self.by_gene_id.get(service.resolve(gene))

    def go_edges(self, service: GeneOntology, universe: list[str], top_k: int) -> pd.DataFrame:
        key = (tuple(universe), top_k)
        if key not in self.edges:
            self.edges[key] = go_cache.go_edges(service, universe, GO_THRESHOLD, top_k)
        return self.edges[key]


_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _go_index(service: GeneOntology) -> _GoIndex:
    """Built once per service and process."""
    if service not in _INDEXES:
        symbols = service.symbols
        by_gene_id = {service.resolve(s): s for s in symbols}
        _INDEXES[service] = _GoIndex(by_gene_id, service.gene_to_go(symbols))
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
    """The genes GEARS may perturb (``gene2go``: node -> GO terms, empty for a node without any), how a
    dataset's gene symbols map to them, and why a gene that maps to none cannot (``unrepresented``)."""

    kind: str
    gene2go: dict[str, set[str]]
    isolated: list[str]
    node_of: Callable[[str], str | None]
    unrepresented: str
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
            raise ModelError(
                f"GEARS cannot represent gene(s) {', '.join(missing)} (e.g. in condition '{example}'): such a "
                f"gene {self.unrepresented}, so it is no node of GEARS' perturbation graph"
            )

    def nodes_of(self, condition: str) -> list[str]:
        """The graph nodes a canonical condition perturbs (call ``check`` first)."""
        return [self.node_of(g) for g in genes_of(condition)]

    def go_edges(self, top_k: int) -> pd.DataFrame:
        """GEARS' GO edges (``source``, ``target``, ``importance``) among the annotated nodes: each
        target's ``top_k`` sources by Jaccard index, plus a self loop of weight 1 on every node (GEARS
        keeps ``k + 1`` with itself)."""
        annotated = sorted(set(self.gene2go) - set(self.isolated))
        loops = pd.DataFrame({"source": self.nodes, "target": self.nodes, "importance": 1.0})
        edges = _go_index(self.service).go_edges(self.service, annotated, top_k)
        return pd.concat([edges, loops], ignore_index=True)


def build(
    mode: str, knowledge: object, seen: set[str], measured: list[str], universe: str = "genome",
    validation: Iterable[str] = (),
) -> PerturbationGraph:
    """The perturbation graph for ``mode`` (``auto``, ``go`` or ``coexpression``), given the genes
    perturbed in training (``seen``), the measured genes and, for the ``dataset`` universe, the genes
    perturbed in validation."""
    if mode != "coexpression":
        service = ontology(knowledge, required=mode == "go")
        if service is not None and (mode == "go" or any(gene in service for gene in seen)):
            dataset = [*measured, *seen, *validation] if universe == "dataset" else None
            return _go_graph(service, seen, dataset)
        reason = "no Gene Ontology in the data store" if service is None else "no perturbed gene has a GO annotation"
        print(f"gears: {reason}; using GEARS' co-expression graph of the measured genes to embed perturbations",
              file=sys.stderr)
    return _coexpression_graph(measured, seen)


def _go_graph(service: GeneOntology, seen: set[str], dataset: list[str] | None) -> PerturbationGraph:
    """Over every annotated gene, or (``dataset`` given) over the annotated genes among ``dataset``."""
    index = _go_index(service)
    isolated = sorted(g for g in seen if index.annotated(service, g) is None)
    _notice_isolated(isolated, "have no Gene Ontology annotation")
    if dataset is None:
        gene2go = index.gene2go
        unrepresented = "has no Gene Ontology annotation and is not perturbed in training"
    else:
        gene2go = {node: index.gene2go[node] for g in dataset if (node := index.annotated(service, g)) is not None}
        unrepresented = ("has no Gene Ontology annotation or is neither measured nor perturbed in training or "
                         "validation (gene_universe 'dataset'; 'genome' has every annotated gene)")
    extra = set(isolated)

    def node_of(gene: str) -> str | None:
        node = index.annotated(service, gene)
        return node if node in gene2go else (gene if gene in extra else None)

    nodes = {**gene2go, **{g: set() for g in isolated}}
    return PerturbationGraph("go", nodes, isolated, node_of, unrepresented, service)


def _coexpression_graph(measured: list[str], seen: set[str]) -> PerturbationGraph:
    nodes = set(measured) | set(seen)
    isolated = sorted(set(seen) - set(measured))
    _notice_isolated(isolated, "are not measured")
    return PerturbationGraph("coexpression", {g: set() for g in nodes}, isolated, lambda g: g if g in nodes else None,
                             "is not a measured gene and is not perturbed in training")


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
