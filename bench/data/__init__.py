"""The data layer: manifests, the data store, loaders to canonical AnnData, the simulator, Gene Ontology
knowledge. Imports only the core."""
