"""Model cards: reading, presets, overrides and parameter checking."""

from __future__ import annotations

import pytest

from bench import registry
from bench.errors import BenchError


def test_every_card_reads_and_builds_with_every_preset():
    cards = registry.all_cards()
    assert {"control", "mean", "additive", "linear"} <= set(cards)
    for card in cards.values():
        for preset in card.preset_names:
            model = registry.build(card, registry.resolve_params(card, preset))
            assert callable(model.fit) and callable(model.predict)


def test_preset_then_override_order():
    card = registry.find_card("linear")
    params = registry.resolve_params(card, "fast", ["ridge=0.5", "n_components=3"])
    assert params == {"n_components": 3, "ridge": 0.5, "go_ridge": 1.0}
    assert registry.resolve_params(card, "fast")["n_components"] == card.presets["fast"]["n_components"]


def test_integer_override_of_a_float_parameter_is_accepted():
    card = registry.find_card("linear")
    model = registry.build(card, registry.resolve_params(card, None, ["ridge=2"]))
    assert model.ridge == 2.0 and isinstance(model.ridge, float)


def test_unknown_parameter_names_the_allowed_ones():
    card = registry.find_card("linear")
    with pytest.raises(BenchError, match="no parameter 'lambda'; allowed: n_components, ridge, go_ridge"):
        registry.build(card, {"lambda": 1.0})


def test_wrongly_typed_parameter_is_refused():
    card = registry.find_card("linear")
    with pytest.raises(BenchError, match="'n_components' must be int"):
        registry.build(card, registry.resolve_params(card, None, ["n_components=ten"]))


def test_unknown_model_and_preset_suggest():
    with pytest.raises(BenchError, match="did you mean 'linear'"):
        registry.find_card("lineer")
    with pytest.raises(BenchError, match="did you mean 'fast'"):
        registry.resolve_params(registry.find_card("linear"), "fats")


def test_malformed_override_and_card(tmp_path):
    with pytest.raises(BenchError, match="key=value"):
        registry.parse_override("ridge")
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "broken"\nadapter = "x:Y"\n')
    with pytest.raises(BenchError, match="missing or empty 'description'"):
        registry.read_card(bad)
