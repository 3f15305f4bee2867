"""The flow's coordinates: a frozen autoencoder's raw latent, as in the official release (the flow runs
on ``encoder.transform(X)`` unscaled, ``scbig/experiments/train_norman_additive.py``; decoding by
``inverse_transform``). The path noise (0.5) is therefore in the latent's own units.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.adapters.kit.torch_runtime import dense_rows

BATCH = 256


class LatentSpace:
    def __init__(self, autoencoder: torch.nn.Module, device: str):
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.device = device

    def encode(self, x) -> torch.Tensor:
        """Latents of the rows of ``x`` (cells x genes, dense or sparse), in batches, no gradient."""
        with torch.no_grad():
            blocks = [self.autoencoder.encode(dense_rows(x, np.arange(s, min(s + BATCH, x.shape[0])), self.device))
                      for s in range(0, x.shape[0], BATCH)]
        return torch.cat(blocks).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Genes of latents ``z``; differentiable in ``z``."""
        return self.autoencoder.decode(z).float()
