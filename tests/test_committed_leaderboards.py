"""The committed leaderboards are what ``bench leaderboard`` makes from the committed runs: the store in
``leaderboards/runs.tar.xz`` (``scripts/leaderboard_runs.py``) unpacked, the command run as the README gives it,
with empty caches under the pinned numeric profile, and every file compared byte for byte. A change that
moves any number, row, note or pixel of a committed board fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import numeric_env

ROOT = Path(__file__).parents[1]
REBUILT = ["synthetic"]  # the datasets whose boards the archive holds every run of


@pytest.mark.slow
@pytest.mark.parametrize("dataset", REBUILT)
def test_a_committed_leaderboard_rebuilds_byte_identical_from_the_committed_runs(dataset, tmp_path):
    store = tmp_path / "store"
    unpacked = subprocess.run([sys.executable, str(ROOT / "scripts" / "leaderboard_runs.py"), "unpack",
                               str(ROOT / "leaderboards" / "runs.tar.xz"), str(store)], capture_output=True, text=True)
    assert unpacked.returncode == 0, unpacked.stderr
    # the pinned numeric profile (AVX2 kernels, one thread): the simulated dataset and the bootstrap come out
    # as on the machines that made the committed boards, whatever this CPU's wider kernels
    env = {**os.environ, **numeric_env.profile_environment(), "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
           "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "bench", "leaderboard", "--dataset", dataset], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    committed = sorted(path.name for path in (ROOT / "leaderboards").glob(f"{dataset}[._]*"))
    rebuilt = sorted(path.name for path in (tmp_path / "leaderboards").iterdir())
    assert rebuilt == committed
    different = [name for name in committed
                 if (tmp_path / "leaderboards" / name).read_bytes() != (ROOT / "leaderboards" / name).read_bytes()]
    assert different == []
