"""Pack the tracking store of the committed leaderboards' runs into one file git can hold, and unpack it
anywhere: an SQLite MLflow store, ``DIR/mlflow.db``, with its artifact folder ``DIR/mlruns`` beside it, as
``bench`` makes them for ``MLFLOW_TRACKING_URI=sqlite:///DIR/mlflow.db``.

    python scripts/leaderboard_runs.py pack DIR leaderboards/runs.tar.xz
    python scripts/leaderboard_runs.py unpack leaderboards/runs.tar.xz DIR

Packing copies the database with SQLite's backup (consistent while runs are being logged: a run still
running is packed as such, and ``bench run --resume`` runs it again). MLflow records absolute artifact
paths; the archive holds them under a placeholder, which unpacking replaces with DIR. Each run's predicted
cells (``predicted_cells.h5ad``, kept for ``bench export``) are left out: they are nearly all of a store's
size (12 MB a run on the simulator), and the leaderboard reads the predicted means only.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path

PLACEHOLDER = "@STORE@"
LEFT_OUT = "/predicted_cells.h5ad"  # the cells a model predicted: 99% of a store's bytes, and no leaderboard reads them
PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"))
DATABASE, ARTIFACTS = "mlflow.db", "mlruns"


def _replace_paths(database: Path, old: str, new: str) -> None:
    connection = sqlite3.connect(database)
    with connection:
        for table, column in PATH_COLUMNS:
            connection.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))
    connection.close()


def pack(store: Path, archive: Path) -> None:
    if not (store / DATABASE).is_file():
        sys.exit(f"error: {store / DATABASE} does not exist; give the folder of the store's {DATABASE}")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / DATABASE
        source, target = sqlite3.connect(store / DATABASE), sqlite3.connect(copy)
        source.backup(target)
        source.close()
        target.close()
        _replace_paths(copy, str(store.resolve()), PLACEHOLDER)
        partial = archive.with_name(f".{archive.name}.partial")
        with tarfile.open(partial, "w:xz") as tar:
            tar.add(copy, DATABASE)
            if (store / ARTIFACTS).is_dir():
                tar.add(store / ARTIFACTS, ARTIFACTS,
                        filter=lambda entry: None if entry.name.endswith(LEFT_OUT) else entry)
        partial.replace(archive)


def unpack(archive: Path, store: Path) -> None:
    if (store / DATABASE).exists():
        sys.exit(f"error: {store / DATABASE} exists; unpack into a new folder")
    store.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(store, filter="data")
    _replace_paths(store / DATABASE, PLACEHOLDER, str(store.resolve()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="DIR (holding mlflow.db and mlruns) into ARCHIVE (.tar.xz)")
    packing.add_argument("store", type=Path, metavar="DIR")
    packing.add_argument("archive", type=Path, metavar="ARCHIVE")
    unpacking = commands.add_parser("unpack", help="ARCHIVE into the new folder DIR")
    unpacking.add_argument("archive", type=Path, metavar="ARCHIVE")
    unpacking.add_argument("store", type=Path, metavar="DIR")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.store, args.archive)
    else:
        unpack(args.archive, args.store)


if __name__ == "__main__":
    main()
