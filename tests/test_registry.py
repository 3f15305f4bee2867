"""Model cards: reading, presets, overrides and parameter checking."""

from __future__ import annotations

import pytest

from bench.core import registry
from bench.core.errors import BenchError


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
    assert model.params.ridge == 2.0 and isinstance(model.params.ridge, float)


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


PARENT = """
name = "base"
adapter = "bench.adapters.linear:LinearModel"
description = "the parent"
citation = "someone 2025"
baseline = true

[params]
n_components = 10
ridge = 0.1

[presets.fast]
n_components = 5
ridge = 1.0

[search_space]
n_components = { type = "int", low = 2, high = 50 }
ridge = { type = "float", low = 0.001, high = 100.0, log = true }
"""


def _card(directory, name, text):
    (directory / f"{name}.toml").write_text(text)


def test_extends_inherits_and_merges_over_the_parent(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", """
name = "child"
extends = "base"
citation = "someone else 2026"

[params]
ridge = 0.5
go_ridge = 2.0

[presets.fast]
ridge = 3.0

[presets.tiny]
n_components = 2

[search_space]
ridge = { type = "float", low = 0.1, high = 1.0 }
""")
    card = registry.all_cards(tmp_path)["child"]
    assert card.extends == "base"
    assert (card.adapter, card.description) == ("bench.adapters.linear:LinearModel", "the parent")
    assert card.citation == "someone else 2026"
    assert card.params == {"n_components": 10, "ridge": 0.5, "go_ridge": 2.0}
    assert card.presets == {"fast": {"n_components": 5, "ridge": 3.0}, "tiny": {"n_components": 2}}
    assert card.search_space["ridge"] == {"type": "float", "low": 0.1, "high": 1.0}
    assert card.search_space["n_components"]["high"] == 50
    assert not card.baseline
    assert registry.read_card(tmp_path / "child.toml") == card


def test_grandchild_inherits_through_its_parent(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\ndescription = "ablation"\n[params]\nridge = 0.5\n')
    _card(tmp_path, "grandchild", 'name = "grandchild"\nextends = "child"\nbaseline = true\n')
    card = registry.read_card(tmp_path / "grandchild.toml")
    assert (card.description, card.params, card.baseline) == ("ablation", {"n_components": 10, "ridge": 0.5}, True)


def test_card_hash_follows_its_parent(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\n')
    before = registry.read_card(tmp_path / "child.toml").sha256
    assert before != registry.read_card(tmp_path / "base.toml").sha256
    _card(tmp_path, "base", PARENT.replace("ridge = 0.1", "ridge = 0.2"))
    assert registry.read_card(tmp_path / "child.toml").sha256 != before


def test_unknown_parent_suggests(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", 'name = "child"\nextends = "bsae"\n')
    with pytest.raises(BenchError, match="unknown parent model card 'bsae'; did you mean 'base'"):
        registry.all_cards(tmp_path)


def test_extends_cycles_are_refused(tmp_path):
    _card(tmp_path, "a", 'name = "a"\nextends = "b"\n')
    _card(tmp_path, "b", 'name = "b"\nextends = "a"\n')
    _card(tmp_path, "c", 'name = "c"\nextends = "c"\n')
    with pytest.raises(BenchError, match=r"cycle \(a -> b -> a\)"):
        registry.read_card(tmp_path / "a.toml")
    with pytest.raises(BenchError, match=r"cycle \(c -> c\)"):
        registry.read_card(tmp_path / "c.toml")


def test_card_tables_must_be_tables(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\n[presets]\nfast = 3\n')
    with pytest.raises(BenchError, match="'presets.fast' must be a table"):
        registry.read_card(tmp_path / "child.toml")


def test_user_cards_are_found_beside_the_catalog_and_extend_its_cards(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CARDS_DIR", str(tmp_path))
    _card(tmp_path, "linear@mine", 'name = "linear@mine"\nextends = "linear"\n[params]\nridge = 7.0\n')
    card = registry.find_card("linear@mine")
    assert card.adapter == "bench.adapters.linear:LinearModel" and card.params["ridge"] == 7.0
    assert {"linear", "linear@mine"} <= set(registry.all_cards())


def test_a_user_card_may_not_reuse_a_catalog_name(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CARDS_DIR", str(tmp_path))
    _card(tmp_path, "linear", PARENT.replace('name = "base"', 'name = "linear"'))
    with pytest.raises(BenchError, match="model card 'linear' is defined twice"):
        registry.find_card("mean")


def test_counts_is_inherited_and_must_be_a_boolean(tmp_path):
    _card(tmp_path, "base", PARENT.replace("baseline = true", "counts = true"))
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\n')
    _card(tmp_path, "opted_out", 'name = "opted_out"\nextends = "base"\ncounts = false\n')
    assert registry.read_card(tmp_path / "child.toml").counts
    assert not registry.read_card(tmp_path / "opted_out.toml").counts
    assert registry.find_card("cpa").counts and registry.find_card("latent_additive").counts
    assert not registry.find_card("additive").counts
    _card(tmp_path, "wrong", PARENT.replace('name = "base"', 'name = "wrong"').replace("baseline = true", 'counts = "yes"'))
    with pytest.raises(BenchError, match="'counts' must be true or false"):
        registry.read_card(tmp_path / "wrong.toml")
