"""The evaluation layer: frozen splits, DE genes, the pinned metrics, scoring, the data ceiling and the
statistics over seeds and perturbations. Imports only the core."""
