"""scBIG's generator: CellFlow's conditional velocity field and condition encoder, in PyTorch.

The official release (``ttruan2426-dot/scBIG`` @ 5659ce9) vendors CellFlow (JAX/flax); the references
below are to its files: ``VF`` = ``cellflow/networks/_velocity_field.py``, ``NU`` =
``cellflow/networks/_utils.py``, ``SE`` = ``cellflow/networks/_set_encoders.py``, ``OTFM`` =
``cellflow/solvers/_otfm.py``, ``DM`` = ``cellflow/data/_datamanager.py``, ``TNA`` =
``scbig/experiments/train_norman_additive.py`` (the call ``prepare_model``, TNA:2311-2324).

- Velocity ``v(x_t, t, c)`` (VF:269-331): ``concat[time MLP(time code), x MLP(x_t), c]`` -> decoder MLP ->
  ``Linear(latent)``. The condition embedding ``c`` gets ``Dropout(0.9)`` in flow-matching calls only.
- Condition (SE:183-276, NU:362-453): a condition's per-gene feature vectors (slots; an all-zero slot is
  masked) are pooled by multi-head attention with one learned seed, then ``Linear(condition_dim)``.
- Every ``Linear`` is initialised as flax's ``nn.Dense`` (lecun-normal kernel, zero bias).

Coupling and the ODE solver are in ``coupling.py`` and ``ode.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.adapters.kit.params import Params, param
from bench.adapters.scbig import ode
from bench.core.conditions import genes_of

# Standard deviation of a unit normal truncated to [-2, 2]: flax's variance_scaling divides by it so the
# truncated draws have the requested variance.
_TRUNCATED_STD = 0.87962566103423978


def dense(in_dim: int, out_dim: int) -> nn.Linear:
    """A ``Linear`` initialised as flax's ``nn.Dense`` default: kernel lecun-normal, i.e. a normal truncated
    at two (untruncated) standard deviations with variance ``1 / in_dim`` after truncation; bias zero."""
    layer = nn.Linear(in_dim, out_dim)
    std = math.sqrt(1.0 / in_dim) / _TRUNCATED_STD
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)
    return layer


def time_encoding(t: torch.Tensor, width: int = 1024, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal code of times ``t`` (B,) -> (B, width) (NU:24-55, ``sinusoidal_time_encoder``).

    ``width // 2`` frequencies ``exp(-ln(max_period) * i / half)``; the code is ``[cos(a), sin(a)]`` with
    ``a = (t * max_period) * freqs``. (The official argument ``time_freqs=1024`` is this width: 512
    frequencies.)"""
    if width % 2:
        raise ValueError(f"the time code width must be even, got {width}")
    half = width // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    angles = (t * max_period)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def mlp(in_dim: int, dims: Sequence[int], dropout: float, act_last: bool) -> nn.Sequential:
    """CellFlow's ``MLPBlock`` (NU:67-113): per width ``Linear -> SiLU -> Dropout``; with ``act_last=False``
    the last layer has no SiLU but still its Dropout (NU:110-112). No widths: the identity (NU:104-105)."""
    layers: list[nn.Module] = []
    for i, width in enumerate(dims):
        layers.append(dense(in_dim, width))
        if act_last or i < len(dims) - 1:
            layers.append(nn.SiLU())
        layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers)


def _out_dim(in_dim: int, dims: Sequence[int]) -> int:
    return dims[-1] if len(dims) else in_dim


class VelocityField(nn.Module):
    """CellFlow's ``ConditionalVelocityField`` with ``conditioning='concatenation'``, no layer norm or
    projection before concatenation (VF:167-212 setup, VF:269-331 forward; defaults of the official call:
    TNA:2311-2324 and CF:247-286).

    The MLP dropouts follow ``self.training`` (official ``train=True`` in flow-matching calls, ``False``
    in prediction and the structure steps); the condition dropout is the explicit ``condition_dropout``
    argument of ``forward``.
    """

    def __init__(self, latent_dim: int, condition_dim: int, time_width: int = 1024,
                 time_dims: Sequence[int] = (1024, 1024), x_dims: Sequence[int] = (1024, 1024),
                 decoder_dims: Sequence[int] = (1024, 1024), x_dropout: float = 0.1, decoder_dropout: float = 0.1,
                 condition_dropout: float = 0.9, time_dropout: float = 0.0, time_max_period: float = 10000.0):
        super().__init__()
        self.time_width = time_width
        self.time_max_period = time_max_period
        self.condition_dropout = condition_dropout
        self.time = mlp(time_width, time_dims, time_dropout, act_last=False)  # VF:189-194
        self.x = mlp(latent_dim, x_dims, x_dropout, act_last=True)  # VF:197-202
        joined = _out_dim(time_width, time_dims) + _out_dim(latent_dim, x_dims) + condition_dim
        self.decoder = mlp(joined, decoder_dims, decoder_dropout, act_last=True)  # VF:205-210
        self.output = dense(_out_dim(joined, decoder_dims), latent_dim)  # VF:212

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
                condition_dropout: bool = False) -> torch.Tensor:
        """``x`` (B, latent), ``t`` (B,) or a scalar, ``condition`` (1, C) or (B, C) -> velocity (B, latent).

        With ``condition_dropout`` the condition gets ``Dropout(condition_dropout rate)`` before it is
        broadcast to the batch, so one mask is shared by every cell of the call (VF:306 before the tiling
        at VF:318-319)."""
        if condition_dropout:
            condition = F.dropout(condition, self.condition_dropout, training=True)
        t = t.expand(len(x)) if t.dim() == 0 else t
        parts = [self.time(time_encoding(t, self.time_width, self.time_max_period)), self.x(x),
                 condition.expand(len(x), -1)]
        return self.output(self.decoder(torch.cat(parts, dim=1)))  # VF:322,330-331


class SeedAttentionPooling(nn.Module):
    """CellFlow's ``SeedAttentionPooling`` with its defaults (NU:362-453: no transformer block, no layer
    norm, dropout 0; ``v_dim = seed_dim = dim``).

    A learned seed ``S`` (1, dim) (xavier-uniform, NU:420); ``Q = Dense(S)``, ``K = Dense(x)``,
    ``V = Dense(x)`` (NU:424-425); ``heads`` heads of ``dim / heads`` features; weights
    ``softmax(Q K^T / sqrt(dim))`` -- scaled by the full ``dim``, not the head width (NU:429); masked keys
    set to -1e9 (NU:431-434); output the heads' ``A V`` concatenated (NU:451).

    Masking as official: the seed's mask row is row 0 of ``mask & mask^T`` (SE:310, NU:433), i.e. key ``j``
    is kept iff slots 0 and ``j`` are both present. A masked slot 0 therefore masks every key, and the
    softmax of all -1e9 is uniform over all slots, padding included.
    """

    def __init__(self, input_dim: int, heads: int = 8, dim: int = 64):
        super().__init__()
        if dim % heads:
            raise ValueError(f"the seed width {dim} is not a multiple of the {heads} heads")
        self.heads, self.dim = heads, dim
        bound = math.sqrt(6.0 / (1 + dim))  # flax xavier_uniform on (1, 1, dim): fan_in 1, fan_out dim
        self.seed = nn.Parameter(torch.empty(1, dim).uniform_(-bound, bound))
        self.query = dense(dim, dim)
        self.key = dense(input_dim, dim)
        self.value = dense(input_dim, dim)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """``x`` (C, S, F) slot features, ``present`` (C, S) bool -> (C, dim)."""
        c, s, _ = x.shape
        width = self.dim // self.heads
        q = self.query(self.seed).view(1, 1, self.heads, width).transpose(1, 2)  # (1, H, 1, w)
        k = self.key(x).view(c, s, self.heads, width).transpose(1, 2)  # (C, H, S, w)
        v = self.value(x).view(c, s, self.heads, width).transpose(1, 2)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.dim)  # (C, H, 1, S)
        keep = present[:, :1] & present
        logits = logits.masked_fill(~keep[:, None, None, :], -1e9)
        return (torch.softmax(logits, dim=-1) @ v).reshape(c, self.dim)


class ConditionEncoder(nn.Module):
    """CellFlow's ``ConditionEncoder`` as the official run configures it (``pooling='attention_seed'``,
    deterministic, no layers before pooling, ``Dense(condition_dim)`` after it: SE:158-178,263-276).

    Slots are a condition's per-gene feature vectors (official: ESM2, zeros for ``ctrl`` and genes
    without ESM2; TNA:2214-2227, padded to 2 slots with 0.0, DM:1113-1117). A slot whose features are all
    zero is masked (``mask_value=0``, SE:298-313).

    Several cell types (CellFlow's sample covariate, TNA:2104-2127): a one-hot of the cell type is
    concatenated to every slot (tiled over the slots, DM:473-492; pooled, ``pool_sample_covariates=True``)
    before the mask is taken, so no slot is masked then, as in CellFlow. An index ``>= n_cell_types``
    (a cell type unseen in training) gets an all-zero one-hot. With one cell type nothing is added.
    """

    def __init__(self, feature_dim: int, condition_dim: int = 256, heads: int = 8, seed_dim: int = 64,
                 n_cell_types: int = 1):
        super().__init__()
        self.n_cell_types = n_cell_types
        extra = n_cell_types if n_cell_types > 1 else 0
        self.pool = SeedAttentionPooling(feature_dim + extra, heads, seed_dim)
        self.output = dense(seed_dim, condition_dim)

    def forward(self, features: torch.Tensor, cell_type: torch.Tensor | None = None) -> torch.Tensor:
        """``features`` (C, S, F), ``cell_type`` (C,) indices -> condition embedding (C, condition_dim)."""
        if self.n_cell_types > 1:
            if cell_type is None:
                raise ValueError("a cell type index is needed with several cell types")
            onehot = F.one_hot(cell_type, self.n_cell_types + 1)[:, : self.n_cell_types].to(features.dtype)
            features = torch.cat([features, onehot[:, None, :].expand(-1, features.shape[1], -1)], dim=2)
        present = (features != 0).any(dim=2)
        return self.output(self.pool(features, present))


def path_loss(velocity: VelocityField, x0: torch.Tensor, x1: torch.Tensor, condition: torch.Tensor,
              noise: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """One flow-matching call on coupled pairs ``(x0[i], x1[i])`` (OTFM:159-176 with ott's
    ``ConstantNoiseFlow(0.5)``): ``t ~ U[0, 1)`` per pair, ``x_t = (1 - t) x0 + t x1 + noise * eps``,
    target ``x1 - x0``, loss ``mean((v - u)^2)`` over pairs and dimensions; condition dropout on. The MLP
    dropouts follow ``velocity.training`` (on in the official calls)."""
    t = torch.rand(len(x1), generator=generator, device=x1.device, dtype=x1.dtype)
    eps = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1 + noise * eps
    predicted = velocity(xt, t, condition, condition_dropout=True)
    return ((predicted - (x1 - x0)) ** 2).mean()


def transport(velocity: VelocityField, x0: torch.Tensor, condition: torch.Tensor, *, rtol: float = 1e-5,
              atol: float = 1e-5, max_steps: int = 4096) -> torch.Tensor:
    """Solve ``dx/dt = v(x, t, condition)`` from ``x0`` at t = 0 to t = 1 by adaptive Tsit5 (OTFM:374-406:
    ``Tsit5``, ``PIDController(rtol=1e-5, atol=1e-5)``, ``dt0=None``); no condition dropout. The caller
    sets ``velocity.eval()`` (official ``train=False``, OTFM:391). Differentiable (``ode.tsit5``)."""

    def field(t: float, x: torch.Tensor) -> torch.Tensor:
        return velocity(x, x.new_full((len(x),), t), condition)

    return ode.tsit5(field, x0, 0.0, 1.0, rtol=rtol, atol=atol, max_steps=max_steps)


@dataclass(frozen=True)
class ConditionalFlowParams(Params):
    """The velocity field: ``time_width`` of the time code, ``flow_layers`` layers of ``flow_width`` in each of
    its time, latent and decoder MLPs, ``flow_dropout``; the condition encoder: ``condition_dim``, seed
    pooling of ``seed_dim`` with ``seed_heads`` heads, ``condition_dropout``."""

    time_width: int = param(1024, "[1, inf)")
    flow_width: int = param(1024, "[1, inf)")
    flow_layers: int = param(2, "[1, inf)")
    flow_dropout: float = param(0.1, "[0, 1)")
    condition_dim: int = param(256, "[1, inf)")
    seed_dim: int = param(64, "[1, inf)")
    seed_heads: int = param(8, "[1, inf)")
    condition_dropout: float = param(0.9, "[0, 1)")

    def __post_init__(self):
        super().__post_init__()
        if self.seed_dim % self.seed_heads:
            raise ValueError(f"seed_dim must be a multiple of seed_heads; got {self.seed_dim}, {self.seed_heads}")
        if self.time_width % 2:
            raise ValueError(f"time_width must be even; got {self.time_width}")

    def sizes(self) -> dict:
        """``ConditionalFlow``'s keyword arguments."""
        dims = (self.flow_width,) * self.flow_layers
        return dict(condition_dim=self.condition_dim, seed_dim=self.seed_dim, heads=self.seed_heads,
                    time_width=self.time_width, time_dims=dims, x_dims=dims, decoder_dims=dims,
                    x_dropout=self.flow_dropout, decoder_dropout=self.flow_dropout,
                    condition_dropout=self.condition_dropout)


class ConditionalFlow(nn.Module):
    """The condition encoder and the velocity field, with the fixed gene features of every condition.

    ``features`` has ``.dim`` and ``.lookup(genes) -> (len(genes), dim)`` (``priors.ConditionFeatures``).
    A condition's slots are its genes in canonical (sorted) order, padded with zeros to ``slots``
    (official: ``pert1, pert2``, ``max_combination_length=2``, TNA:2275-2289). A single gene is in slot
    0; a double whose first gene has all-zero features gets the official uniform attention over both
    slots (see ``SeedAttentionPooling``)."""

    def __init__(self, features, cell_types: Sequence[str], latent_dim: int, *, condition_dim: int = 256,
                 seed_dim: int = 64, heads: int = 8, time_width: int = 1024, time_max_period: float = 10000.0,
                 time_dims: Sequence[int] = (1024, 1024), x_dims: Sequence[int] = (1024, 1024),
                 decoder_dims: Sequence[int] = (1024, 1024), x_dropout: float = 0.1, decoder_dropout: float = 0.1,
                 condition_dropout: float = 0.9, time_dropout: float = 0.0, slots: int = 2):
        super().__init__()
        self.features = features
        self.cell_types = list(cell_types)
        self.slots = slots
        self.encoder = ConditionEncoder(features.dim, condition_dim, heads, seed_dim, len(self.cell_types))
        self.velocity = VelocityField(latent_dim, condition_dim, time_width, time_dims, x_dims, decoder_dims,
                                      x_dropout, decoder_dropout, condition_dropout, time_dropout, time_max_period)
        self._inputs: dict[str, torch.Tensor] = {}

    def _condition_features(self, condition: str) -> torch.Tensor:
        if condition not in self._inputs:
            genes = list(genes_of(condition))
            features = np.zeros((1, max(len(genes), self.slots), self.features.dim), dtype=np.float32)
            if genes:
                features[0, : len(genes)] = self.features.lookup(genes)
            self._inputs[condition] = torch.from_numpy(features)
        return self._inputs[condition]

    def condition(self, condition: str, cell_type: str) -> torch.Tensor:
        """The (1, condition_dim) embedding of ``condition`` in ``cell_type`` (before condition dropout)."""
        weight = self.encoder.output.weight
        features = self._condition_features(condition)
        if features.device != weight.device or features.dtype != weight.dtype:
            features = self._inputs[condition] = features.to(device=weight.device, dtype=weight.dtype)
        code = self.cell_types.index(cell_type) if cell_type in self.cell_types else len(self.cell_types)
        return self.encoder(features, torch.tensor([code], device=weight.device))

