"""``bench import-runs``: log the runs kept locally while the tracking store was away."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bench.cli.common import console


def import_runs(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="The folder of unlogged runs (./unlogged-runs), "
                                                                   "or one of its files.")],
) -> None:
    """Log to the tracking store the runs that bench kept locally when the store failed; each one
    logged is removed from the folder."""
    from bench.core.redaction import redact
    from bench.workflows import tracking, unlogged

    tracking.check_store()
    kept = unlogged.files(folder)
    for path in kept:
        run_id = tracking.import_run(path)
        console.print(f"logged {path.name} as run {run_id}", markup=False, highlight=False)
    console.print(f"{len(kept)} run(s) logged to {redact(tracking.tracking_uri())}", markup=False, highlight=False)
