"""A model's own virtual environment, for a package that cannot share bench's (CellFlow pins scikit-learn
1.5.1 and scipy < 1.16; bench needs newer ones).

It is built once from the card's pinned requirements file, under ``BENCH_ENVS_DIR``, in a folder named by
that file's name, the Python version and the file's sha256: a changed file or another Python builds a new
environment and never changes one a run may be using. A build holds a lock (two runs that need it at once
build it once) and writes ``bench-environment.json`` last, so a build that was interrupted or failed is
never taken for a finished one: the next build clears its folder and starts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import venv
import warnings
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from bench.core import paths
from bench.core.api import no_progress
from bench.core.errors import BenchWarning, ModelError
from bench.core.outputs import writing

MARKER = "bench-environment.json"
PHASE = "creating the environment"
# What pip says when it cannot install a package: the package is the first group.
PIP_FAILURES = (
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
    re.compile(r"Failed (?:to build|building wheel for) (\S+)"),
    re.compile(r"Cannot install (\S+)"),
)
# What a build must not inherit from bench's process: its package path, and pip settings meant for bench.
DROPPED_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PIP_CONSTRAINT", "PIP_REQUIREMENT", "PIP_TARGET", "PIP_PREFIX")


def stream_lines(command: list[str], on_line: Callable[[str], None], **popen) -> int:
    """Run ``command`` with its stdout passed to ``on_line`` line by line as it comes; its exit code. The
    process is killed if this caller stops early (an error, Ctrl-C), so it never outlives the call."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, **popen)
    try:
        for line in process.stdout:
            on_line(line)
        return process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def isolated_environment() -> dict[str, str]:
    """This process's environment variables less those that would mix bench's packages or pip settings
    into another environment; user site-packages are off."""
    variables = {k: v for k, v in os.environ.items() if k not in DROPPED_VARIABLES}
    variables["PYTHONNOUSERSITE"] = "1"
    return variables


class ModelEnvironment:
    """The environment of one requirements file for this Python: where it is, whether it is built, building it."""

    def __init__(self, requirements: Path, card: str):
        self.requirements = requirements
        self.card = card
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
        version = f"py{sys.version_info.major}.{sys.version_info.minor}"
        self.folder = paths.environments_dir() / f"{requirements.stem}-{version}-{digest[:12]}"
        self.digest = digest

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    @property
    def log(self) -> Path:
        """pip's output of the last build, beside the environment (kept after a failed build)."""
        return self.folder.with_name(self.folder.name + ".log")

    def ready(self) -> bool:
        return (self.folder / MARKER).is_file() and self.python.exists()

    def packages(self) -> int:
        """How many packages the requirements file pins (the build's progress total)."""
        lines = self.requirements.read_text().splitlines()
        return sum(1 for line in lines if line.strip() and not line.lstrip().startswith(("#", "-")))

    def create(self, progress: Callable[..., None] = no_progress) -> bool:
        """Build the environment unless it is built (saying so in one warning line first); True if this call
        built it. Another process building it meanwhile is waited for."""
        with writing(self.folder.parent, "the environments folder (BENCH_ENVS_DIR)"):
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.folder) + ".lock"):
                if self.ready():
                    return False
                warnings.warn(f"building the environment of model '{self.card}' in {self.folder} (once; minutes)",
                              BenchWarning)
                started = time.monotonic()
                shutil.rmtree(self.folder, ignore_errors=True)
                progress(PHASE, 0, self.packages())
                venv.EnvBuilder(with_pip=True, clear=True).create(self.folder)
                self._install(progress)
                marker = {"requirements": str(self.requirements), "sha256": self.digest,
                          "python": sys.version.split()[0], "card": self.card,
                          "seconds": round(time.monotonic() - started, 1)}
                (self.folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
                return True

    def _install(self, progress: Callable[..., None]) -> None:
        command = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                   "-r", str(self.requirements)]
        total, collected = self.packages(), [0]
        with open(self.log, "w") as log:
            def seen(line: str) -> None:
                log.write(line)
                if line.startswith("Collecting "):
                    collected[0] += 1
                    progress(PHASE, min(collected[0], total), total)

            code = stream_lines(command, seen, stderr=subprocess.STDOUT, env=isolated_environment())
        if code:
            raise ModelError(f"could not build the environment of model '{self.card}': {self._failure()}; "
                             f"pip's output is in {self.log}; retry with `bench env create {self.card}`")

    def _failure(self) -> str:
        """Which package pip failed on, from its output."""
        text = self.log.read_text(errors="replace")
        for pattern in PIP_FAILURES:
            found = pattern.search(text)
            if found:
                return f"pip could not install {found.group(1).rstrip('.,;')}"
        errors = [line.strip() for line in text.splitlines() if line.startswith("ERROR:")]
        return f"pip failed ({errors[-1] if errors else 'no error message'})"

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file() and not f.is_symlink())
