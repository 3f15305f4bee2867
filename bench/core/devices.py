"""Choosing the compute device: ``auto`` takes a CUDA GPU when torch sees one, else the CPU."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.core.errors import BenchError

DEVICES = ("auto", "cpu", "cuda")


def resolve(device: str) -> str:
    if device not in DEVICES:
        raise BenchError(f"unknown device '{device}'; use one of {', '.join(DEVICES)}")
    if device == "cpu" or (device == "auto" and not _gpu_driver() and "torch" not in sys.modules):
        return "cpu"  # without importing torch (a second) where no GPU driver is loaded
    import torch

    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise BenchError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    return "cuda" if available else "cpu"


def _gpu_driver() -> bool:
    """Whether an NVIDIA (``/proc/driver/nvidia``) or AMD ROCm (``/dev/kfd``) GPU driver is loaded."""
    return Path("/proc/driver/nvidia").exists() or Path("/dev/kfd").exists()
