"""GEARS' GO GNN computed only at the rows a batch reads: the same model, without the unread rows.

``GEARS_Model.forward`` (cell-gears 0.1.2, ``gears/model.py:155-161``) looks up the embedding of every
node of the perturbation graph and runs its SGConv layers over all of them, then reads only the rows of
the batch's perturbed genes (``model.py:166-183``). Over the genome-wide graph (20,728 nodes, about
430,000 edges) that was four fifths of each training step, for rows nobody reads. ``install`` swaps two
of the model's modules so that GEARS' own ``forward`` gets the same values for the rows it reads:

- each SGConv computes ``lin(sum of norm * x[source])`` only at its target rows (the last layer: the
  batch's perturbed nodes; an earlier layer: the sources of the next layer's edges), with PyG's
  ``gcn_norm`` weights over the whole graph, computed once; other rows are left zero and never read;
- the embedding table keeps ``nn.Embedding(max_norm=True)``'s rule (``model.py:64``): before each
  forward every row whose norm may exceed 1 goes through the same ``torch.embedding_renorm_``.

Parameters keep their names and order, so the optimiser, ``deepcopy`` and ``state_dict`` see the same
model; gradients reach the same rows. Only floating-point summation order differs.
"""

from __future__ import annotations

import torch
from torch import nn

RENORM_MARGIN = 1e-3  # a row's vectorised norm and the renorm kernel's own differ by ~1e-7


class GraphEdges:
    """The normalised edges of one graph, grouped by target node (the order within a target kept)."""

    def __init__(self, edge_index: torch.Tensor, edge_weight: torch.Tensor, num_nodes: int) -> None:
        from torch_geometric.nn.conv.gcn_conv import gcn_norm  # as GEARS' SGConv does; imported with GEARS

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


class BatchRows:
    """A forward pre-hook of ``GEARS_Model``: the rows each GO layer must compute for the coming batch."""

    def __init__(self, edges: GraphEdges, layers: int) -> None:
        self.edges = edges
        self.layers = layers
        self.rows: list[torch.Tensor] = []

    def __call__(self, model: nn.Module, args: tuple) -> None:
        perturbed = sorted({j for cell in args[0].pert_idx for j in cell if j != -1})
        rows = [torch.tensor(perturbed, dtype=torch.long)]
        for _ in range(self.layers - 1):
            edges, _ = self.edges.into(rows[0])
            rows.insert(0, torch.unique(self.edges.source[edges]))
        self.rows = rows


class RowSGConv(nn.Module):
    """One of GEARS' GO SGConv layers (K = 1), computed at the rows ``BatchRows`` chose for it."""

    def __init__(self, conv: nn.Module, rows: BatchRows, depth: int) -> None:
        super().__init__()
        if conv.K != 1:
            raise ValueError(f"RowSGConv computes one propagation step; this SGConv takes {conv.K}")
        self.lin = conv.lin
        self.rows = rows
        self.depth = depth

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        """``x``: every node's input; the graph GEARS passes again is the one normalised at ``install``."""
        targets = self.rows.rows[self.depth]
        edges, position = self.rows.edges.into(targets)
        sources = self.rows.edges.source[edges]
        messages = self.rows.edges.norm[edges].unsqueeze(1) * x.index_select(0, sources)
        computed = self.lin(x.new_zeros(len(targets), x.size(1)).index_add(0, position, messages))
        return computed.new_zeros(x.size(0), computed.size(1)).index_copy(0, targets, computed)


class RenormedTable(nn.Module):
    """GEARS' perturbation embedding (``nn.Embedding`` with ``max_norm``), renormalising only the rows
    that may need it; the weight is the same parameter."""

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


def install(model: nn.Module) -> None:
    """Make a ``gears.model.GEARS_Model`` compute its GO GNN only at the rows each batch reads."""
    rows = BatchRows(GraphEdges(model.G_sim, model.G_sim_weight, model.num_perts), len(model.sim_layers))
    model.pert_emb = RenormedTable(model.pert_emb)
    for depth, conv in enumerate(model.sim_layers):
        model.sim_layers[depth] = RowSGConv(conv, rows, depth)
    model.register_forward_pre_hook(rows)
