"""Models in their own environments: where one lives, building it from a pinned requirements file (once, and
again after an interrupted or failed build), a failure that names the package, and the card's field."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bench.adapters.kit.environment import MARKER, ModelEnvironment
from bench.core import registry
from bench.core.errors import BenchError, BenchWarning, ModelError
from conftest import bench


@pytest.fixture
def environments(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ENVS_DIR", str(tmp_path / "environments"))
    return tmp_path / "environments"


def requirements(folder: Path, text: str, name: str = "model.txt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_the_folder_is_keyed_by_the_file_its_content_and_the_python(tmp_path, environments):
    one = ModelEnvironment(requirements(tmp_path / "a", "six==1.16.0\n"), "m")
    same = ModelEnvironment(requirements(tmp_path / "b", "six==1.16.0\n"), "m")
    other = ModelEnvironment(requirements(tmp_path / "c", "six==1.15.0\n"), "m")
    assert one.folder == same.folder != other.folder
    assert one.folder.parent == environments
    assert one.folder.name.startswith("model-py3.")


def test_a_build_installs_the_pins_apart_from_bench_and_happens_once(tmp_path, environments):
    environment = ModelEnvironment(requirements(tmp_path, "# a comment\nsix==1.16.0\n"), "m")
    environment.folder.mkdir(parents=True)
    (environment.folder / "left-by-an-interrupted-build").write_text("")  # no marker: not a finished build
    seen = []
    with pytest.warns(BenchWarning, match=f"building the environment of model 'm' in {environment.folder}"):
        assert environment.create(lambda *step: seen.append(step)) is True
    assert seen[0] == ("creating the environment", 0, 1) and seen[-1] == ("creating the environment", 1, 1)
    assert not (environment.folder / "left-by-an-interrupted-build").exists()
    assert json.loads((environment.folder / MARKER).read_text())["card"] == "m"
    assert environment.create() is False
    python = str(environment.python)
    assert subprocess.run([python, "-c", "import six; assert six.__version__ == '1.16.0'"]).returncode == 0
    assert subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode != 0  # not bench's


def test_a_failed_build_names_the_package_and_how_to_retry(tmp_path, environments):
    environment = ModelEnvironment(requirements(tmp_path, "bench-no-such-package-zz==1.0\n"), "m")
    with pytest.raises(ModelError) as failure, pytest.warns(BenchWarning, match="building the environment"):
        environment.create()
    message = str(failure.value)
    assert "\n" not in message
    assert "pip could not install bench-no-such-package-zz==1.0" in message
    assert "bench env create m" in message and str(environment.log) in message
    assert not environment.ready()


def test_a_card_names_its_environment_beside_it_or_in_the_catalog(tmp_path):
    folder = tmp_path / "cards"
    requirements(folder, "six==1.16.0\n", "mine.txt")
    (folder / "mine.toml").write_text('name = "mine"\nadapter = "bench.adapters.linear:LinearModel"\n'
                                      'description = "d"\ncitation = "c"\nenvironment = "mine.txt"\n')
    (folder / "child.toml").write_text('name = "child"\nextends = "mine"\n')
    mine, child = registry.read_card(folder / "mine.toml"), registry.read_card(folder / "child.toml")
    assert registry.requirements_file(mine) == folder / "mine.txt"
    assert registry.requirements_file(child) == folder / "mine.txt"  # inherited with the card
    before = registry.card_hash(mine)
    (folder / "mine.txt").write_text("six==1.15.0\n")
    assert registry.card_hash(mine) != before  # other pins run another model
    (folder / "mine.txt").unlink()
    with pytest.raises(BenchError, match="environment file 'mine.txt' is neither beside"):
        registry.requirements_file(mine)


def test_env_create_refuses_a_card_without_an_environment(tmp_path):
    result = bench("env", "create", "linear", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: model 'linear' runs in bench's own environment and needs none; cards with one: cellflow"]


def test_env_list_names_each_card_with_an_environment_and_its_state(tmp_path):
    result = bench("env", "list", cwd=tmp_path, env={"BENCH_ENVS_DIR": str(tmp_path / "none-yet"), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "cellflow" in line)
    assert "cellflow.txt" in row and "not built: `bench env create cellflow` or its first run" in row


def test_runs_in_workers_announce_an_environment_they_will_build(tmp_path, environments):
    """A worker process's warnings do not reach the user: ``execute`` says it before starting them."""
    from types import SimpleNamespace

    from bench.workflows import execution

    requirements(tmp_path, "six==1.16.0\n", "mine.txt")
    (tmp_path / "mine.toml").write_text('name = "mine"\nadapter = "bench.adapters.linear:LinearModel"\n'
                                        'description = "d"\ncitation = "c"\nenvironment = "mine.txt"\n')
    card = registry.read_card(tmp_path / "mine.toml")
    specs = [SimpleNamespace(card=card), SimpleNamespace(card=card), SimpleNamespace(card=registry.find_card("linear"))]
    with pytest.warns(BenchWarning) as shown:
        execution._announce_environments(specs)
    assert [str(w.message) for w in shown] == [
        "model 'mine' runs in its own environment, not built yet: its first run builds it (minutes; "
        "`bench env create mine` builds it ahead)"]


def test_env_create_builds_once_and_then_says_it_is_ready(tmp_path):
    cards = tmp_path / "cards"
    requirements(cards, "six==1.16.0\n", "mine.txt")
    (cards / "mine.toml").write_text('name = "mine"\nadapter = "bench.adapters.linear:LinearModel"\n'
                                     'description = "d"\ncitation = "c"\nenvironment = "mine.txt"\n')
    env = {"BENCH_CARDS_DIR": str(cards), "BENCH_ENVS_DIR": str(tmp_path / "envs"), "COLUMNS": "200"}
    first = bench("env", "create", "mine", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "building the environment of model 'mine'" in first.stderr
    assert "mine: built " in first.stdout and str(tmp_path / "envs") in first.stdout
    again = bench("env", "create", "mine", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "mine: the environment is ready in" in again.stdout
