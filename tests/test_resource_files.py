"""A run records the sha256 of every resource file its model read (tags ``resource.<file name>``)."""

from __future__ import annotations

import hashlib
import textwrap

import pytest
import torch
from conftest import adapter_catalog

from bench.core import registry
from bench.data.datasets import load_dataset
from bench.workflows import runner

READER = textwrap.dedent(
    """
    import os
    import pandas as pd
    from bench.adapters.kit import gene_resources
    from bench.core.api import Prediction

    class Reader:
        def fit(self, train):
            gene_resources.read_gmt(os.environ["GMT"], list(train.genes))
            gene_resources.read_esm_features(os.environ["ESM"], ["G1", "G2", "absent"])
        def predict(self, query):
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))
    """
)


@pytest.fixture
def prepared(small_synthetic, tmp_path):
    path = tmp_path / "screen.h5ad"
    small_synthetic.write_h5ad(path)
    return runner.PreparedDataset.of(load_dataset(path, counts=False))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_run_records_the_files_its_model_read(prepared, tmp_path, monkeypatch):
    adapter_catalog(tmp_path, monkeypatch, "reader_adapter", READER, {"reader": "Reader"})
    genes = list(prepared.adata.var_names[:3])
    gmt = tmp_path / "sets.gmt"
    gmt.write_text(f"SET_A\tdescription\t{genes[0]}\t{genes[1]}\t{genes[2]}\n")
    esm = tmp_path / "esm"
    esm.mkdir()
    for gene, value in (("G1", 1.0), ("G2", 2.0), ("G3", 3.0)):  # G3 is not asked for: not read
        torch.save(torch.full((4,), value), esm / f"{gene}.pt")
    monkeypatch.setenv("GMT", str(gmt))
    monkeypatch.setenv("ESM", str(esm))
    spec = runner.RunSpec(registry.find_card("reader"), {}, prepared.name, "simulation", 1)
    result = runner.run(spec, prepared)
    assert result.ok, result.error
    listing = "".join(f"{name} {sha256((esm / name).read_bytes())}\n" for name in ("G1.pt", "G2.pt"))
    assert {k: v for k, v in result.environment.items() if k.startswith("resource.")} == {
        "resource.sets.gmt": sha256(gmt.read_bytes()), "resource.esm": sha256(listing.encode())}
    again = runner.run(spec, prepared)  # a second run records its own reads, hashed from the cache
    assert {k: v for k, v in again.environment.items() if k.startswith("resource.")} == {
        "resource.sets.gmt": sha256(gmt.read_bytes()), "resource.esm": sha256(listing.encode())}
