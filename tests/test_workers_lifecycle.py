"""The worker processes of `bench run --jobs N` and their temporary folder end with the parent, however it ends
(issue 26): whole processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HANG_S, bench

# Each wait below is for an event (a file, a process's end) that comes in seconds on a quiet machine and can take
# minutes on a loaded one (two workers import torch); HANG_S only stops a hang.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

ADAPTERS = """
import os
import time
from pathlib import Path


class Blocking:
    def fit(self, train):
        Path(os.environ["STARTED"], str(os.getpid())).touch()
        time.sleep(3600)

    def predict(self, query):
        raise RuntimeError("unreachable")
"""


@pytest.fixture
def setting(tmp_path, workdir):
    """The environment of a `bench run` whose runs of card ``blocking`` block in ``fit`` after writing their
    worker's pid to ``STARTED``, with its own temporary folder (``TMPDIR``)."""
    cards, started, temporary = (tmp_path / name for name in ("cards", "started", "tmp"))
    for folder in (cards, started, temporary):
        folder.mkdir()
    (cards / "blocking.toml").write_text(
        'name = "blocking"\nadapter = "lifecycle_adapters:Blocking"\ndescription = "t"\ncitation = "t"\n')
    (tmp_path / "lifecycle_adapters.py").write_text(ADAPTERS)
    env = {**workdir["env"], "BENCH_CARDS_DIR": str(cards), "PYTHONPATH": str(tmp_path), "STARTED": str(started),
           "TMPDIR": str(temporary)}
    return env, started, temporary


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {HANG_S} s"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start_with_workers(env, cwd, started: Path) -> tuple[subprocess.Popen, list[int]]:
    """A `bench run --jobs 2` of two blocking runs, once both its workers are in ``fit``; their pids."""
    parent = subprocess.Popen([sys.executable, "-m", "bench", "run", "--model", "blocking", "--dataset", "synthetic",
                               "--split", "simulation", "--seeds", "1-2", "--jobs", "2", "--no-track"],
                              env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)

    def both_started() -> bool:
        assert parent.poll() is None, parent.stderr.read()
        return len(list(started.iterdir())) == 2

    wait_for(both_started, "two workers in fit")
    return parent, [int(path.name) for path in started.iterdir()]


def worker_folders(temporary: Path) -> list[Path]:
    return sorted(temporary.glob("bench-workers-*"))


def test_a_killed_parent_takes_its_workers_along_and_the_next_start_removes_its_folder(setting, tmp_path):
    env, started, temporary = setting
    parent, workers = start_with_workers(env, tmp_path, started)
    try:
        [abandoned] = worker_folders(temporary)
        parent.kill()
        parent.wait()
        wait_for(lambda: not any(alive(pid) for pid in workers), "end of the workers of the killed parent")
        assert abandoned.exists()  # nothing runs in a process killed by SIGKILL: the next start removes it
    finally:
        for pid in filter(alive, workers):
            os.kill(pid, signal.SIGKILL)
    owned = temporary / f"bench-workers-{os.getpid()}-alive"  # a folder whose owner (this process) is alive
    owned.mkdir()
    out = bench("run", "--model", "mean", "--dataset", "synthetic", "--split", "simulation", "--jobs", "2",
                "--no-track", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert worker_folders(temporary) == [owned]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda signum: signum.name)
def test_a_stopped_parent_ends_its_workers_and_removes_its_folder(setting, tmp_path, signum):
    env, started, temporary = setting
    parent, workers = start_with_workers(env, tmp_path, started)
    try:
        assert len(worker_folders(temporary)) == 1
        parent.send_signal(signum)
        parent.communicate(timeout=HANG_S)
        assert parent.returncode != 0
        assert not any(alive(pid) for pid in workers)
        assert worker_folders(temporary) == []
    finally:
        parent.kill()
        for pid in filter(alive, workers):
            os.kill(pid, signal.SIGKILL)
