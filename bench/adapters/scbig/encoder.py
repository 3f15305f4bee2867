"""The latent spaces scBIG's flow runs in: the Gene-Cluster-Aware Encoder, and PCA for the ablation.

GCAE as the official release builds it (``ttruan2426-dot/scBIG`` @ 5659ce9, ``scbig/models/_gcae_impl.py``,
cited ``IMPL:line``; configuration ``genecompass_pe_module`` with ``attention_type='perceiver'``,
``pooling_type='mean'``): the centred expression vector, in the cluster-sorted gene order of Gene-Relation
Clustering, is cut into consecutive fixed-size chunks (zero-padded at the end; chunk and cluster
boundaries need not align, the GCAE never sees the cluster labels), each chunk projected to ``width`` by
ONE shared linear map. A chunk's positional code is a learned, layer-normalised projection of the mean
gene embedding over the chunk. Post-LN Perceiver blocks with learnable module (inducing) points follow:
modules read the tokens, modules attend to each other, tokens read the modules, then a token MLP.
Tokens are mean-pooled into the latent. The decoder tiles the projected latent over the chunk tokens,
adds its own positional code, passes its own blocks and maps every token back to a chunk with one
shared linear map; the mean is added back.

Deviations from the official code: (1) the permutation lives inside the module (official reorders the
data files once, ``prepare_norman_grc.py:32-35``), so inputs and outputs stay in the harness's panel
order; (2) initialisation draws from torch's generator (official: ``PRNGKey(0)``, IMPL:1729), with
flax's initialiser distributions; (3) the official chunk aggregation treats a square (genes x dim)
embedding as an adjacency matrix (IMPL:1407-1440; reached when the zero-padded gene count equals
the embedding width, e.g. 705-768 genes with 768-d GeneCompass and chunk 64); not replicated.

``PCALatent`` is the ``scbig_pca_latent`` ablation (CellFlow's latent; Klein et al., 2025): the top
principal axes of the training cells, a linear, differentiable encode/decode in raw (centred, not
standardised) coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.adapters.kit.params import Params, param
from bench.core import linalg

LN_EPS = 1e-6
"""flax ``nn.LayerNorm``'s default epsilon (torch's is 1e-5)."""

_TRUNCATED_STD = 0.87962566103423978
"""Standard deviation of a standard normal truncated to [-2, 2] (the constant of JAX's
``variance_scaling``)."""


def _lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """flax's default Dense kernel init, ``lecun_normal`` = ``variance_scaling(1, 'fan_in',
    'truncated_normal')``: a normal truncated at two of its own standard deviations, rescaled so the
    result has variance 1/fan_in. ``weight`` is a torch Linear weight (out, in), so fan_in = in."""
    fan_in = weight.shape[1]
    std = 1.0 / math.sqrt(fan_in) / _TRUNCATED_STD
    with torch.no_grad():
        return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


def _dense(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    """flax ``nn.Dense``: lecun-normal kernel, zero bias."""
    layer = nn.Linear(n_in, n_out, bias=bias)
    _lecun_normal_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, dropout: float,
            training: bool) -> torch.Tensor:
    """Multi-head scaled dot-product attention on already projected q (B, Lq, D), k and v (B, Lk, D):
    ``heads`` heads of D/heads consecutive features, scores / sqrt(D/heads), softmax over keys, inverted
    dropout on the attention weights in training, heads concatenated back (B, Lq, D). IMPL:445-472."""
    b, n_q, width = q.shape
    n_k = k.shape[1]
    head = width // heads
    q = q.reshape(b, n_q, heads, head).transpose(1, 2)
    k = k.reshape(b, n_k, heads, head).transpose(1, 2)
    v = v.reshape(b, n_k, heads, head).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head), dim=-1)
    weights = F.dropout(weights, dropout, training)
    return (weights @ v).transpose(1, 2).reshape(b, n_q, width)


class _AttentionStep(nn.Module):
    """One step of the module-induced attention: ``LN(query + proj(attend(q(query), k(context),
    v(context))))`` with bias-free q/k/v and a biased output projection (IMPL:445-475, 480-505, 511-540)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = _dense(width, width, bias=False)
        self.k = _dense(width, width, bias=False)
        self.v = _dense(width, width, bias=False)
        self.proj = _dense(width, width)
        self.norm = nn.LayerNorm(width, eps=LN_EPS)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        attended = _attend(self.q(query), self.k(context), self.v(context), self.heads, self.dropout,
                           self.training)
        return self.norm(query + self.proj(attended))


class ModuleInducedAttention(nn.Module):
    """Perceiver-style attention through ``n_modules`` learnable inducing points (IMPL:381-552): modules
    read the tokens (``I1 = LN(I + ·)``), modules self-attend (``I2 = LN(I1 + ·)``; no module MLP),
    tokens read the modules (``LN(x + ·)``). Inducing points ~ N(0, 0.02²), per block (IMPL:430-434)."""

    def __init__(self, width: int, heads: int, n_modules: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.inducing = nn.Parameter(torch.randn(n_modules, width) * 0.02)
        self.read = _AttentionStep(width, heads, dropout)
        self.mix = _AttentionStep(width, heads, dropout)
        self.write = _AttentionStep(width, heads, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        modules = self.inducing.expand(tokens.shape[0], -1, -1)
        modules = self.read(modules, tokens)
        modules = self.mix(modules, modules)
        return self.write(tokens, modules)


class GCAEBlock(nn.Module):
    """``BioInductiveTransformerBlock`` with ``attention_type='perceiver'`` (IMPL:916-944): the
    module-induced attention (residual and LN inside), then ``LN(x1 + MLP(x1))`` with MLP = Dense(mlp_dim)
    → GELU (tanh, flax ``nn.gelu``) → Dropout → Dense(width) → Dropout."""

    def __init__(self, width: int, heads: int, n_modules: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.attention = ModuleInducedAttention(width, heads, n_modules, dropout)
        self.mlp = nn.Sequential(_dense(width, mlp_dim), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 _dense(mlp_dim, width), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(width, eps=LN_EPS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.attention(tokens)
        return self.norm(tokens + self.mlp(tokens))


def sinusoidal_code(n_positions: int, width: int) -> np.ndarray:
    """The fixed transformer code (IMPL:24-49): ``angle[p, d] = p / 10000^(2·⌊d/2⌋/width)``, sin on even
    features, cos on odd ones."""
    positions = np.arange(n_positions)[:, None]
    dims = np.arange(width)[None, :]
    angles = positions / (10000 ** (2 * (dims // 2) / width))
    code = np.zeros((n_positions, width), dtype=np.float32)
    code[:, 0::2] = np.sin(angles[:, 0::2])
    code[:, 1::2] = np.cos(angles[:, 1::2])
    return code


def chunk_means(vectors: np.ndarray, chunk_size: int) -> np.ndarray:
    """Per-chunk means of consecutive rows, zero-padded to whole chunks; padding rows count in the mean
    (``aggregate_to_chunk_level(..., 'mean')``, IMPL:1386-1416)."""
    n_chunks = -(-vectors.shape[0] // chunk_size)
    padded = np.zeros((n_chunks * chunk_size, vectors.shape[1]), dtype=np.float64)
    padded[: vectors.shape[0]] = vectors
    return padded.reshape(n_chunks, chunk_size, -1).mean(axis=1)


class PositionalCode(nn.Module):
    """``BiologicalPositionalEncoding`` (IMPL:52-107): with gene embeddings, ``tokens +
    LN(Dense(width, no bias)(chunk code))``; without, ``tokens + sinusoidal code`` (no parameters,
    IMPL:82-94, 1654-1657); then Dropout on the sum (IMPL:106)."""

    def __init__(self, width: int, code_dim: int | None, dropout: float):
        super().__init__()
        self.project = None if code_dim is None else _dense(code_dim, width, bias=False)
        self.norm = None if code_dim is None else nn.LayerNorm(width, eps=LN_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            code = self.norm(self.project(code))
        return self.dropout(tokens + code)


@dataclass(frozen=True)
class EncoderParams(Params):
    """The latent: the GCAE (``latent = "gcae"``) or PCA (``"pca"``, the ablation), ``latent_dim`` wide; the
    GCAE's architecture (``GeneClusterAwareEncoder``; its dropout is the card's ``ae_dropout``)."""

    latent: str = param("gcae", choices=("gcae", "pca"))
    latent_dim: int = param(50, "[1, inf)")
    chunk_size: int = param(64, "[1, inf)")
    width: int = param(256, "[1, inf)")
    n_blocks: int = param(3, "[1, inf)")
    n_modules: int = param(8, "[1, inf)")
    heads: int = param(8, "[1, inf)")
    mlp_dim: int = param(512, "[1, inf)")
    dropout: float = param(0.1, "[0, 1)", name="ae_dropout")

    def __post_init__(self):
        super().__post_init__()
        if self.width % self.heads:
            raise ValueError(f"width must be a multiple of heads; got width {self.width}, heads {self.heads}")

    def gcae(self) -> dict:
        """The GCAE's keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "latent"}


class GeneClusterAwareEncoder(nn.Module):
    """GCAE: ``encode`` (B, G) -> (B, latent_dim); ``decode`` back to (B, G); both in panel order.

    ``order`` (G,): the cluster-sorted gene permutation (sorted position i holds panel gene ``order[i]``);
    ``gene_mean`` (G,): mean of the encoder's training cells, panel order (official ``X_mean``,
    IMPL:1695); ``positional`` (G, E) per-gene vectors in panel order (zero rows for genes without one,
    IMPL:1312-1345), or None for the sinusoidal code. The rest as ``get_gcae_for_config`` (official
    Norman run: latent 50, width 256, 3 blocks, 8 modules, 8 heads, mlp 512, dropout 0.1, chunk 64).
    """

    def __init__(self, order: np.ndarray, gene_mean: np.ndarray, positional: np.ndarray | None, latent_dim: int,
                 width: int, n_blocks: int, n_modules: int, heads: int, mlp_dim: int, dropout: float,
                 chunk_size: int):
        super().__init__()
        order = np.asarray(order, dtype=np.int64)
        n_genes = len(order)
        if not np.array_equal(np.sort(order), np.arange(n_genes)):
            raise ValueError("order is not a permutation of the genes")
        if np.shape(gene_mean) != (n_genes,):
            raise ValueError(f"gene_mean has shape {np.shape(gene_mean)}, expected ({n_genes},)")
        if positional is not None and (positional.ndim != 2 or positional.shape[0] != n_genes):
            raise ValueError(f"positional has shape {positional.shape}, expected ({n_genes}, E)")
        self.n_genes, self.chunk_size = n_genes, chunk_size
        self.n_chunks = -(-n_genes // chunk_size)
        self.register_buffer("order", torch.from_numpy(order))
        self.register_buffer("inverse", torch.from_numpy(np.argsort(order)))
        self.register_buffer("gene_mean", torch.as_tensor(np.asarray(gene_mean), dtype=torch.float32))
        if positional is None:
            code, code_dim = sinusoidal_code(self.n_chunks, width), None
        else:
            code, code_dim = chunk_means(np.asarray(positional)[order], chunk_size), positional.shape[1]
        self.register_buffer("chunk_code", torch.as_tensor(code, dtype=torch.float32))

        # IMPL:1039, 1042-1046, 1049-1060, 1096 (encoder); IMPL:1143-1176 (decoder)
        self.embed = _dense(chunk_size, width)
        self.encode_position = PositionalCode(width, code_dim, dropout)
        self.encoder_blocks = nn.ModuleList(GCAEBlock(width, heads, n_modules, mlp_dim, dropout)
                                            for _ in range(n_blocks))
        self.to_latent = _dense(width, latent_dim)
        self.from_latent = _dense(latent_dim, width)
        self.decode_position = PositionalCode(width, code_dim, dropout)
        self.decoder_blocks = nn.ModuleList(GCAEBlock(width, heads, n_modules, mlp_dim, dropout)
                                            for _ in range(n_blocks))
        self.unembed = _dense(width, chunk_size)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        centred = (x - self.gene_mean)[:, self.order]
        padded = F.pad(centred, (0, self.n_chunks * self.chunk_size - self.n_genes))
        tokens = self.embed(padded.reshape(x.shape[0], self.n_chunks, self.chunk_size))
        tokens = self.encode_position(tokens, self.chunk_code)
        for block in self.encoder_blocks:
            tokens = block(tokens)
        return self.to_latent(tokens.mean(dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        tokens = self.from_latent(z).unsqueeze(1).expand(-1, self.n_chunks, -1)
        tokens = self.decode_position(tokens, self.chunk_code)
        for block in self.decoder_blocks:
            tokens = block(tokens)
        sorted_genes = self.unembed(tokens).reshape(z.shape[0], -1)[:, : self.n_genes]
        return sorted_genes[:, self.inverse] + self.gene_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class PCALatent(nn.Module):
    """Projection on the top ``latent_dim`` principal axes of ``x`` (cells x genes, dense), raw
    coordinates: ``encode(x) = (x - mean) @ axes.T``, ``decode(z) = z @ axes + mean``."""

    def __init__(self, x: np.ndarray, latent_dim: int):
        super().__init__()
        mean, _, axes = linalg.principal_axes(x, latent_dim)
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("axes", torch.from_numpy(axes.astype(np.float32)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.axes.T

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.axes + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
