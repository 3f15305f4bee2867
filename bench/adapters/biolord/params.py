"""biolord's parameters under biolord's own names, with the defaults of its Norman perturbation experiment.

Defaults: ``varying_arg`` of ``scripts/biolord/norman/norman_optimal_config.py`` in nitzanlab/biolord_reproducibility
(commit 16bfefc), the configuration behind the paper's Norman results, passed on as in ``base_experiment_norman.py``
(``batch_size=32``, ``early_stopping=True``, ``check_val_every_n_epoch=5``). That file lacks
``unknown_attribute_penalty``, which ``base_experiment_norman.py`` reads; ``utils/parameters_norman.py`` of the
same commit gives 1e4. Where each one goes in biolord 0.0.3: ``docs/biolord.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.adapters.kit.params import Params, param

# Which of biolord's calls takes each parameter: Biolord(...) itself, its module_params, Biolord.train's
# plan_kwargs (the training plan) and Biolord.train's own arguments. The rest are the harness's.
CONSTRUCTOR = ("n_latent",)
MODULE = ("n_latent_attribute_ordered", "reconstruction_penalty", "unknown_attribute_penalty", "use_batch_norm",
          "use_layer_norm", "unknown_attribute_noise_param", "unknown_attributes", "attribute_dropout_rate",
          "decoder_width", "decoder_depth", "decoder_activation", "attribute_nn_width", "attribute_nn_depth",
          "attribute_nn_activation")
PLAN = ("latent_lr", "latent_wd", "decoder_lr", "decoder_wd", "attribute_nn_lr", "attribute_nn_wd", "step_size_lr",
        "cosine_scheduler", "scheduler_final_lr")
TRAIN = ("max_epochs", "batch_size", "early_stopping", "early_stopping_patience", "check_val_every_n_epoch")


@dataclass(frozen=True)
class BiolordParams(Params):
    """biolord's arguments (see ``CONSTRUCTOR``, ``MODULE``, ``PLAN``, ``TRAIN``), plus ``n_components``: the
    data-derived gene features' width (``bench.adapters.kit.gene_features``), and torch ``threads`` (0: torch's
    setting)."""

    n_latent: int = param(32, "[1, inf)")
    n_latent_attribute_ordered: int = param(32, "[1, inf)")
    reconstruction_penalty: float = param(1e4, "[0, inf)")
    unknown_attribute_penalty: float = param(1e4, "[0, inf)")
    use_batch_norm: bool = param(False, choices=(False, True))
    use_layer_norm: bool = param(False, choices=(False, True))
    unknown_attribute_noise_param: float = param(0.2, "[0, inf)")
    unknown_attributes: bool = param(False, choices=(False, True))
    attribute_dropout_rate: float = param(0.0, "[0, 1)")
    decoder_width: int = param(32, "[1, inf)")
    decoder_depth: int = param(2, "[1, inf)")
    decoder_activation: bool = param(True, choices=(False, True))
    attribute_nn_width: int = param(64, "[1, inf)")
    attribute_nn_depth: int = param(2, "[1, inf)")
    attribute_nn_activation: bool = param(True, choices=(False, True))
    latent_lr: float = param(1e-2, "(0, inf)")
    latent_wd: float = param(1e-5, "[0, inf)")
    decoder_lr: float = param(1e-2, "(0, inf)")
    decoder_wd: float = param(1e-2, "[0, inf)")
    attribute_nn_lr: float = param(1e-3, "(0, inf)")
    attribute_nn_wd: float = param(4e-8, "[0, inf)")
    step_size_lr: int = param(45, "[1, inf)")
    cosine_scheduler: bool = param(True, choices=(False, True))
    scheduler_final_lr: float = param(1e-5, "[0, inf)")
    max_epochs: int = param(200, "[1, inf)")
    batch_size: int = param(32, "[1, inf)")
    early_stopping: bool = param(True, choices=(False, True))
    early_stopping_patience: int = param(200, "[1, inf)")
    check_val_every_n_epoch: int = param(5, "[1, inf)")
    n_components: int = param(10, "[1, inf)")
    threads: int = param(0, "[0, inf)")

    def group(self, names: tuple[str, ...]) -> dict:
        """The values of ``names``, by name: one of biolord's argument groups."""
        return {name: getattr(self, name) for name in names}
