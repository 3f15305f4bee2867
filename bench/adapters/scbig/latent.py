"""The flow's coordinates: a frozen autoencoder's latent, standardised per dimension on training cells.

Standardising gives every latent dimension unit scale, so the path's constant noise means the same for
the GCAE and the PCA latent.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.adapters.torch_runtime import dense_rows

BATCH = 1024


class LatentSpace:
    def __init__(self, autoencoder: torch.nn.Module, x, device: str):
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.device = device
        raw = self._encode(x)
        self.mean = raw.mean(dim=0)
        self.scale = raw.std(dim=0).clamp_min(1e-6)

    def _encode(self, x) -> torch.Tensor:
        with torch.no_grad():
            blocks = [self.autoencoder.encode(dense_rows(x, np.arange(s, min(s + BATCH, x.shape[0])), self.device))
                      for s in range(0, x.shape[0], BATCH)]
        return torch.cat(blocks).float()

    def encode(self, x) -> torch.Tensor:
        """Standardised latents of the rows of ``x`` (cells x genes, dense or sparse), no gradient."""
        return (self._encode(x) - self.mean) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Genes of standardised latents ``z``; differentiable in ``z``."""
        return self.autoencoder.decode(z * self.scale + self.mean).float()
