"""Every help text of the command line is shown as written (typer renders help with rich, whose markup
would swallow text in square brackets, such as a card's ``[search_space]``)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from bench.cli.app import app


def _commands(command, path: tuple[str, ...] = ()):
    """Every command under ``command`` with its path (typer 0.29 bundles its own click: duck-typed)."""
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def test_every_help_text_is_shown_verbatim():
    root = typer.main.get_command(app)
    runner = CliRunner()
    checked = 0
    for path, command in _commands(root):
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}, prog_name="bench")
        assert out.exit_code == 0, out.output
        shown = _flat(out.output)
        texts = [command.help or ""] + [p.help for p in command.params if getattr(p, "help", None)]
        for text in texts:
            first = _flat(text.split("\n\n")[0])
            assert first in shown, f"`bench {' '.join(path)} --help` does not show: {first}"
            checked += 1
    assert checked > 50  # every command's options were looked at
