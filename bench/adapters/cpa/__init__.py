"""CPA-style compositional latent perturbation autoencoders (Lotfollahi et al., Mol Syst Biol 2023) and
their latent additive simplification (PerturBench; Wu et al. 2024). Parts: ``params``, ``network``
(modules), ``likelihood``, ``inference`` (embeddings, counterfactuals), ``training``, ``model`` (the adapter behind
the ``cpa`` and ``latent_additive`` cards); prior gene features come from ``bench.adapters.kit.gene_features``."""

from bench.adapters.cpa.model import CPAModel

__all__ = ["CPAModel"]
