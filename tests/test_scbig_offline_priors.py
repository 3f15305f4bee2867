"""scBIG's ``paper`` preset without the official resource files: it runs the offline substitutes, and says so
when the run starts (a ``BenchWarning`` when its parameters are built) and in the run's record (the diagnostic
``offline_priors``), which the leaderboard shows in the row's label (``test_leaderboard.py``)."""

from __future__ import annotations

import warnings

import pytest

from bench.core import registry
from bench.core.api import OFFLINE_PRIORS, TrainData
from bench.core.errors import BenchWarning

FILES = {"gene_embeddings": "genecompass.pkl", "string_info": "info.txt.gz", "string_links": "links.txt.gz",
         "esm_features": "esm2.pt", "pathways_gmt": "ReactomePathways.gmt.zip"}  # never read when building


def built(card: str, preset: str, **overrides):
    found = registry.find_card(card)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = registry.build(found, {**registry.resolve_params(found, preset), **overrides})
    return model, [str(w.message) for w in caught if issubclass(w.category, BenchWarning)]


def named(message: str) -> list[str]:
    """The priors a warning names: 'scBIG runs offline substitutes for its A, B: ...' -> [A, B]."""
    head = message.partition(":")[0]
    assert head.startswith("scBIG runs offline substitutes for its "), message
    return head.removeprefix("scBIG runs offline substitutes for its ").split(", ")


def test_the_paper_preset_without_the_files_warns_in_one_line_naming_the_substitutes():
    _, said = built("scbig", "paper")
    assert len(said) == 1 and "\n" not in said[0]
    assert named(said[0]) == ["gene embeddings", "relation graph", "condition features", "pathways"]
    _, said = built("scbig", "paper", esm_features="esm2.pt", pathways_gmt="reactome.gmt", string_info="info.txt")
    assert len(said) == 1 and named(said[0]) == ["gene embeddings", "relation graph"]  # STRING needs both files


def test_no_warning_with_every_file_or_outside_the_paper_preset():
    assert built("scbig", "paper", **FILES)[1] == []
    assert built("scbig", "default")[1] == [] and built("scbig", "fast")[1] == []


def test_an_ablation_is_warned_only_about_the_priors_it_uses():
    _, said = built("scbig_random_clusters", "paper")  # no GRC: no relation graph; the GCAE still reads embeddings
    assert named(said[0]) == ["gene embeddings", "condition features", "pathways"]
    _, said = built("scbig_random_clusters", "paper", latent="pca")  # neither GRC nor the GCAE: no embeddings
    assert named(said[0]) == ["condition features", "pathways"]
    _, said = built("scbig_no_structure_loss", "paper", **{k: v for k, v in FILES.items() if k != "pathways_gmt"})
    assert said == []  # its pathway weight is 0: the pathways are never read


@pytest.mark.parametrize("official, recorded", [(True, 4), (False, None)])
def test_the_run_records_how_many_priors_were_substituted(small_synthetic, official, recorded):
    model, _ = built("scbig", "fast", official_priors=official, calls=2, ae_epochs=1, eval_every=2)
    train = TrainData(cells=small_synthetic, val=small_synthetic[:0], seed=1)
    model.fit(train)
    assert train.diagnostics.get(OFFLINE_PRIORS) == recorded
