"""scBIG (Ruan et al., ICML 2026, arXiv 2602.04901) in PyTorch, as the official release runs it
(``docs/scbig.md``). The network definition: ``clustering`` (Gene-Relation Clustering), ``encoder`` (GCAE
and the PCA ablation), ``pretrain`` (fitting the latent), ``latent``, ``flow`` (CellFlow's velocity field and
condition encoder), ``coupling`` (entropic OT pairs), ``ode`` (adaptive Tsit5), ``structure`` (alignment
losses), ``training`` (the flow's training loop). Around it: ``settings`` (card parameters, one group per
component), ``priors`` (offline priors or the official resources), ``ceiling`` (the latent-ceiling
diagnostic), ``model`` (the adapter)."""

from bench.adapters.scbig.model import ScBIGModel

__all__ = ["ScBIGModel"]
