"""The adapter contract, for every registered model card: fit and predict on a small dataset."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core import registry
from bench.core.api import PredictQuery, TrainData, check_prediction
from bench.core.conditions import CONTROL
from bench.evaluation import splits

# cellflow's contract is tested in tests/test_cellflow_adapter.py, which fits and predicts through its card (with a
# smaller network than its fast preset) against CellFlow's own API: its two worker processes take minutes here.
CARDS = sorted(set(registry.all_cards()) - {"cellflow"})
SLOW = ("gears",)  # GEARS trains


@pytest.mark.parametrize("name", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW else c
                                  for c in CARDS])
def test_card_fits_and_predicts_every_queried_condition(name, small_synthetic):
    card = registry.find_card(name)
    preset = "fast" if "fast" in card.presets else None
    model = registry.build(card, registry.resolve_params(card, preset))
    split = splits.make(small_synthetic, "simulation", 1, "synthetic", "sha")
    data = splits.apply(split, small_synthetic)
    model.fit(TrainData(cells=data.train, val=data.val, seed=1, dataset="synthetic"))
    conditions = sorted(set(data.test.obs["condition"]))[::-1]
    query = PredictQuery(conditions=conditions, control=data.query_control, cell_type="type_0", seed=1)
    prediction = check_prediction(model.predict(query), query, name)
    assert list(prediction.means.index) == conditions
    assert list(prediction.means.columns) == list(small_synthetic.var_names)
    assert np.isfinite(prediction.means.to_numpy()).all()
    assert CONTROL not in prediction.means.index
