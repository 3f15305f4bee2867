"""Seed lists as users write them on the command line and in reference files."""

from __future__ import annotations

from bench.errors import BenchError


def parse_seeds(text: str) -> list[int]:
    """``1-5``, ``1,3,7`` or ``2``."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, sep, high = part.strip().partition("-")
            seeds += list(range(int(low), int(high) + 1)) if sep else [int(low)]
    except ValueError:
        raise BenchError(f"seeds '{text}' is not a seed list; use e.g. 1-5 or 1,2,3") from None
    if not seeds or min(seeds) < 0:
        raise BenchError(f"seeds '{text}' must be non-negative, e.g. 1-5")
    return sorted(set(seeds))
