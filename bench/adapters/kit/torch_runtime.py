"""Torch helpers shared by adapters: scoped seeding and thread counts (restored after the block), and
dense tensors from (possibly sparse) rows of a cells x genes matrix."""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
import torch

from bench.core.threads import set_interop

set_interop(torch, 1)  # eager kernels never use the inter-op pool: keep it from counting cores (bench.core.threads)


@contextlib.contextmanager
def seeded_torch(seed: int, device: str):
    """Seed torch's global generators for a block and restore the caller's state afterwards."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run a block on ``threads`` torch intra-op threads (0: torch's setting), then restore the setting."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dense_rows(matrix, rows: np.ndarray, device: str) -> torch.Tensor:
    """Rows of a dense or sparse matrix as a float32 tensor on ``device``."""
    block = matrix[rows]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return torch.from_numpy(block.astype(np.float32, copy=False)).to(device)
