"""Training of scBIG's conditional flow: OT-coupled minibatches, structure losses, validation.

A micro-batch is one (cell type, training condition) drawn uniformly: up to ``batch_size`` of its cells
and as many control cells of the same cell type, coupled by minibatch OT (CellFlow's sampling). An
optimiser step accumulates ``accumulation`` micro-batches; gradients are clipped to norm ``grad_clip``.
Every ``structure_every`` steps the first micro-batch also runs a differentiable ODE solve of at most
``structure_cells`` controls, decodes it, and adds the weighted cluster-correlation and pathway-OT
losses against the observed cells (``structure``). Every ``eval_every`` steps (and at the end) the
validation conditions are predicted from training controls; ``report(step, -MSE)`` is called and the
best weights are kept (with ``patience`` > 0, training stops after that many evaluations without a
better one). Without validation conditions the reported value is the negative mean training loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.adapters.early_stopping import BestWeights
from bench.adapters.scbig.flow import ConditionalFlow, ot_pairs, path_loss, solve
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.structure import cluster_correlation_loss, pathway_ot_loss
from bench.adapters.torch_runtime import dense_rows


@dataclass
class FlowSettings:
    steps: int
    batch_size: int
    accumulation: int
    learning_rate: float
    grad_clip: float
    noise: float
    ode_steps: int
    eval_every: int
    patience: int
    correlation_weight: float
    pathway_weight: float
    structure_every: int
    structure_cells: int
    structure_ode_steps: int
    mixed_precision: bool


@dataclass
class Group:
    cell_type: str
    condition: str
    rows: np.ndarray


@dataclass
class FlowData:
    """Training latents ``z``, the genes ``x`` they came from, perturbed groups and control rows per type."""

    z: torch.Tensor
    x: object
    groups: list[Group]
    controls: dict[str, np.ndarray]


@dataclass
class Structure:
    """Cluster-averaging and pathway-averaging matrices (genes x groups); ``pathways`` may be None."""

    clusters: torch.Tensor
    pathways: torch.Tensor | None


@dataclass
class Validation:
    """Per cell type: conditions, their observed mean genes, and the standardised control latents."""

    groups: list[tuple[str, list[str], torch.Tensor, torch.Tensor]]

    def error(self, flow: ConditionalFlow, latent: LatentSpace, steps: int) -> float:
        errors = []
        for cell_type, conditions, observed, z0 in self.groups:
            means = torch.stack([predict_means(flow, latent, z0, c, cell_type, steps) for c in conditions])
            errors.append(((means - observed) ** 2).mean(dim=1))
        return float(torch.cat(errors).mean())


def predict_cells(flow: ConditionalFlow, latent: LatentSpace, z0: torch.Tensor, condition: str, cell_type: str,
                  steps: int) -> torch.Tensor:
    flow.eval()
    with torch.no_grad():
        return latent.decode(solve(flow.velocity, z0, flow.condition(condition, cell_type), steps))


def predict_means(flow, latent, z0, condition, cell_type, steps) -> torch.Tensor:
    return predict_cells(flow, latent, z0, condition, cell_type, steps).mean(dim=0)


def autocast(device: str, enabled: bool):
    """bfloat16 autocast on CUDA for the networks' matrix products; a no-op on CPU."""
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                          enabled=enabled and device.startswith("cuda"))


def structure_loss(flow: ConditionalFlow, latent: LatentSpace, data: FlowData, structure: Structure,
                   group: Group, x0: torch.Tensor, settings: FlowSettings, rng: np.random.Generator,
                   device: str) -> torch.Tensor:
    n = min(settings.structure_cells, len(x0), len(group.rows))
    rows = np.sort(rng.choice(group.rows, size=n, replace=False))
    observed = dense_rows(data.x, rows, device)
    predicted = latent.decode(solve(flow.velocity, x0[:n], flow.condition(group.condition, group.cell_type),
                                    settings.structure_ode_steps).float())
    loss = settings.correlation_weight * cluster_correlation_loss(predicted, observed, structure.clusters)
    if structure.pathways is not None and settings.pathway_weight > 0:
        loss = loss + settings.pathway_weight * pathway_ot_loss(predicted, observed, structure.pathways)
    return loss


def train_flow(flow: ConditionalFlow, latent: LatentSpace, data: FlowData, structure: Structure,
               validation: Validation | None, settings: FlowSettings, rng: np.random.Generator,
               report: Callable[[int, float], None], device: str) -> None:
    optimiser = torch.optim.Adam(flow.parameters(), lr=settings.learning_rate)
    use_structure = settings.correlation_weight > 0 or (settings.pathway_weight > 0 and structure.pathways is not None)
    best, running = BestWeights(settings.patience), []
    for step in range(1, settings.steps + 1):
        flow.train()
        optimiser.zero_grad()
        for micro in range(settings.accumulation):
            group = data.groups[rng.integers(len(data.groups))]
            controls = data.controls[group.cell_type]
            n = min(settings.batch_size, len(group.rows), len(controls))
            x1 = data.z[np.sort(rng.choice(group.rows, size=n, replace=False))]
            x0 = data.z[np.sort(rng.choice(controls, size=n, replace=False))]
            x0 = x0[ot_pairs(x0, x1)]
            with autocast(device, settings.mixed_precision):
                loss = path_loss(flow.velocity, x0, x1, flow.condition(group.condition, group.cell_type),
                                 settings.noise).float()
                if use_structure and micro == 0 and step % settings.structure_every == 0:
                    loss = loss + structure_loss(flow, latent, data, structure, group, x0, settings, rng, device)
            (loss / settings.accumulation).backward()
            running.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(flow.parameters(), settings.grad_clip)
        optimiser.step()
        if step % settings.eval_every and step != settings.steps:
            continue
        training_loss, running = float(np.mean(running)), []
        if validation is None:
            report(step, -training_loss)
            continue
        value = validation.error(flow, latent, settings.ode_steps)
        report(step, -value)
        if best.update(flow, value):
            break
    best.restore(flow)
    flow.eval()
