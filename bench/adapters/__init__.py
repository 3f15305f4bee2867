"""Model adapters: one module (or small package) per model family, named by the cards in ``bench/catalog/models/``."""
