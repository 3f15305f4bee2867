"""biolord (Piran et al., Nat Biotechnol 2024): the published ``biolord`` package as its Norman perturbation
experiment runs it (``docs/biolord.md``). Importing this package does not import ``biolord``."""

from bench.adapters.biolord.adapter import BiolordModel

__all__ = ["BiolordModel"]
