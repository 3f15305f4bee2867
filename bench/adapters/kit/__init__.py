"""The adapter kit: what every model adapter needs besides its model (parameters, threads, seeding,
validation groups, early stopping, gene resources), so that an adapter holds only its model.

How an adapter uses it (``bench/adapters/cpa`` and ``bench/adapters/linear.py`` are worked examples)::

    @dataclass(frozen=True)
    class MyParams(Params):                    # params: the parameters, their defaults and rules
        width: int = param(64, "[1, inf)")     # the card's default: cards hold only overrides
        dropout: float = param(0.1, "[0, 1)")
        likelihood: str = param("auto", choices=("auto", "nb"))
        threads: int = param(0, "[0, inf)")    # TorchAdapter reads it

    class MyModel(TorchAdapter):               # or Adapter, for a model without torch
        Params = MyParams                      # the constructor takes these by name -> self.params

        @classmethod
        def skip(cls, params, data):           # optional: decline data (a SKIPPED run) with a reason
            return "needs counts" if params.likelihood == "nb" and not data.counts else None

        def _fit(self, train): ...             # threads set, torch seeded with train.seed
        def _predict(self, query): ...         # threads set

Modules (``base``, ``params`` and ``param_groups`` import no torch; the others may):

- ``params``: ``Params`` (base dataclass; checks each field's rule, one-line ``ValueError``) and
  ``param(default, within="[a, b)", choices=(...), name="card_name")``; cross-parameter rules go in
  ``__post_init__``; ``params.arguments(function)``: the parameters a library's function takes by name.
- ``param_groups``: ``ParamGroups``, an adapter's parameters as several ``Params`` groups (one per
  component, e.g. ``bench/adapters/scbig``) under flat card names.
- ``base``: ``Adapter`` (``Params`` -> ``self.params`` and the class signature the registry reads;
  ``skip(params, DataProperties)`` classmethod, None by default; the runner calls it before ``fit``).
- ``torch_adapter``: ``TorchAdapter`` (``fit``/``predict`` run ``_fit``/``_predict`` on
  ``params.threads`` threads, ``_fit`` with torch seeded by ``train.seed``, caller's state restored).
- ``torch_runtime``: ``seeded_torch(seed, device)``, ``torch_threads(n)``, ``dense_rows(matrix, rows, device)``.
- ``early_stopping``: ``BestWeights(patience)`` (``update``/``restore``) and ``EarlyStopping(patience,
  report)`` whose ``evaluated(step, net, loss)`` reports ``-loss`` and says when to stop.
- ``validation``: ``validation_targets(train)`` (per cell type: perturbed validation conditions and
  their observed means); a seeded subsample of rows is ``bench.core.linalg.sample_rows``.
- ``counterfactual_cells``: ``starting_rows(query, genes, max_cells)`` and ``cells_anndata(cells, query, genes)``.
- ``gene_features``: ``GeneFeatures`` (GO and data-derived features of perturbed genes, for unseen genes).
- ``effects``: ``Effects`` (pseudobulk control means and changes) and ``prediction(query, rows)``.
- ``row_gnn``: graph convolutions computed only at the rows a forward reads (``RowSGConv``; GEARS' GO GNN).
"""
