"""GEARS (Roohani, Huang & Leskovec, Nat Biotechnol 2024) behind the harness's adapter contract.

The published ``cell-gears`` package trains on the harness's frozen split, offline, in a scratch folder
per fit, with its process-wide side effects contained (``bench.core.isolated_import``). Importing this package does not
import ``gears``.
"""

from bench.adapters.gears.adapter import GearsModel

__all__ = ["GearsModel"]
