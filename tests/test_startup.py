"""Quick answers stay quick: ``bench --help``, ``bench list`` and a mistyped option or value import none of
the heavy libraries (their imports take seconds on a loaded machine). Each case runs in a fresh process,
whose loaded modules are the evidence; the times themselves are ``benchmarks/test_startup.py``'s."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "pandas", "scipy", "anndata", "scanpy", "mlflow", "torch", "matplotlib", "sklearn", "optuna")
PROBE = """
import sys
sys.argv = ["bench", *sys.argv[1:]]
from bench.cli.app import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print(f"exit={{code}} loaded=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["--help"],
    ["list"],
    ["list", "metrics"],
    ["run", "--modle", "linear"],
    ["run", "--model", "linera"],
    ["run", "--model", "linear", "--split", "simulaton"],
    ["run", "--model", "linear", "--metrics", "pearsn"],
    ["leaderboard", "--metric", "pearsn"],
    ["leaderboard", "--split", "simulaton"],
], ids=" ".join)
def test_quick_answers_import_no_heavy_library(args, tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                          text=True, cwd=tmp_path)
    code, loaded = done.stderr.strip().splitlines()[-1].split()
    assert loaded == "loaded=", f"{' '.join(args)} imported {loaded.removeprefix('loaded=')}"
    assert code == ("exit=0" if args[0] in ("--help", "list") else "exit=2"), done.stderr
