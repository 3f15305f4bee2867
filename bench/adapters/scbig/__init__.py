"""scBIG (Ruan et al., ICML 2026, arXiv 2602.04901) in PyTorch, as the official release runs it
(``docs/scbig.md``). Parts: ``clustering`` (Gene-Relation Clustering), ``encoder`` (GCAE and the PCA
ablation), ``pretrain`` (autoencoder training), ``latent`` (the flow's raw coordinates), ``ceiling``
(the latent-ceiling diagnostic), ``flow`` (CellFlow's velocity field and condition encoder),
``coupling`` (entropic OT pairs), ``ode`` (adaptive Tsit5), ``structure`` (alignment losses),
``training`` (the flow's training loop), ``priors`` and ``resources`` (offline priors and the official
resources), ``model`` (the adapter)."""

from bench.adapters.scbig.model import ScBIGModel

__all__ = ["ScBIGModel"]
