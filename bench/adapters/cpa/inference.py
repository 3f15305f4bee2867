"""Perturbation embeddings of conditions and counterfactual prediction (CPA; Lotfollahi et al., Mol Syst
Biol 2023): encode control cells, add the cell type's and the target combination's embeddings, decode.

A condition's embedding is the sum of its genes' embeddings. A gene with no free vector and no prior
feature (``features``) gets the mean embedding of the genes perturbed in training, so every condition
is predicted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.adapters.cpa.likelihood import decoded_cells
from bench.adapters.cpa.network import CPANetwork
from bench.adapters.kit.gene_features import GeneFeatures
from bench.core.conditions import genes_of


@dataclass
class Vocabulary:
    """The genes perturbed in training (each has a free vector), prior features, the cell types."""

    free: list[str]
    features: GeneFeatures
    cell_types: list[str]
    device: str

    def __post_init__(self):
        self.free_index = {g: i for i, g in enumerate(self.free)}
        self.free_table = GeneTable(self, self.free)
        self.tables: dict[tuple[str, ...], GeneTable] = {}

    def cell_type_index(self, cell_types: list[str]) -> torch.Tensor:
        lookup = {t: i for i, t in enumerate(self.cell_types)}
        return torch.tensor([lookup.get(t, -1) for t in cell_types], dtype=torch.long, device=self.device)

    def incidence(self, conditions: list[str], genes: list[str]) -> torch.Tensor:
        """Conditions x genes, 1 where the condition perturbs the gene."""
        index = {g: i for i, g in enumerate(genes)}
        matrix = np.zeros((len(conditions), len(genes)), dtype=np.float32)
        for row, condition in enumerate(conditions):
            for gene in genes_of(condition):
                matrix[row, index[gene]] = 1.0
        return torch.from_numpy(matrix).to(self.device)

    def condition_embeddings(self, net: CPANetwork, conditions: list[str]) -> torch.Tensor:
        genes = sorted({g for c in conditions for g in genes_of(c)})
        fallback = self.free_table.embed(net).mean(dim=0)
        if tuple(genes) not in self.tables:
            self.tables[tuple(genes)] = GeneTable(self, genes)
        embeddings = self.tables[tuple(genes)].embed(net, fallback=fallback)
        return self.incidence(conditions, genes) @ embeddings


class GeneTable:
    """The fixed inputs of the gene embedding for a list of genes, on the vocabulary's device."""

    def __init__(self, vocabulary: Vocabulary, genes: list[str]):
        go, data = vocabulary.features.lookup(genes)
        index = np.array([vocabulary.free_index.get(g, -1) for g in genes], dtype=np.int64)
        orphan = (index < 0) & ~np.abs(go).any(axis=1) & ~np.abs(data).any(axis=1)
        device = vocabulary.device
        self.free_index = torch.from_numpy(index).to(device)
        self.go, self.data = torch.from_numpy(go).to(device), torch.from_numpy(data).to(device)
        self.orphan = torch.from_numpy(orphan).to(device)

    def embed(self, net: CPANetwork, keep: torch.Tensor | None = None,
              fallback: torch.Tensor | None = None) -> torch.Tensor:
        embeddings = net.genes(self.free_index, self.go, self.data, keep)
        if fallback is not None and bool(self.orphan.any()):
            embeddings = torch.where(self.orphan.unsqueeze(1), fallback.unsqueeze(0), embeddings)
        return embeddings


@torch.no_grad()
def counterfactual(net: CPANetwork, vocabulary: Vocabulary, x: torch.Tensor, library: torch.Tensor,
                   cell_type: str, conditions: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted cells (conditions x cells x genes) and means (conditions x genes) from control cells ``x``."""
    net.eval()
    generator = torch.Generator(device=x.device).manual_seed(seed)
    ct = vocabulary.cell_type_index([cell_type] * len(x))
    basal = net.encoder(x) + net.cell_type(ct)
    perturbations = vocabulary.condition_embeddings(net, conditions)
    cells, means = [], []
    for perturbation in perturbations:
        predicted, mean = decoded_cells(net.decoder(basal + perturbation), net.log_theta, library, generator)
        cells.append(predicted.cpu().numpy())
        means.append(mean.cpu().numpy())
    return np.stack(cells).astype(np.float32), np.stack(means).astype(np.float64)
