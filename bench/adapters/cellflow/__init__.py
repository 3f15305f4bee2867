"""CellFlow (cellflow-tools 0.0.9) in its own environment: ``adapter`` here, ``worker`` there."""

from bench.adapters.cellflow.adapter import CellflowModel, CellflowParams

__all__ = ["CellflowModel", "CellflowParams"]
