"""The adapters layer: one module (or small package) per model family, named by the cards in
``bench/catalog/models/``, and the kit they share. Imports only evaluation and the core."""
