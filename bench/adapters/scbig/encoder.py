"""The latent spaces scBIG's flow runs in: the Gene-Cluster-Aware Encoder, and PCA for the ablation.

GCAE (scBIG; Ruan et al., ICML 2026): the expression vector, reordered by Gene-Relation Clustering, is
cut into one token per cluster (zero-padded to the largest cluster), each projected to ``width`` by its
own linear map; a token's positional code is a projection of its cluster's mean gene embedding. Three
Perceiver-style blocks with learnable module (inducing) points follow: modules read the tokens, modules
attend to each other, tokens read the modules. Tokens are mean-pooled into the latent. The decoder is
symmetric: the latent is broadcast to the cluster tokens (plus their positional codes), passes its own
blocks, and every token is projected back to its cluster's genes.

``PCALatent`` is the ``scbig_pca_latent`` ablation (CellFlow's latent; Klein et al., 2025): the top
principal axes of the training cells, a linear, differentiable encode/decode.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


class ModuleBlock(nn.Module):
    """One Perceiver-style block: modules read tokens, modules self-attend, tokens read modules."""

    def __init__(self, width: int, heads: int, mlp: int, n_modules: int, dropout: float):
        super().__init__()
        self.inducing = nn.Parameter(torch.randn(n_modules, width) * 0.02)
        self.read = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mix = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.write = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(6))
        self.module_mlp = _mlp(width, mlp, dropout)
        self.token_mlp = _mlp(width, mlp, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n_tokens, n_modules, n_mix, n_module_mlp, n_write, n_token_mlp = self.norms
        modules = self.inducing.expand(tokens.shape[0], -1, -1)
        keys = n_tokens(tokens)
        modules = modules + self.read(n_modules(modules), keys, keys, need_weights=False)[0]
        mixed = n_mix(modules)
        modules = modules + self.mix(mixed, mixed, mixed, need_weights=False)[0]
        modules = modules + self.module_mlp(n_module_mlp(modules))
        tokens = tokens + self.write(n_write(tokens), modules, modules, need_weights=False)[0]
        return tokens + self.token_mlp(n_token_mlp(tokens))


def _mlp(width: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width))


def gene_moments(x) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation of a dense or sparse cells x genes matrix."""
    mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
    square = x.multiply(x) if sp.issparse(x) else np.square(x)
    variance = np.asarray(square.mean(axis=0), dtype=np.float64).ravel() - mean**2
    return mean, np.sqrt(np.clip(variance, 0.0, None))


class ClusterLayout(nn.Module):
    """Where each gene sits among the cluster tokens: ``slots`` (K, S) gene indices, ``n_genes`` = pad."""

    def __init__(self, labels: np.ndarray):
        super().__init__()
        k = int(labels.max()) + 1
        members = [np.flatnonzero(labels == c) for c in range(k)]
        size = max(len(m) for m in members)
        slots = np.full((k, size), len(labels), dtype=np.int64)
        for c, genes in enumerate(members):
            slots[c, : len(genes)] = genes
        flat = slots.ravel()
        position = np.empty(len(labels), dtype=np.int64)
        position[flat[flat < len(labels)]] = np.flatnonzero(flat < len(labels))
        self.register_buffer("slots", torch.from_numpy(slots))
        self.register_buffer("position", torch.from_numpy(position))
        self.n_genes, self.k, self.size = len(labels), k, size

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
        return padded[:, self.slots]

    def genes(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.reshape(tokens.shape[0], -1)[:, self.position]


class ClusterProjection(nn.Module):
    """One linear map per cluster token (``einsum`` over a stacked weight)."""

    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(k, n_in, n_out) / np.sqrt(n_in))
        self.bias = nn.Parameter(torch.zeros(k, n_out))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bki,kio->bko", tokens, self.weight) + self.bias


class GeneClusterAwareEncoder(nn.Module):
    """GCAE: ``encode`` (cells x genes) -> (cells x latent_dim); ``decode`` back to genes.

    Genes enter standardised (``gene_mean``, ``gene_scale`` of the training cells) and leave through the
    inverse map: without it the reconstruction error is dominated by a few highly expressed genes and
    the autoencoder settles near the mean cell. The latent and output projections read the raw token
    states (no LayerNorm there), so the magnitude of a shift survives the round trip.
    """

    def __init__(self, labels: np.ndarray, cluster_embeddings: np.ndarray, gene_mean: np.ndarray,
                 gene_scale: np.ndarray, latent_dim: int, width: int, n_blocks: int, n_modules: int, heads: int,
                 mlp: int, dropout: float):
        super().__init__()
        self.layout = ClusterLayout(labels)
        self.register_buffer("gene_mean", torch.from_numpy(gene_mean.astype(np.float32)))
        scale = np.where(gene_scale > 0, gene_scale, 1.0)
        self.register_buffer("gene_scale", torch.from_numpy(scale.astype(np.float32)))
        k, size = self.layout.k, self.layout.size
        self.register_buffer("cluster_embeddings", torch.from_numpy(cluster_embeddings.astype(np.float32)))
        self.embed = ClusterProjection(k, size, width)
        self.encode_position = nn.Linear(cluster_embeddings.shape[1], width)
        self.encoder = nn.Sequential(*(ModuleBlock(width, heads, mlp, n_modules, dropout) for _ in range(n_blocks)))
        self.to_latent = nn.Linear(width, latent_dim)
        self.from_latent = nn.Linear(latent_dim, width)
        self.decode_position = nn.Linear(cluster_embeddings.shape[1], width)
        self.decoder = nn.Sequential(*(ModuleBlock(width, heads, mlp, n_modules, dropout) for _ in range(n_blocks)))
        self.unembed = ClusterProjection(k, width, size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        standardised = (x - self.gene_mean) / self.gene_scale
        tokens = self.embed(self.layout.tokens(standardised)) + self.encode_position(self.cluster_embeddings)
        return self.to_latent(self.encoder(tokens).mean(dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        tokens = self.from_latent(z).unsqueeze(1) + self.decode_position(self.cluster_embeddings)
        return self.layout.genes(self.unembed(self.decoder(tokens))) * self.gene_scale + self.gene_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class PCALatent(nn.Module):
    """Projection on the top ``latent_dim`` principal axes of ``x`` (cells x genes, dense)."""

    def __init__(self, x: np.ndarray, latent_dim: int):
        super().__init__()
        mean = x.mean(axis=0)
        axes = np.linalg.svd(x - mean, full_matrices=False)[2][: min(latent_dim, *x.shape)]
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("axes", torch.from_numpy(axes.astype(np.float32)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.axes.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.axes + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
