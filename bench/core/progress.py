"""Progress of long work as it goes: rich bars in a terminal; plain timestamped lines otherwise (a CI
log, ``nohup``, a Slurm job), where a bar would show nothing until the end.

A run reports where it is as ``(phase, done, total)`` (``RunProgress.phase``) and its latest
validation value (``RunProgress.report``). In plain mode a run prints a line when it enters a phase
(unless its last line is under ``GAP_S`` old: quick runs print only their end), at most one line per
interval while it advances, and a heartbeat line after an interval of silence, so a log never goes
quiet for long while work is going on. The interval is ``INTERVAL_S``, or ``BENCH_PROGRESS_INTERVAL``
seconds when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.core import atomic
from bench.core.errors import BenchError

INTERVAL_S = 10.0
GAP_S = 2.0


def line_interval() -> float:
    """Seconds between a run's plain lines: ``BENCH_PROGRESS_INTERVAL``, else ``INTERVAL_S``."""
    value = os.environ.get("BENCH_PROGRESS_INTERVAL", "")
    if not value:
        return INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise BenchError(f"BENCH_PROGRESS_INTERVAL must be a number of seconds above 0, got {value!r}; "
                         "unset it for the default (10)")
    return seconds


def duration(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class State:
    """Where one run is: its phase, ``done`` of ``total`` steps in it (total None: unknown), a note."""

    phase: str = "starting"
    done: int = 0
    total: int | None = None
    note: str = ""

    def text(self) -> str:
        steps = f" {self.done}/{self.total}" if self.total and self.total > 1 else ""
        return f"{self.phase}{steps}" + (f" ({self.note})" if self.note else "")


class Display:
    """Runs in progress on a console; ``bars`` (default: whether the console is a terminal) picks rich
    bars or plain lines; ``unit`` names what is counted (runs, or a cluster's tasks); ``refresh`` is how
    many times a second bars are redrawn (a cluster's long tasks need few: each redraw costs CPU). Use it
    as a context manager; ``clock`` is for tests."""

    def __init__(self, console: Console, total_runs: int, bars: bool | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic, unit: str = "runs",
                 refresh: float = 10.0):
        self.console, self.total_runs, self.clock, self.unit = console, total_runs, clock, unit
        self.refresh = refresh
        self.interval = interval or line_interval()
        self.bars = console.is_terminal if bars is None else bars
        self._states: dict[object, tuple[str, State]] = {}
        self._printed: dict[object, float] = {}
        self._started: dict[object, float] = {}
        self._finished = 0
        self._note: tuple[str, float] = ("", float("-inf"))
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._progress: Progress | None = None
        self._tasks: dict[object, int] = {}

    def __enter__(self) -> Display:
        if self.bars:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True,
                                      refresh_per_second=self.refresh)
            self._progress.start()
            self._tasks["runs"] = self._progress.add_task(self.unit, total=self.total_runs)
        else:
            threading.Thread(target=self._heartbeat, daemon=True, name="bench-progress").start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._progress is not None:
            self._progress.stop()

    def start(self, key: object, label: str) -> None:
        with self._lock:
            self._states[key] = (label, State())
            self._started[key] = self._printed[key] = self.clock()
            if self._progress is not None:
                self._tasks[key] = self._progress.add_task(escape(label), total=None)

    def update(self, key: object, phase: str | None = None, done: int | None = None, total: int | None = None,
               note: str | None = None) -> None:
        """Change a run's state; a new phase resets its steps and note unless they are given."""
        with self._lock:
            if key not in self._states:
                return
            label, state = self._states[key]
            entered = phase is not None and phase != state.phase
            if entered:
                state.phase, state.done, state.total, state.note = phase, 0, None, ""
            if done is not None:
                state.done = done
            if total is not None:
                state.total = total
            if note is not None:
                state.note = note
            if self._progress is not None:
                self._progress.update(self._tasks[key], description=escape(f"{label}: {state.text()}"),
                                      completed=state.done, total=state.total)
            else:
                quiet = self.clock() - self._printed[key]
                if quiet >= self.interval or (entered and quiet >= min(GAP_S, self.interval)):
                    self._line(key)

    def finish(self, key: object, outcome: str) -> None:
        with self._lock:
            label, _ = self._states.pop(key, (str(key), State()))
            self._printed.pop(key, None)
            self._finished += 1
            took = duration(self.clock() - self._started.pop(key, self.clock()))
            if self._progress is not None:
                self._progress.remove_task(self._tasks.pop(key))
                self._progress.advance(self._tasks["runs"])
            else:
                done = f"{self._finished}/{self.total_runs} {self.unit} done"
                self._print(f"{label}: {outcome.lower()} in {took} ({done})")

    def note(self, text: str) -> None:
        """A line about the work as a whole (e.g. a cluster's queue): the overall bar's description, or a
        plain line when it changes, at most one per interval."""
        with self._lock:
            if self._progress is not None:
                self._progress.update(self._tasks["runs"], description=escape(text))
                return
            last, printed = self._note
            if text != last and self.clock() - printed >= self.interval:
                self._note = (text, self.clock())
                self._print(text)

    def _line(self, key: object) -> None:
        label, state = self._states[key]
        self._printed[key] = self.clock()
        self._print(f"{label}: {state.text()} [{duration(self.clock() - self._started[key])}]")

    def _print(self, text: str) -> None:
        self.console.print(f"{time.strftime('%H:%M:%S')} {text}", markup=False, highlight=False, soft_wrap=True)

    def heartbeat(self) -> None:
        """Print a line for every run silent for ``interval`` (the plain mode's thread calls it)."""
        with self._lock:
            for key in list(self._states):
                if self.clock() - self._printed[key] >= self.interval:
                    self._line(key)

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self.heartbeat()


class RunProgress:
    """One run's reporter, handed to ``runner.run``: ``phase`` for where it is, ``report`` for its
    validation value (also passed on to ``forward``, e.g. a sweep's pruning)."""

    def __init__(self, display: Display, key: object, label: str,
                 forward: Callable[[int, float], None] | None = None):
        self.display, self.key, self.forward = display, key, forward
        display.start(key, label)

    def phase(self, name: str, done: int = 0, total: int | None = None) -> None:
        self.display.update(self.key, name, done, total)

    def report(self, step: int, value: float) -> None:
        self.display.update(self.key, note=f"validation {value:.4g} at step {step}")
        if self.forward is not None:
            self.forward(step, value)


class StateFile:
    """A worker process's reporter (``bench.workflows.parallel``): its run's state as JSON in ``path``, replaced
    whole; written at once when the phase changes, else by a background thread at most every
    ``interval`` seconds (so a model may report every step at no cost, and its last state still lands).
    Use it as a context manager."""

    def __init__(self, path: Path, interval: float = 0.5):
        self.path, self.interval = path, interval
        self.state = State()
        self._dirty = False
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def __enter__(self) -> StateFile:
        threading.Thread(target=self._flush_loop, daemon=True, name="bench-progress-file").start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def phase(self, name: str, done: int = 0, total: int | None = None) -> None:
        with self._lock:
            entered = name != self.state.phase
            if entered:
                self.state.note = ""
            self.state.phase, self.state.done, self.state.total = name, done, total
            self._dirty = True
            if entered:
                self._write()

    def report(self, step: int, value: float) -> None:
        with self._lock:
            self.state.note = f"validation {value:.4g} at step {step}"
            self._dirty = True

    def _write(self) -> None:
        atomic.write_text(self.path, json.dumps(asdict(self.state)))
        self._dirty = False

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self._dirty:
                    self._write()


@contextlib.contextmanager
def busy(console: Console, text: str) -> Iterator[None]:
    """A spinner in a terminal; otherwise a timestamped line when the work starts and when it ends."""
    if console.is_terminal:
        with console.status(escape(text)):
            yield
        return
    stamp = time.strftime("%H:%M:%S")
    console.print(f"{stamp} {text} …", markup=False, highlight=False, soft_wrap=True)
    start = time.monotonic()
    yield
    console.print(f"{time.strftime('%H:%M:%S')} {text}: done in {duration(time.monotonic() - start)}",
                  markup=False, highlight=False, soft_wrap=True)
