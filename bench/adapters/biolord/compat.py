"""What running biolord 0.0.3 inside the harness needs besides its own calls (installed code untouched).

- The crash with its default training plan: ``biolordTrainingPlan.__init__`` fills a missing ``attribute_nn_lr``
  or ``attribute_nn_wd`` from ``self.latent_lr`` / ``self.latent_wd`` (``biolord/_train.py:49-61``) before it sets
  them (``_train.py:68-69``), an ``AttributeError``. The card always passes both (``params.PLAN``).
- ``torch_flags``: ``BiolordModule.__init__`` sets ``scvi.settings.seed`` (``biolord/_module.py:141``), which sets
  ``torch.backends.cudnn.deterministic`` and ``benchmark`` (``scvi/_settings.py:158-159``), and Lightning's Trainer
  sets ``benchmark`` again; ``bench.core.isolated_import.isolated`` does not restore them, so this does.
- ``epoch_reporter``: a Lightning callback, passed in ``Biolord.train``'s ``callbacks`` (``_model.py:670``), that
  reports progress every epoch and biolord's own validation value whenever it validates.
- ``accelerator``: ``Biolord.train``'s ``accelerator`` and ``device`` for the harness's device.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch


@contextlib.contextmanager
def torch_flags():
    """Restore cuDNN's ``deterministic`` and ``benchmark`` flags after the block."""
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def accelerator(device: str) -> dict:
    """``accelerator`` and ``device`` of ``Biolord.train`` for a torch device name (``cpu``, ``cuda``, ``cuda:1``)."""
    if device.startswith("cuda"):
        return {"accelerator": "gpu", "device": [torch.device(device).index or 0]}
    return {"accelerator": "cpu", "device": "auto"}


def epoch_reporter(callback: type, report: Callable[[int, float], None], progress: Callable[..., None],
                   first_epoch: int, total_epochs: int):
    """An instance of a subclass of Lightning's ``Callback`` class (given, as Lightning is imported lazily) that
    calls ``progress("training", epoch, total_epochs)`` after every epoch and ``report(epoch, value)`` after every
    validation, ``value`` biolord's ``biolord_metric`` of that validation (mean R^2 of the predicted means and
    variances; higher is better; ``_train.py:239-263``); epochs count on from ``first_epoch``."""

    class EpochReporter(callback):
        def __init__(self):
            self.validations = 0

        def on_train_epoch_end(self, trainer, plan) -> None:
            epoch = first_epoch + trainer.current_epoch + 1
            progress("training", epoch, total_epochs)
            history = plan.epoch_history  # biolord's record: one entry per training epoch and per validation
            values = [v for mode, v in zip(history["mode"], history["biolord_metric"]) if mode == "valid"]
            if len(values) > self.validations:
                self.validations = len(values)
                if math.isfinite(values[-1]):
                    report(epoch, float(values[-1]))

    progress("training", first_epoch, total_epochs)
    return EpochReporter()
