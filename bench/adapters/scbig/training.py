"""Training of scBIG's conditional flow as the official release runs it (``train_norman_additive.py``
with CellFlow's OT flow-matching solver, ``cellflow/solvers/_otfm.py``).

- A call draws a cell type, then one of its training conditions, uniformly; ``batch_size`` of its
  control latents and ``batch_size`` of the condition's latents, both with replacement; couples them by
  entropic OT (``coupling``) and draws ``batch_size`` pairs from the plan; the loss is the flow-matching
  loss on the constant-noise path, with the condition embedding's dropout on.
- Gradients of ``accumulation`` calls are averaged, clipped to global norm ``grad_clip`` and applied by
  Adam (``optax.MultiSteps`` over ``clip_by_global_norm`` and Adam in the official code).
- Every ``structure.every`` calls, after that call's update: the structure-aware alignment, one
  separate Adam step (its own state) per condition for ``structure.conditions`` training conditions,
  each on ``structure.cells`` fresh control latents solved by the adaptive ODE with all dropout off,
  decoded by the frozen decoder and compared with as many observed cells; gradients are clipped
  element-wise to ``structure.clip``. A condition whose step fails (its ODE does not converge) is skipped
  and counted, as in the official loop.
- Every ``eval_every`` calls (and after the last): each validation condition is predicted from the same
  ``eval_cells`` training controls of its cell type (adaptive ODE, decoded, averaged); the value is the
  mean over conditions of the Pearson correlation of predicted and observed change from the training
  controls' mean on all genes, undefined ones left out (``val_r_all``, the official selection metric),
  reported as ``report(call, value)``; the weights with the highest value are kept (``patience`` > 0: training stops
  after that many evaluations without a better one; the official run never stops early).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bench.adapters.kit.early_stopping import EarlyStopping
from bench.adapters.kit.params import Params, param
from bench.adapters.kit.torch_runtime import dense_rows
from bench.adapters.kit.validation import ValidationTarget
from bench.adapters.scbig.coupling import couple
from bench.adapters.scbig.flow import ConditionalFlow, path_loss, transport
from bench.adapters.scbig.latent import LatentSpace
from bench.adapters.scbig.structure import cluster_correlation_loss, membership, pathway_ot_loss
from bench.core import linalg
from bench.core.api import no_progress
from bench.core.conditions import CONTROL
from bench.evaluation.metrics import rowwise_pearson


@dataclass(frozen=True)
class FlowParams(Params):
    """Flow matching: ``calls`` of ``batch_size`` cells, ``accumulation`` calls per Adam update at
    ``learning_rate``, ``grad_clip``, path ``noise``, coupling ``ot_*``; validation every ``eval_every``
    calls on ``eval_cells`` cells (``patience`` evaluations, 0 = never stop early); ODE ``rtol``, ``atol``."""

    calls: int = param(500_000, "[1, inf)")
    accumulation: int = param(20, "[1, inf)")
    batch_size: int = param(1024, "[1, inf)")
    learning_rate: float = param(5e-5, "(0, inf)")
    grad_clip: float = param(1.0, "(0, inf)")
    noise: float = param(0.5, "[0, inf)")
    ot_epsilon: float = param(1.0, "(0, inf)")
    ot_threshold: float = param(1e-3, "(0, inf)")
    ot_iterations: int = param(2000, "[1, inf)")
    eval_every: int = param(100_000, "[1, inf)")
    eval_cells: int = param(500, "[1, inf)")
    patience: int = param(0, "[0, inf)")
    rtol: float = param(1e-5, "(0, inf)")
    atol: float = param(1e-5, "(0, inf)")


@dataclass(frozen=True)
class StructureParams(Params):
    """The alignment steps (card names ``structure_*``): every ``every`` calls on ``conditions`` conditions
    of ``cells`` cells, Adam ``learning_rate``, element-wise clip ``clip``; the two losses' weights."""

    every: int = param(1000, "[1, inf)", name="structure_every")
    conditions: int = param(3, "[1, inf)", name="structure_conditions")
    cells: int = param(64, "[1, inf)", name="structure_cells")
    learning_rate: float = param(5e-5, "(0, inf)", name="structure_learning_rate")
    clip: float = param(1.0, "(0, inf)", name="structure_clip")
    correlation_weight: float = param(0.1, "[0, inf)")
    pathway_weight: float = param(0.1, "[0, inf)")


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
    """Cluster-averaging and pathway-averaging matrices (genes x groups; ``pathways`` may be None) and the
    alignment's parameters."""

    clusters: torch.Tensor
    pathways: torch.Tensor | None
    params: StructureParams

    @classmethod
    def of(cls, labels: np.ndarray, pathways: list[np.ndarray], params: StructureParams,
           device: str) -> Structure:
        """From every gene's cluster label and the gene-index arrays of the pathways (possibly none)."""
        n_genes, k = len(labels), int(labels.max()) + 1
        clusters = membership([np.flatnonzero(labels == c) for c in range(k)], n_genes, device)
        return cls(clusters, membership(pathways, n_genes, device) if pathways else None, params)


@dataclass
class ValidationGroup:
    """One cell type's validation conditions: observed mean genes, the training-control mean and the
    control latents predictions start from."""

    cell_type: str
    conditions: list[str]
    observed: np.ndarray
    control_mean: np.ndarray
    z0: torch.Tensor


def cell_groups(cells) -> tuple[list[Group], dict[str, np.ndarray]]:
    """The perturbed groups of the cell types with control cells, and those types' control rows."""
    condition = cells.obs["condition"].astype(str).to_numpy()
    cell_type = cells.obs["cell_type"].astype(str).to_numpy()
    controls = {t: np.flatnonzero((condition == CONTROL) & (cell_type == t)) for t in np.unique(cell_type)}
    controls = {t: rows for t, rows in controls.items() if len(rows)}
    groups = [Group(t, c, np.flatnonzero((condition == c) & (cell_type == t)))
              for t in sorted(controls) for c in sorted(set(condition[cell_type == t]) - {CONTROL})]
    return groups, controls


def validation_groups(targets: list[ValidationTarget], data: FlowData, eval_cells: int,
                      rng: np.random.Generator) -> list[ValidationGroup]:
    """Per validation target (``kit.validation_targets``) of a cell type with training controls: its
    conditions' observed means, the mean of all its training controls and the latents of ``eval_cells``
    of them (the same cells at every validation)."""
    groups = []
    for target in targets:
        if target.cell_type in data.controls:
            pool = data.controls[target.cell_type]
            control_mean = dense_rows(data.x, pool, "cpu").double().mean(dim=0).numpy()
            groups.append(ValidationGroup(target.cell_type, target.conditions, target.means, control_mean,
                                          data.z[linalg.sample_rows(pool, rng, eval_cells)]))
    return groups


def predict_cells(flow: ConditionalFlow, latent: LatentSpace, z0: torch.Tensor, condition: str, cell_type: str,
                  rtol: float, atol: float) -> torch.Tensor:
    flow.eval()
    with torch.no_grad():
        return latent.decode(transport(flow.velocity, z0, flow.condition(condition, cell_type), rtol=rtol, atol=atol))


def _constant(rows: np.ndarray) -> np.ndarray:
    """Per row, ``np.allclose(row, row[0])``: the official test of a vector without variation."""
    return np.all(np.abs(rows - rows[:, :1]) <= 1e-8 + 1e-5 * np.abs(rows[:, :1]), axis=1)


def pearson_deltas(predicted: np.ndarray, observed: np.ndarray, control_mean: np.ndarray) -> np.ndarray:
    """Per condition (row) with a defined correlation, the Pearson correlation of its predicted and observed
    change from ``control_mean``. Undefined, and left out: a change with a non-finite value or constant by
    ``np.allclose`` (the official ``safe_pearson``, TNA:732-743)."""
    predicted, observed = predicted - control_mean, observed - control_mean
    defined = np.isfinite(predicted).all(axis=1) & np.isfinite(observed).all(axis=1)
    defined &= ~_constant(predicted) & ~_constant(observed)
    unscaled = np.zeros(int(defined.sum()))  # scales of zero: the official test, not rowwise_pearson's, decides
    return rowwise_pearson(predicted[defined], observed[defined], unscaled, unscaled)


def validation_value(flow: ConditionalFlow, latent: LatentSpace, groups: list[ValidationGroup],
                     params: FlowParams) -> float:
    """The official ``val_r_all``: the mean of ``pearson_deltas`` over every validation condition, the undefined
    ones left out (TNA:3358-3360), 0 when none is defined (``safe_mean``, TNA:746-748)."""
    values = []
    for group in groups:
        predicted = np.stack([predict_cells(flow, latent, group.z0, c, group.cell_type, params.rtol,
                                            params.atol).mean(dim=0).cpu().numpy() for c in group.conditions])
        values.extend(pearson_deltas(predicted, group.observed, group.control_mean))
    return float(np.mean(values)) if values else 0.0


def flow_matching_loss(flow: ConditionalFlow, data: FlowData, group: Group, params: FlowParams,
                       rng: np.random.Generator, generator: torch.Generator) -> torch.Tensor:
    """One call: controls and condition cells drawn with replacement, coupled by entropic OT, regressed."""
    controls = data.controls[group.cell_type]
    x0 = data.z[rng.choice(controls, size=params.batch_size, replace=True)]
    x1 = data.z[rng.choice(group.rows, size=params.batch_size, replace=True)]
    x0, x1 = couple(x0, x1, generator, epsilon=params.ot_epsilon, threshold=params.ot_threshold,
                    max_iterations=params.ot_iterations)
    return path_loss(flow.velocity, x0, x1, flow.condition(group.condition, group.cell_type), params.noise,
                     generator)


class StructureAlignment:
    """The official structure-aware alignment steps, with their own Adam state."""

    def __init__(self, flow: ConditionalFlow, latent: LatentSpace, data: FlowData, structure: Structure,
                 params: FlowParams, device: str):
        self.flow, self.latent, self.data, self.structure = flow, latent, data, structure
        self.params, self.device = params, device
        self.optimiser = torch.optim.Adam(flow.parameters(), lr=structure.params.learning_rate)
        self.skipped = 0

    @property
    def active(self) -> bool:
        weights = self.structure.params
        return weights.correlation_weight > 0 or (weights.pathway_weight > 0 and self.structure.pathways is not None)

    def loss(self, group: Group, rng: np.random.Generator) -> torch.Tensor:
        cells, weights = self.structure.params.cells, self.structure.params
        controls = self.data.controls[group.cell_type]
        z0 = self.data.z[linalg.sample_rows(controls, rng, cells)]
        observed = dense_rows(self.data.x, linalg.sample_rows(group.rows, rng, cells), self.device)
        condition = self.flow.condition(group.condition, group.cell_type)
        predicted = self.latent.decode(transport(self.flow.velocity, z0, condition, rtol=self.params.rtol,
                                                 atol=self.params.atol))
        loss = weights.correlation_weight * cluster_correlation_loss(predicted, observed, self.structure.clusters)
        if self.structure.pathways is not None and weights.pathway_weight > 0:
            loss = loss + weights.pathway_weight * pathway_ot_loss(predicted, observed, self.structure.pathways)
        return loss

    def round(self, rng: np.random.Generator) -> None:
        """One alignment step per drawn condition; the main optimiser's accumulated gradients are kept."""
        parameters = [p for p in self.flow.parameters() if p.requires_grad]
        accumulated = [None if p.grad is None else p.grad.clone() for p in parameters]
        chosen = rng.choice(len(self.data.groups), size=min(self.structure.params.conditions,
                                                             len(self.data.groups)), replace=False)
        self.flow.eval()
        for index in chosen:
            self.optimiser.zero_grad()
            try:
                self.loss(self.data.groups[index], rng).backward()
            except RuntimeError:
                self.skipped += 1
                continue
            for p in parameters:
                if p.grad is not None:
                    p.grad.clamp_(-self.structure.params.clip, self.structure.params.clip)
            self.optimiser.step()
        self.flow.train()
        for p, grad in zip(parameters, accumulated):
            p.grad = grad


def train_flow(flow: ConditionalFlow, latent: LatentSpace, data: FlowData, structure: Structure,
               validation: list[ValidationGroup], params: FlowParams, rng: np.random.Generator,
               report: Callable[[int, float], None], device: str,
               progress: Callable[..., None] = no_progress) -> StructureAlignment:
    """Train ``flow`` in place (the best validated weights are kept); return the alignment's record.
    ``progress`` hears the calls done."""
    generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    optimiser = torch.optim.Adam(flow.parameters(), lr=params.learning_rate)
    alignment = StructureAlignment(flow, latent, data, structure, params, device)
    by_type: dict[str, list[Group]] = {}
    for group in data.groups:
        by_type.setdefault(group.cell_type, []).append(group)
    cell_types = sorted(by_type)
    stopping, running = EarlyStopping(params.patience, report), []
    flow.train()
    optimiser.zero_grad()
    for call in range(1, params.calls + 1):
        progress("training the flow", call - 1, params.calls)
        groups = by_type[cell_types[rng.integers(len(cell_types))]]
        loss = flow_matching_loss(flow, data, groups[rng.integers(len(groups))], params, rng, generator)
        (loss / params.accumulation).backward()
        running.append(float(loss.detach()))
        if call % params.accumulation == 0:
            torch.nn.utils.clip_grad_norm_(flow.parameters(), params.grad_clip)
            optimiser.step()
            optimiser.zero_grad()
        if alignment.active and call % structure.params.every == 0:
            alignment.round(rng)
        if call % params.eval_every and call != params.calls:
            continue
        if not validation:
            report(call, -float(np.mean(running)))
            running = []
            continue
        running = []
        value = validation_value(flow, latent, validation, params)
        flow.train()
        if stopping.evaluated(call, flow, -value):
            break
    stopping.restore(flow)
    flow.eval()
    return alignment
