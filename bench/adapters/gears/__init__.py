"""GEARS (Roohani, Huang & Leskovec, Nat Biotechnol 2024): the published ``cell-gears`` package on the
harness's split, offline. Importing this package does not import ``gears``."""

from bench.adapters.gears.adapter import GearsModel

__all__ = ["GearsModel"]
