"""Long work reports where it is: bars in a terminal, timestamped lines in a log (CI, nohup, Slurm),
from the harness's phases, the models' own phases and worker processes alike."""

from __future__ import annotations

import io
import json
import re
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import adapter_catalog, bench
from rich.console import Console

from bench.core import progress, registry
from bench.core.errors import BenchError
from bench.data.datasets import load_dataset
from bench.workflows import runner

STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def plain(clock: Clock, runs: int = 2) -> tuple[progress.Display, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    return progress.Display(console, runs, interval=10.0, clock=clock), out


def lines(out: io.StringIO) -> list[str]:
    return [STAMP.sub("", line) for line in out.getvalue().splitlines()]


def test_plain_lines_are_timestamped_and_quick_phases_stay_quiet():
    clock = Clock()
    display, out = plain(clock)
    display.start("a", "scbig seed 1")
    display.update("a", "preparing the split")
    display.update("a", "fitting")  # under GAP_S after the start: no line
    assert out.getvalue() == ""
    clock.now += 3
    display.update("a", "pre-training the autoencoder", 0, 100)
    clock.now += 1
    display.update("a", done=5)  # advancing within the interval: no line
    clock.now += 10
    display.update("a", done=60, note="validation 0.5 at step 60")
    display.finish("a", "FINISHED")
    assert all(STAMP.match(line) for line in out.getvalue().splitlines())
    assert lines(out) == [
        "scbig seed 1: pre-training the autoencoder 0/100 [3s]",
        "scbig seed 1: pre-training the autoencoder 60/100 (validation 0.5 at step 60) [14s]",
        "scbig seed 1: finished in 14s (1/2 runs done)",
    ]


def test_a_queue_note_is_a_line_when_it_changes_at_most_once_an_interval():
    clock = Clock()
    display, out = plain(clock)
    display.note("slurm job 7: 2 pending, 0 running, 0 ended")
    display.note("slurm job 7: 2 pending, 0 running, 0 ended")
    clock.now += 4
    display.note("slurm job 7: 1 pending, 1 running, 0 ended")  # changed within the interval: not yet
    clock.now += 7
    display.note("slurm job 7: 1 pending, 1 running, 0 ended")
    clock.now += 30
    display.note("slurm job 7: 1 pending, 1 running, 0 ended")  # unchanged: no line
    assert lines(out) == ["slurm job 7: 2 pending, 0 running, 0 ended", "slurm job 7: 1 pending, 1 running, 0 ended"]


def test_a_silent_run_gets_a_heartbeat_line():
    clock = Clock()
    display, out = plain(clock)
    display.start("a", "gears seed 2")
    display.update("a", "training", 3, 20)
    clock.now += 9
    display.heartbeat()
    assert out.getvalue() == ""
    clock.now += 2
    display.heartbeat()
    assert lines(out) == ["gears seed 2: training 3/20 [11s]"]


def test_plain_mode_prints_heartbeats_from_its_own_thread():
    out = io.StringIO()
    display = progress.Display(Console(file=out, force_terminal=False, width=200), 1, interval=0.05)
    with display:
        display.start("a", "slow seed 1")
        display.update("a", "fitting")
        for _ in range(200):
            if "slow seed 1: fitting" in out.getvalue():
                break
            time.sleep(0.01)
    assert "slow seed 1: fitting" in out.getvalue()


def test_a_terminal_shows_bars_not_lines():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress.Display(console, 1) as display:
        display.start("a", "cpa [fast] seed 1")
        display.update("a", "training", 7, 50, note="validation -0.3 at step 7")
        task = display._progress.tasks[-1]
        assert (task.completed, task.total) == (7, 50)
        display._progress.refresh()
        assert "cpa [fast] seed 1: training 7/50 (validation -0.3 at step 7)" in out.getvalue()  # not markup
        display.finish("a", "FINISHED")
        assert display._progress.tasks[0].completed == 1  # the runs bar
    assert not any(STAMP.match(line) for line in out.getvalue().splitlines())


def test_busy_prints_start_and_end_in_a_log():
    out = io.StringIO()
    with progress.busy(Console(file=out, force_terminal=False, width=200), "ranking DE genes"):
        pass
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()] == [
        "ranking DE genes …", "ranking DE genes: done in 0s"]


def test_a_state_file_is_written_at_once_on_a_new_phase_and_by_its_thread_within_one(tmp_path):
    path = tmp_path / "progress.json"
    state = progress.StateFile(path, interval=0.05)
    state.phase("fitting")
    assert json.loads(path.read_text()) == {"phase": "fitting", "done": 0, "total": None, "note": ""}
    state.phase("fitting", 1, 10)  # same phase: left to the thread, which is not running
    assert json.loads(path.read_text())["done"] == 0
    state.phase("predicting test", 0, 2)
    assert json.loads(path.read_text()) == {"phase": "predicting test", "done": 0, "total": 2, "note": ""}
    with state:
        state.phase("predicting test", 1, 2)
        state.report(4, 0.5)
        for _ in range(500):
            if json.loads(path.read_text())["done"] == 1:
                break
            time.sleep(0.01)
    assert json.loads(path.read_text()) == {"phase": "predicting test", "done": 1, "total": 2,
                                            "note": "validation 0.5 at step 4"}


def test_two_state_files_on_one_path_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "progress.json"
    writers = [progress.StateFile(path) for _ in range(4)]

    def write(state):
        for i in range(300):
            state.phase(f"phase {i}")

    with ThreadPoolExecutor(len(writers)) as pool:
        list(pool.map(write, writers))
    assert json.loads(path.read_text())["phase"] == "phase 299"
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_the_line_interval_can_be_set_and_nonsense_is_refused(monkeypatch, workdir):
    monkeypatch.delenv("BENCH_PROGRESS_INTERVAL", raising=False)
    assert progress.line_interval() == progress.INTERVAL_S
    monkeypatch.setenv("BENCH_PROGRESS_INTERVAL", "30")
    assert progress.line_interval() == 30.0
    for bad in ("soon", "-1", "0", "nan"):
        monkeypatch.setenv("BENCH_PROGRESS_INTERVAL", bad)
        with pytest.raises(BenchError, match="BENCH_PROGRESS_INTERVAL must be a number of seconds above 0"):
            progress.line_interval()
    out = bench("run", "--model", "mean", "--dataset", "synthetic", "--no-track",
                env={**workdir["env"], "BENCH_PROGRESS_INTERVAL": "soon"}, cwd=workdir["cwd"])
    assert out.returncode == 2 and out.stderr.startswith("error: BENCH_PROGRESS_INTERVAL") and "Traceback" not in out.stderr


def test_durations_read_as_people_write_them():
    assert [progress.duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m05s", "1h02m"]


CHATTY = textwrap.dedent(
    '''
    import time
    import pandas as pd
    from bench.core.api import Prediction

    class Chatty:
        def fit(self, train):
            for epoch in range(3):
                train.progress("warming up", epoch, 3)
            train.report(3, 0.25)
            time.sleep(float(__import__("os").environ.get("CHATTY_SLEEP", "0")))
        def predict(self, query):
            query.progress("solving", 0, len(query.conditions))
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))
    '''
)


@pytest.fixture
def chatty(tmp_path, monkeypatch):
    return adapter_catalog(tmp_path, monkeypatch, "chatty_adapter", CHATTY, {"chatty": "Chatty"})


def test_the_runner_passes_on_its_phases_and_the_models(small_synthetic, tmp_path, chatty):
    path = tmp_path / "progress_screen.h5ad"
    small_synthetic.write_h5ad(path)
    prepared = runner.PreparedDataset.of(load_dataset(path, counts=False))
    heard = []
    result = runner.run(runner.RunSpec(registry.find_card("chatty"), {}, prepared.name, "simulation", 1), prepared,
                        progress=lambda phase, done=0, total=None: heard.append((phase, done, total)))
    assert result.ok, result.error
    phases = list(dict.fromkeys(phase for phase, _, _ in heard))
    assert phases == ["preparing the split", "fitting", "warming up", "predicting test", "solving", "scoring test",
                      "predicting val", "scoring val"]
    assert ("warming up", 2, 3) in heard


def test_logging_a_finished_run_shows_as_its_own_phase(small_synthetic, tmp_path, chatty):
    """Logging to a fresh store takes many seconds: they are not the last phase's ("scoring val")."""
    from bench.workflows.execution import execute
    from bench.workflows.tracking import LOGGING

    path = tmp_path / "progress_screen.h5ad"
    small_synthetic.write_h5ad(path)
    prepared = runner.PreparedDataset.of(load_dataset(path, counts=False))
    clock = Clock()
    display, out = plain(clock, runs=1)

    def logging(result) -> None:
        clock.now += 30
        display.heartbeat()

    spec = runner.RunSpec(registry.find_card("chatty"), {}, prepared.name, "simulation", 1)
    execute([spec], {prepared.name: prepared}, done=logging, display=display, label=lambda _: "chatty seed 1",
            done_phase=LOGGING)
    assert f"chatty seed 1: {LOGGING} [30s]" in lines(out)


@pytest.mark.slow
def test_bench_run_in_a_log_shows_worker_phases(workdir, tmp_path):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "chatty.toml").write_text('name = "chatty"\nadapter = "chatty_adapter:Chatty"\ndescription = "t"\n'
                                       'citation = "t"\n')
    (tmp_path / "chatty_adapter.py").write_text(CHATTY)
    env = {**workdir["env"], "BENCH_CARDS_DIR": str(cards), "PYTHONPATH": str(tmp_path), "CHATTY_SLEEP": "3",
           "BENCH_PROGRESS_INTERVAL": "1"}
    out = bench("run", "--model", "chatty", "--dataset", "synthetic", "--seeds", "1-2", "--jobs", "2", "--no-track",
                cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    shown = [STAMP.sub("", line) for line in out.stdout.splitlines() if STAMP.match(line)]
    for seed in (1, 2):
        assert any(line.startswith(f"chatty seed {seed}: warming up 2/3 (validation 0.25 at step 3) [")
                   for line in shown), shown
        assert any(re.match(rf"chatty seed {seed}: finished in \d+s \([12]/2 runs done\)", line) for line in shown)
    assert "ranking DE genes of synthetic (cached after the first run): done in" in out.stdout


FENCED = textwrap.dedent(
    '''
    import tempfile, time
    from pathlib import Path
    import pandas as pd
    from bench.core.api import Prediction
    from bench.core.isolated_import import isolated

    class Fenced:
        """A model whose library runs inside ``isolated`` (its prints discarded), as GEARS, Scouter and biolord do."""
        def fit(self, train):
            with isolated(train.seed, Path(tempfile.mkdtemp())):
                print("a library's own chatter")
                for epoch in range(1, 4):
                    train.progress("training", epoch, 3)
                    time.sleep(1.0)
        def predict(self, query):
            return Prediction(pd.DataFrame(0.0, index=query.conditions, columns=query.genes))
    '''
)


@pytest.mark.slow
def test_progress_lines_go_on_while_a_fenced_library_trains(workdir, tmp_path):
    """``isolated`` discards the library's output by redirecting the process's stdout; bench's own progress
    lines must still reach the log meanwhile (they were swallowed for the whole fit)."""
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "fenced.toml").write_text('name = "fenced"\nadapter = "fenced_adapter:Fenced"\ndescription = "t"\n'
                                       'citation = "t"\n')
    (tmp_path / "fenced_adapter.py").write_text(FENCED)
    env = {**workdir["env"], "BENCH_CARDS_DIR": str(cards), "PYTHONPATH": str(tmp_path),
           "BENCH_PROGRESS_INTERVAL": "0.5"}
    out = bench("run", "--model", "fenced", "--dataset", "synthetic", "--seeds", "1", "--no-track", cwd=tmp_path,
                env=env)
    assert out.returncode == 0, out.stderr
    shown = [STAMP.sub("", line) for line in out.stdout.splitlines() if STAMP.match(line)]
    assert any(line.startswith("fenced seed 1: training 2/3 [") for line in shown), shown
    assert "a library's own chatter" not in out.stdout + out.stderr
