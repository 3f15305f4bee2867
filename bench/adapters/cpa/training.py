"""Training of the CPA-style network: Adam on minibatches, optional adversary, early stopping.

Each step (CPA; Lotfollahi et al., Mol Syst Biol 2023): the adversary learns to recognise the perturbed
genes and the cell type from the basal latent; then the autoencoder minimises its reconstruction loss
minus ``adversary_weight`` times the adversary's loss. With ``encoder_input = "control"`` a perturbed
cell's input is a random training control cell of its cell type, drawn afresh every epoch, and its own
expression is the target (PerturBench's latent additive model; Wu et al. 2024). ``residual_dropout``
drops each training gene's free vector with that probability per step, so the maps from prior features
learn to stand in for it (they alone embed genes never perturbed in training). After every epoch the
validation conditions are predicted counterfactually; training stops after ``patience`` epochs without
a better validation MSE and the best weights are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.adapters.cpa.inference import Vocabulary, counterfactual
from bench.adapters.cpa.likelihood import gaussian_loss, nb_loss
from bench.adapters.cpa.network import Adversary, CPANetwork
from bench.adapters.cpa.params import CPAParams
from bench.adapters.kit.early_stopping import EarlyStopping
from bench.adapters.kit.torch_runtime import dense_rows
from bench.core.api import no_progress


@dataclass
class TrainingSet:
    """Training cells: log-normalised ``x``, optional ``counts``, condition and cell-type codes."""

    x: object
    counts: object | None
    conditions: list[str]
    condition: np.ndarray
    cell_type: np.ndarray
    control: np.ndarray

    def inputs(self, rows: np.ndarray, rng: np.random.Generator, encoder_input: str) -> np.ndarray:
        """The rows fed to the encoder: the cells themselves, or random controls of the same cell type."""
        if encoder_input == "cell":
            return rows
        source = rows.copy()
        for cell_type in np.unique(self.cell_type[rows]):
            pool = self.control[self.cell_type[self.control] == cell_type]
            pool = pool if len(pool) else self.control
            pick = (self.cell_type[rows] == cell_type) & ~np.isin(rows, self.control)
            source[pick] = rng.choice(pool, size=int(pick.sum()))
        return source


@dataclass
class Validation:
    """Validation conditions per cell type, their observed means and the control cells to start from."""

    groups: list[tuple[str, list[str], torch.Tensor, torch.Tensor, torch.Tensor]]
    seed: int

    def loss(self, net: CPANetwork, vocabulary: Vocabulary) -> float:
        errors = []
        for cell_type, conditions, x, library, observed in self.groups:
            means = counterfactual(net, vocabulary, x, library, cell_type, conditions, self.seed)[1]
            errors.append(((torch.from_numpy(means).to(observed) - observed) ** 2).mean(dim=1))
        return float(torch.cat(errors).mean())


def train(net: CPANetwork, adversary: Adversary | None, vocabulary: Vocabulary, data: TrainingSet,
          validation: Validation | None, settings: CPAParams, rng: np.random.Generator, report,
          progress: Callable[..., None] = no_progress) -> None:
    device = vocabulary.device
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    adversary_optimiser = torch.optim.Adam(adversary.parameters(), lr=settings.learning_rate) if adversary else None
    incidence = vocabulary.incidence(data.conditions, vocabulary.free)
    best = EarlyStopping(settings.patience, report)
    for epoch in range(1, settings.epochs + 1):
        progress("training", epoch - 1, settings.epochs)
        net.train()
        order = rng.permutation(len(data.condition))
        inputs = data.inputs(order, rng, settings.encoder_input)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            rows = order[start:start + settings.batch_size]
            x = dense_rows(data.x, inputs[start:start + settings.batch_size], device)
            condition = torch.from_numpy(data.condition[rows]).to(device)
            cell_type = torch.from_numpy(data.cell_type[rows]).to(device)
            keep = None
            if settings.residual_dropout > 0:
                keep = (torch.rand(len(vocabulary.free), device=device) >= settings.residual_dropout).float()
            perturbation = incidence @ vocabulary.free_table.embed(net, keep)
            output, basal = net(x, perturbation[condition], cell_type)
            if net.log_theta is None:
                loss = gaussian_loss(output, dense_rows(data.x, rows, device))
            else:
                loss = nb_loss(output, net.log_theta, dense_rows(data.counts, rows, device))
            total += loss.item() * len(rows)
            if adversary is not None:
                genes = incidence[condition]
                adversary_loss = adversary.loss(basal.detach(), genes, cell_type)
                adversary_optimiser.zero_grad()
                adversary_loss.backward()
                adversary_optimiser.step()
                loss = loss - settings.adversary_weight * adversary.loss(basal, genes, cell_type)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        if validation is None:
            report(epoch, -total / len(order))
            continue
        if best.evaluated(epoch, net, validation.loss(net, vocabulary)):
            break
    best.restore(net)
