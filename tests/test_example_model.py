"""The README's example model (``examples/cards``): the README shows its files as they are, and it runs as
a user adds it, one adapter file beside one card in a card folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import bench

ROOT = Path(__file__).resolve().parent.parent
CARDS = ROOT / "examples" / "cards"


def _readme_block(language: str, first_line: str) -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```", readme, flags=re.S | re.M)
    texts = ["".join(line[len(indent):] for line in body.splitlines(keepends=True)) for indent, body in blocks]
    found = [text for text in texts if text.startswith(first_line)]
    assert len(found) == 1, f"the README should show one {language} block starting with {first_line!r}"
    return found[0]


def test_the_readme_shows_the_example_files_as_they_are():
    assert _readme_block("python", '"""GO neighbours') == (CARDS / "go_neighbours.py").read_text()
    assert _readme_block("toml", 'name = "go_neighbours"') == (CARDS / "go_neighbours.toml").read_text()


@pytest.mark.slow
def test_the_example_runs_from_a_card_folder(tmp_path):
    done = bench("run", "--model", "go_neighbours", "--dataset", "synthetic", "--split", "simulation", "--seeds", "1",
                 "--no-track", env={"BENCH_CARDS_DIR": str(CARDS), "COLUMNS": "200"}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"^1  go_neighbours · 1 seed\n +all +\d", done.stdout, re.M), done.stdout
