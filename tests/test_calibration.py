"""The calibration study (``scripts/calibrate_statistics.py --quick``) end to end: a reduced run on the
simulator recovers the planted order and covers at moderate n, and writes the page with its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.reporting.statistics_page import FIGURES

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "calibrate_statistics.py"


def test_quick_calibration_recovers_the_planted_truth(tmp_path):
    env = {**os.environ, "BENCH_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["sigmas"][0] == 0 and sorted(found["sigmas"]) == found["sigmas"]
    assert found["ranking"]["1"]["ordered"] == 1.0  # about 40 test perturbations per seed: every seed in order
    assert all(found["ranking"]["1"][f"separated_{k}"] >= 0.8 for k in range(3))
    normal = found["replicates"]["normal (reference)"]
    assert 0.85 <= normal["expanded"][normal["n"].index(40)] <= 1.0
    text = (tmp_path / "statistics.md").read_text()
    assert "python scripts/calibrate_statistics.py --quick" in text
    assert all((tmp_path / "statistics" / name).stat().st_size > 1000 for name in FIGURES)
    assert all(f"statistics/{name}" in text for name in FIGURES)
