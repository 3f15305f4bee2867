"""scBIG (Ruan et al., ICML 2026, arXiv 2602.04901) in PyTorch, as the official release runs it
(``docs/scbig.md``). Its networks, losses and training: ``clustering``, ``encoder``, ``pretrain``, ``latent``,
``flow``, ``coupling``, ``ode``, ``structure``, ``training``; around them the adapter ``model``, its
``priors`` and the ``ceiling`` diagnostic."""

from bench.adapters.scbig.model import ScBIGModel

__all__ = ["ScBIGModel"]
