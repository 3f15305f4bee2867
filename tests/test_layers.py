"""The package's layers (pyproject.toml, ``[tool.importlinter]``): each imports only from those below it."""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_layer_contract_is_kept():
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is not installed; install the dev extra: pip install -e '.[dev]' -c constraints.txt"
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
