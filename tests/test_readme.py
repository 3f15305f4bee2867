"""The README runs: every fenced Python block, and the shell blocks a test can run in a few minutes, in a
fresh working folder, as a reader copies them (the blocks they read files from run first, in the
README's order)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import HANG_S, real_data_file

README = Path(__file__).resolve().parents[1] / "README.md"


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    language: str
    text: str


def blocks(language: str) -> list[Block]:
    """The README's fenced blocks in ``language``, in order."""
    found, opened, lines = [], None, README.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and opened is None:
            opened = (number, fence.group(1), [])
        elif fence:
            if opened[1] == language:
                found.append(Block(opened[0], opened[1], "\n".join(opened[2]) + "\n"))
            opened = None
        elif opened is not None:
            opened[2].append(line)
    return found


def block_with(language: str, words: str) -> Block:
    """The one block of ``language`` that contains ``words``."""
    (block,) = [b for b in blocks(language) if words in b.text]
    return block


def test_every_python_block_parses_and_imports_what_exists():
    """The cheap half, in the fast suite: each block's imports (from bench and elsewhere) resolve."""
    assert len(blocks("python")) >= 4
    for block in blocks("python"):
        tree = ast.parse(block.text, filename=f"README.md:{block.line}")
        imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        source = "\n".join(ast.get_source_segment(block.text, node) for node in imports)
        out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=HANG_S)
        assert out.returncode == 0, f"README.md:{block.line}: {out.stderr.strip().splitlines()[-1:]}"


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A reader's working folder, its tracking store and its shell: ``run(language, text)``."""
    real_data_file("perturbench_devel.h5ad")
    folder = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}

    def run(block: Block, text: str | None = None) -> str:
        command = ["bash", "-euo", "pipefail", "-c"] if block.language == "bash" else [sys.executable, "-c"]
        out = subprocess.run([*command, text or block.text], cwd=folder, env=env, capture_output=True, text=True,
                             timeout=HANG_S)
        assert out.returncode == 0, f"README.md:{block.line} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    run.folder = folder
    return run


@pytest.mark.slow
def test_the_bring_your_own_predictions_blocks_run(reader):
    """Export, predict with numpy, score, tabulate; then the same predictions in cell-eval, clipped at 0 as
    the README's sentence between the two blocks says."""
    reader(block_with("bash", "bench export --dataset norman_subset"))
    clipped = block_with("bash", "bench export --dataset norman_subset").text.replace(
        "np.stack(rows)", "np.clip(np.stack(rows), 0, None)")
    assert clipped.count("np.clip(") == 1
    script = clipped.split("python - <<'PY'\n")[1].split("PY\n")[0]
    reader(Block(0, "python", script))
    out = reader(block_with("python", "frozen = splits.read("))
    assert "discrimination_score_l1" in out


@pytest.mark.slow
def test_a_runs_own_prediction_files_block_runs(reader):
    """The block that reads a run's downloaded artifacts, after `bench run` of a model that returns cells and
    the README's `mlflow artifacts download`."""
    reader(Block(0, "bash", "bench run --model latent_additive --preset fast --dataset norman_subset --seeds 1\n"))
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{reader.folder / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["bench/norman_subset"], filter_string="tags.model = 'latent_additive'")
    reader(Block(0, "bash", f"mlflow artifacts download --run-id {runs['run_id'].iloc[0]} -d run\n"))
    reader(block_with("python", 'sc.read_h5ad("run/predictions.h5ad")'))


@pytest.mark.slow
def test_the_genetic_interactions_block_prints_the_table_below_it(reader):
    out = reader(block_with("python", "interactions.observed_doubles("))
    assert "planted" in out and "scored" in out


@pytest.mark.slow
@pytest.mark.parametrize("words", [
    "bench run --model additive,linear --dataset norman_subset --split simulation --seeds 1-5",
    "BENCH_CARDS_DIR=examples/cards bench run --model go_neighbours",
    "--metrics pearson_delta_de20,gi_magnitude_error,gi_class_agreement --no-track",
])
def test_the_cheap_shell_blocks_run(reader, words):
    block = block_with("bash", words)
    text = block.text.replace("examples/cards", str(README.parent / "examples" / "cards"))
    assert "test metrics (mean ± sd over seeds)" in reader(block, text)


def test_the_default_dataset_sentence_names_every_dataset_bench_run_falls_back_to():
    from bench.data import datasets

    text = " ".join(README.read_text().split())
    sentence = text.split("The first line says which dataset was used")[1].split("named as such.")[0]
    for name in (datasets.DEFAULT, datasets.SUBSET):
        assert f"`{name}`" in sentence or f"fetch {name}`" in sentence, (name, sentence)
    assert "simulator" in sentence and datasets.SIMULATED == "synthetic"
