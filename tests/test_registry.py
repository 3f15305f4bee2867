"""Model cards: reading, presets, overrides and parameter checking."""

from __future__ import annotations

import importlib
import re
import sys

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


def test_card_hash_follows_its_parent_but_not_comments(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\n')
    before = registry.card_hash(registry.read_card(tmp_path / "child.toml"))
    assert before == registry.card_hash(registry.read_card(tmp_path / "base.toml"))  # it runs the same
    _card(tmp_path, "base", PARENT.replace("ridge = 0.1", "ridge = 0.1  # the paper's value\n# a comment"))
    assert registry.card_hash(registry.read_card(tmp_path / "child.toml")) == before
    _card(tmp_path, "base", PARENT.replace("ridge = 0.1", "ridge = 0.2"))
    assert registry.card_hash(registry.read_card(tmp_path / "child.toml")) != before


ADAPTER = """
from dataclasses import dataclass
from bench.adapters.kit.base import Adapter
from bench.adapters.kit.params import Params, param

@dataclass(frozen=True)
class ToyParams(Params):
    width: int = param(WIDTH, "[1, inf)")

class Toy(Adapter):
    Params = ToyParams
"""


def test_card_hash_follows_the_adapters_defaults(tmp_path, monkeypatch):
    """Defaults live in the adapter, so a changed default is a changed card, though the card file is not."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / "toy_adapter.py").write_text(ADAPTER.replace("WIDTH", "8"))
    _card(tmp_path, "toy", 'name = "toy"\nadapter = "toy_adapter:Toy"\ndescription = "t"\ncitation = "c"\n')
    card = registry.read_card(tmp_path / "toy.toml")
    import toy_adapter

    before = registry.card_hash(card)
    assert registry.resolve_params(card) == {"width": 8} and registry.card_hash(card) == before
    (tmp_path / "toy_adapter.py").write_text(ADAPTER.replace("WIDTH", "16"))
    importlib.reload(toy_adapter)
    assert registry.resolve_params(card) == {"width": 16} and registry.card_hash(card) != before


def test_resolved_params_are_complete_from_the_adapters_defaults():
    card = registry.find_card("cpa")
    assert not card.params and registry.resolve_params(card) == registry.adapter_defaults(card)
    assert registry.resolve_params(card)["latent_dim"] == 64
    assert registry.resolve_params(card, "fast")["latent_dim"] == 16


def test_unset_drops_inherited_entries(tmp_path):
    _card(tmp_path, "base", PARENT.replace("ridge = 0.1\n", "ridge = 0.1\ngo_ridge = 3.0\n"))
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\n'
          'unset = ["search_space.ridge", "presets.fast.ridge", "params.go_ridge"]\n')
    card = registry.read_card(tmp_path / "child.toml")
    assert list(card.search_space) == ["n_components"] and card.presets == {"fast": {"n_components": 5}}
    assert registry.resolve_params(card) == {"n_components": 10, "ridge": 0.1}  # go_ridge: not passed
    assert registry.resolve_params(card, "fast") == {"n_components": 5, "ridge": 0.1}


def test_latent_additive_is_cpa_without_the_adversary():
    cpa, latent_additive = registry.find_card("cpa"), registry.find_card("latent_additive")
    assert latent_additive.extends == "cpa" and latent_additive.adapter == cpa.adapter
    assert list(latent_additive.search_space) == [k for k in cpa.search_space if k != "adversary_weight"]
    for preset in ("default", "fast"):
        params = registry.resolve_params(latent_additive, preset)
        assert "adversary_hidden" not in params and params["adversary_weight"] == 0.0
        assert {k: v for k, v in registry.resolve_params(cpa, preset).items() if k != "adversary_hidden"} == {
            **params, "adversary_weight": 30.0, "encoder_input": "cell"}


def test_a_card_is_drawn_in_the_family_it_names_else_in_its_roots(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "own", 'name = "own"\nextends = "base"\nfamily = "own"\n')
    _card(tmp_path, "tuned_own", 'name = "tuned_own"\nextends = "own"\n')
    _card(tmp_path, "ablation", 'name = "ablation"\nextends = "base"\n')
    cards = registry.all_cards(tmp_path)
    assert [registry.family(name, cards) for name in ("base", "own", "tuned_own", "ablation", "external")] == [
        "base", "own", "own", "base", "external"]
    catalog = registry.all_cards()
    assert (registry.family("latent_additive", catalog), registry.family("scbig_pca_latent", catalog)) == (
        "latent_additive", "scbig")


@pytest.mark.parametrize("entry, message", [
    ("search_space.rigde", "unknown entry to unset 'search_space.rigde'; did you mean 'search_space.ridge'"),
    ("presets.fast.go_ridge", "unknown entry to unset 'presets.fast.go_ridge'"),
    ("description", "cannot unset 'description'"),
])
def test_unset_of_an_unknown_entry_is_a_one_line_error(tmp_path, entry, message):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", f'name = "child"\nextends = "base"\nunset = ["{entry}"]\n')
    with pytest.raises(BenchError, match=re.escape(message)) as error:
        registry.read_card(tmp_path / "child.toml")
    assert "\n" not in str(error.value)


def test_unset_of_a_parameter_the_adapter_lacks_is_an_error(tmp_path):
    _card(tmp_path, "base", PARENT)
    _card(tmp_path, "child", 'name = "child"\nextends = "base"\nunset = ["params.rigde"]\n')
    with pytest.raises(BenchError, match="unknown parameter to unset 'rigde'; did you mean 'ridge'"):
        registry.resolve_params(registry.read_card(tmp_path / "child.toml"))


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
