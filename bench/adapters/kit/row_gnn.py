"""Graph layers computed only at the rows a forward reads: the same values, without the unread rows.

A model that runs graph convolutions over every node but reads a few rows of the result (GEARS' GO GNN
reads its batch's perturbed genes) can swap in these modules: ``RowSGConv`` computes one SGConv step
(K = 1) as ``lin(sum of norm * x[source])`` only at the rows ``LayerRows`` chose for its depth (the last
layer: the rows read; an earlier layer: the sources of the next layer's edges), with PyG's ``gcn_norm``
weights over the whole graph, computed once; other rows are left zero. ``RenormedTable`` keeps
``nn.Embedding(max_norm=...)``'s rule by renormalising, before each forward, every row whose norm may
exceed ``max_norm`` with the same ``torch.embedding_renorm_``. Parameters keep their names and order, so
optimisers, ``deepcopy`` and ``state_dict`` see the same model; only floating-point summation order differs.
"""

from __future__ import annotations

import torch
from torch import nn

RENORM_MARGIN = 1e-3  # a row's vectorised norm and the renorm kernel's own differ by ~1e-7


class GraphEdges:
    """The normalised edges of one graph, grouped by target node (the order within a target kept)."""

    def __init__(self, edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int) -> None:
        from torch_geometric.nn.conv.gcn_conv import gcn_norm  # as PyG's SGConv does

        index, norm = gcn_norm(edge_index, edge_weight, num_nodes, False, True, "source_to_target",
                               dtype=edge_weight.dtype)
        order = torch.argsort(index[1], stable=True)
        self.source, self.norm = index[0][order], norm[order]
        self.start = torch.searchsorted(index[1][order], torch.arange(num_nodes + 1))

    def into(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The edges into ``targets``, and for each the position of its target in ``targets``."""
        counts = self.start[targets + 1] - self.start[targets]
        position = torch.repeat_interleave(torch.arange(len(targets)), counts)
        offsets = torch.arange(int(counts.sum())) - (torch.cumsum(counts, 0) - counts)[position]
        return self.start[targets][position] + offsets, position


class LayerRows:
    """The rows each of ``layers`` stacked convolutions over ``edges`` computes for the coming forward."""

    def __init__(self, edges: GraphEdges, layers: int) -> None:
        self.edges = edges
        self.layers = layers
        self.rows: list[torch.Tensor] = []

    def select(self, read: list[int]) -> None:
        """Make the last layer compute the rows ``read`` and each earlier one the rows the next one reads."""
        rows = [torch.tensor(read, dtype=torch.long)]
        for _ in range(self.layers - 1):
            edges, _ = self.edges.into(rows[0])
            rows.insert(0, torch.unique(self.edges.source[edges]))
        self.rows = rows


class RowSGConv(nn.Module):
    """A PyG ``SGConv`` with K = 1, computed at the rows ``rows`` chose for ``depth``."""

    def __init__(self, conv: nn.Module, rows: LayerRows, depth: int) -> None:
        super().__init__()
        if conv.K != 1:
            raise ValueError(f"RowSGConv computes one propagation step; this SGConv takes {conv.K}")
        self.lin = conv.lin
        self.rows = rows
        self.depth = depth

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """``x``: every node's input; the graph passed again is the one ``rows.edges`` normalised."""
        targets = self.rows.rows[self.depth]
        edges, position = self.rows.edges.into(targets)
        sources = self.rows.edges.source[edges]
        messages = self.rows.edges.norm[edges].unsqueeze(1) * x.index_select(0, sources)
        computed = self.lin(x.new_zeros(len(targets), x.size(1)).index_add(0, position, messages))
        return computed.new_zeros(x.size(0), computed.size(1)).index_copy(0, targets, computed)


class RenormedTable(nn.Module):
    """An ``nn.Embedding`` with ``max_norm``, renormalising only the rows that may need it; the weight is
    the same parameter."""

    def __init__(self, embedding: nn.Embedding) -> None:
        super().__init__()
        self.weight = embedding.weight
        self.max_norm, self.norm_type = float(embedding.max_norm), embedding.norm_type

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            norms = torch.linalg.vector_norm(self.weight, self.norm_type, dim=1)
            near = torch.nonzero(norms > self.max_norm * (1 - RENORM_MARGIN)).flatten()
            if len(near):
                torch.embedding_renorm_(self.weight, near, self.max_norm, self.norm_type)
        return nn.functional.embedding(indices, self.weight)
