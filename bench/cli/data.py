"""``bench data``: list the datasets and their files in the data store, fetch them, import copies."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from bench.cli.common import console, err_console
from bench.core import paths

data_app = typer.Typer(
    help=(
        "Manage the data store (BENCH_DATA_DIR, else a per-user folder): list datasets and whether their "
        "files are present and verified, download them, or import copies you already have."
    ),
    no_args_is_help=True,
)
STYLES = {"verified": "green", "unverified": "yellow", "changed": "yellow", "mismatch": "red", "missing": "dim"}


def file_size(size: int | None) -> str:
    if size is None:
        return ""
    value, unit = float(size), "B"
    for larger in ("KB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def _with_warnings(action: Callable[[], object]) -> object:
    """Run ``action``, printing data warnings as one-line notes instead of Python warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    for warning in caught:
        err_console.print(f"warning: {warning.message}", markup=False, highlight=False, soft_wrap=True)
    return result


@data_app.command("list")
def list_() -> None:
    """Show every dataset manifest with its files: present, size, verified against its sha256."""
    from bench.data.manifest import all_manifests
    from bench.data.store import DataStore

    store = DataStore.default()
    manifests = list(all_manifests().values())
    files = {m.name: ([] if not m.files else store.status(m)) for m in manifests}
    width = max([len(status.entry.name) for found in files.values() for status in found], default=0)
    console.print(Text(f"data store: {store.root}", style="bold"), soft_wrap=True)
    for manifest in manifests:  # a block per manifest, not a table: names and files stay whole in 80 columns
        console.print(Text.assemble((manifest.name, "bold"), f" ({manifest.kind}, {manifest.format})"), soft_wrap=True)
        if not manifest.files:
            console.print("  simulated on first use", markup=False, highlight=False)
        for status in files[manifest.name]:
            state = status.state if status.entry.url or status.present else f"{status.state} (import only)"
            console.print(Text.assemble(f"  {status.entry.name.ljust(width)}  {file_size(status.size):>8}  ",
                                        (state, STYLES[status.state])), soft_wrap=True)


@data_app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Dataset or resource name (see `bench data list`).")],
    force: Annotated[bool, typer.Option("--force", help="Download again even files that are present and valid.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Download a dataset's files into the data store, checking each file's sha256.

    A failed or mismatching download leaves nothing behind; files already present and valid are kept.
    """
    from bench.data.manifest import find_manifest
    from bench.data.store import DataStore

    manifest = find_manifest(name)
    if not manifest.files:
        console.print(f"nothing to fetch: '{name}' is simulated on first use")
        return
    store = DataStore.default()
    statuses = _with_warnings(lambda: store.fetch(manifest, progress=progress, force=force))
    for status in statuses:
        pinned = "" if status.entry.sha256 else " (no sha256 pinned in the manifest: pin this one)"
        console.print(f"{status.state}: {status.path} sha256 {status.sha256}{pinned}", soft_wrap=True)


@data_app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="Dataset or resource name (see `bench data list`).")],
    file: Annotated[Path, typer.Argument(help="Your copy of the file (or the archive that holds it).")],
    role: Annotated[str, typer.Option(help="Which file of the manifest this is, for manifests with several.")] = "data",
) -> None:
    """Copy a file you already have into the data store, after checking it against the manifest's sha256.

    The copy is atomic: a file that fails its checksum is not imported and the store is unchanged.
    """
    from bench.data.manifest import find_manifest
    from bench.data.store import DataStore

    manifest = find_manifest(name)
    status = _with_warnings(lambda: DataStore.default().import_file(manifest, file, role=role))
    console.print(f"{status.state}: {status.path} sha256 {status.sha256}", soft_wrap=True)


@data_app.command()
def path() -> None:
    """Print the data store folder (BENCH_DATA_DIR, else the per-user data folder)."""
    console.print(str(paths.data_dir()), soft_wrap=True)
