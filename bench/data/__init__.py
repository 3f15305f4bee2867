"""Data: manifests, the data store, loaders to canonical AnnData, the simulator, Gene Ontology."""
