"""Choosing the compute device: ``auto`` takes a CUDA GPU when torch sees one, else the CPU."""

from __future__ import annotations

from bench.errors import BenchError

DEVICES = ("auto", "cpu", "cuda")


def resolve(device: str) -> str:
    if device not in DEVICES:
        raise BenchError(f"unknown device '{device}'; use one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise BenchError("--device cuda was asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
    return "cuda" if available else "cpu"
