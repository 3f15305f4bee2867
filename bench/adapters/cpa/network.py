"""The networks of the compositional perturbation autoencoder (CPA; Lotfollahi et al., Mol Syst Biol 2023).

A cell's expression is encoded to a *basal* latent ``z``; its perturbation is the sum of its genes'
embeddings and its cell type (CPA's covariate) a learned embedding, both added to ``z``; the decoder
maps the sum back to genes. A gene's embedding is ``free(g) + A·go(g) + B·data(g)``: a free vector for
genes perturbed in training plus linear maps of its prior features (``features``), so genes never
perturbed in training still get one. The adversary (CPA only) predicts the perturbed genes and the cell
type from ``z``; the autoencoder is trained to defeat it, pushing that information out of ``z``.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers with ReLU and dropout between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class GeneEmbedding(nn.Module):
    """``e(g) = free(g)·keep(g) + A·go(g) + B·data(g)``; ``free_index`` −1 marks a gene with no free vector."""

    def __init__(self, n_free: int, go_dim: int, data_dim: int, latent: int):
        super().__init__()
        self.free = nn.Parameter(torch.randn(n_free, latent) * 0.1)
        self.go_map = nn.Linear(go_dim, latent, bias=False) if go_dim else None
        self.data_map = nn.Linear(data_dim, latent, bias=False) if data_dim else None

    def forward(self, free_index: torch.Tensor, go: torch.Tensor, data: torch.Tensor,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        has_free = (free_index >= 0).unsqueeze(1).to(self.free.dtype)
        embedding = self.free[free_index.clamp(min=0)] * has_free
        if keep is not None:
            embedding = embedding * keep.unsqueeze(1)
        if self.go_map is not None:
            embedding = embedding + self.go_map(go)
        if self.data_map is not None:
            embedding = embedding + self.data_map(data)
        return embedding


class CPANetwork(nn.Module):
    """Encoder, gene and cell-type embeddings, decoder. ``nb``: the decoder gives logits of gene
    proportions and the network holds per-gene log inverse dispersions; else it gives means."""

    def __init__(self, n_genes: int, latent: int, hidden: int, layers: int, dropout: float, n_free: int,
                 go_dim: int, data_dim: int, n_cell_types: int, nb: bool):
        super().__init__()
        widths = [hidden] * layers
        self.encoder = mlp([n_genes, *widths, latent], dropout)
        self.decoder = mlp([latent, *widths, n_genes], dropout)
        self.genes = GeneEmbedding(n_free, go_dim, data_dim, latent)
        self.cell_types = nn.Embedding(max(n_cell_types, 1), latent)
        nn.init.zeros_(self.cell_types.weight)
        self.log_theta = nn.Parameter(torch.zeros(n_genes)) if nb else None

    def cell_type(self, index: torch.Tensor) -> torch.Tensor:
        """Cell-type embeddings; index −1 (a cell type unseen in training) gives zero."""
        known = (index >= 0).unsqueeze(1).to(self.cell_types.weight.dtype)
        return self.cell_types(index.clamp(min=0)) * known

    def forward(self, x: torch.Tensor, perturbation: torch.Tensor, cell_type: torch.Tensor):
        """``(decoder output, basal latent)`` for inputs ``x`` and latent perturbation embeddings."""
        basal = self.encoder(x)
        return self.decoder(basal + perturbation + self.cell_type(cell_type)), basal


class Adversary(nn.Module):
    """Classifiers of the perturbed genes (multi-label) and the cell type from the basal latent (CPA)."""

    def __init__(self, latent: int, hidden: int, n_free: int, n_cell_types: int):
        super().__init__()
        self.n_free = n_free
        self.n_cell_types = n_cell_types if n_cell_types > 1 else 0
        self.net = mlp([latent, hidden, hidden, n_free + self.n_cell_types], 0.0)

    def loss(self, basal: torch.Tensor, genes: torch.Tensor, cell_type: torch.Tensor) -> torch.Tensor:
        """Classification loss: binary cross-entropy over genes plus cross-entropy over cell types."""
        logits = self.net(basal)
        loss = nn.functional.binary_cross_entropy_with_logits(logits[:, : self.n_free], genes)
        if self.n_cell_types:
            loss = loss + nn.functional.cross_entropy(logits[:, self.n_free:], cell_type)
        return loss
