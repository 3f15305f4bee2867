"""bench: a harness that trains, predicts and scores gene-perturbation response models on frozen splits."""

__version__ = "0.1.0"
