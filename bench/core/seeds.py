"""Seed lists as users write them on the command line and in reference files."""

from __future__ import annotations

import re

from bench.core.errors import BenchError

PART = re.compile(r"(\d+)(?:-(\d+))?")


def parse_seeds(text: str) -> list[int]:
    """``1-5``, ``1,3,7`` or ``2``: non-negative integers and ascending ranges, sorted, without repeats."""
    seeds: set[int] = set()
    for part in text.split(","):
        match = PART.fullmatch(part.strip())
        if match is None:
            raise BenchError(f"seeds '{text}' is not a seed list; use e.g. 1-5 or 1,2,3")
        low, high = int(match[1]), int(match[2] or match[1])
        if high < low:
            raise BenchError(f"seeds '{text}' count down ({part.strip()}); write ranges low to high, e.g. {high}-{low}")
        seeds.update(range(low, high + 1))
    return sorted(seeds)
