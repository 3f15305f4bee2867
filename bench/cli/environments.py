"""``bench env``: the virtual environments of models that cannot share bench's own (e.g. CellFlow)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.common import console
from bench.cli.data import file_size
from bench.core.errors import BenchError
from bench.core.progress import Display, duration

env_app = typer.Typer(
    help=("Build and list the virtual environments of models whose card names one (environment = \"...\"): "
          "they live in BENCH_ENVS_DIR, else a per-user folder; a run builds a missing one itself."),
    no_args_is_help=True,
)


def _cards_with_environments() -> dict:
    from bench.core import registry

    return {name: card for name, card in registry.all_cards().items() if card.environment}


@env_app.command("create")
def create(card: Annotated[str, typer.Argument(help="The model card whose environment to build, e.g. cellflow.")]
           ) -> None:
    """Build a model's environment from its card's pinned requirements file (once; minutes, and about 1.6 GB
    for CellFlow). A failed or interrupted build is started again."""
    from bench.adapters.kit.environment import ModelEnvironment
    from bench.core import registry

    found = registry.find_card(card)
    requirements = registry.requirements_file(found)
    if requirements is None:
        names = ", ".join(sorted(_cards_with_environments())) or "none"
        raise BenchError(f"model '{card}' runs in bench's own environment and needs none; cards with one: {names}")
    environment = ModelEnvironment(requirements, card)
    if environment.ready():
        console.print(f"{card}: the environment is ready in {environment.folder}", markup=False, highlight=False)
        return
    started = time.monotonic()
    with Display(console, 1, unit="environments") as display:
        display.start(card, card)
        environment.create(lambda phase, done=0, total=None: display.update(card, phase, done, total))
        display.finish(card, "built")
    console.print(f"{card}: built {environment.folder} in {duration(time.monotonic() - started)} "
                  f"({file_size(environment.size_bytes())})", markup=False, highlight=False, soft_wrap=True)


@env_app.command("list")
def list_() -> None:
    """Show each card that runs in its own environment, its requirements file, and whether it is built."""
    from bench.adapters.kit.environment import ModelEnvironment
    from bench.core import paths, registry

    table = Table(title=f"model environments: {paths.environments_dir()}")
    for column in ("card", "requirements", "environment", "status"):  # names whole; the status wraps
        table.add_column(column, no_wrap=column != "status", overflow="fold")
    for name, card in _cards_with_environments().items():
        environment = ModelEnvironment(registry.requirements_file(card), name)
        status = "built" if environment.ready() else "not built: `bench env create " + name + "` or its first run"
        table.add_row(name, str(environment.requirements.name), environment.folder.name, status)
    console.print(table)
