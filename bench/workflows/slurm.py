"""``--executor slurm``: the runs of ``bench run`` and ``bench check``, and the workers of ``bench sweep``, as one
Slurm job array submitted through submitit, and the watch that follows it (``bench jobs FOLDER`` later).

A submission is a folder on a filesystem every node sees: submitit's files (the sbatch script, each
task's pickled call, result and logs, named by ``<array>_<task>``), each task's progress file, and
``submission.pickle``, the record a later ``bench jobs`` follows. The tasks (``slurm_tasks``) load their
dataset from the data store, run through the same code as local runs, and log to the tracking store.

The watch reads the tasks' result and progress files every ``POLL_S`` and Slurm's states (sacct,
through submitit's watcher) every ``SACCT_S``. A task that Slurm ends without a result (time limit,
out of memory, preemption, ``scancel``, node failure) is a FAILED run whose error is Slurm's state,
recorded once (a claim file per task) by whichever watch sees it first.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.core import atomic
from bench.core.api import RunResult, now_ms
from bench.core.errors import BenchError
from bench.core.progress import Display
from bench.workflows import tracking
from bench.workflows.slurm_settings import SlurmSettings

SUBMISSION = "submission.pickle"
POLL_S = 2.0  # how often the watch reads result and progress files
SACCT_S = 15.0  # how often it asks Slurm (sacct) for the tasks' states
RESULT_GRACE_S = 20.0  # how long a task Slurm reports ended may take to show its result file (shared filesystems lag)
# Slurm states of a task that may still run or write its result (sacct's "State"); any other state is its end.
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED",
                    "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT", "UNKNOWN"})
HINTS = {
    "TIMEOUT": "its time limit ran out; ask for more with --slurm time=HH:MM:SS",
    "OUT_OF_MEMORY": "it ran out of memory; ask for more with --slurm mem=64G",
    "CANCELLED": "it was cancelled (scancel)",
    "PREEMPTED": "Slurm preempted it for another job",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "its deadline passed",
    "FAILED": "its process ended before writing a result",
}
REQUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")  # a running task seen in these was requeued
WARNING_S = 90  # submitit's signal_delay_s: how long before the time limit a task is warned
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")
LOCAL_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "ext2", "ext3", "ext4", "xfs", "btrfs", "overlay", "zfs", "f2fs"})


@dataclass
class Task:
    """One array task: ``call`` runs on the node; ``failed`` (runs only) is the FAILED run recorded when
    Slurm ends the task without a result."""

    label: str
    call: Callable[[], object]
    failed: RunResult | None = None


@dataclass
class Outcome:
    """How a task ended: ``value`` is what it returned; ``error`` why it returned nothing (its exception's
    last line, or Slurm's end state with a hint)."""

    value: object = None
    error: str | None = None


@dataclass
class Submission:
    """What was submitted, for the watch and for ``bench jobs``: ``kind`` (run, check, sweep) picks how
    the end is shown, from ``context``."""

    folder: Path
    kind: str
    tasks: list[Task]
    track: bool
    context: dict = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)

    @property
    def array_id(self) -> str:
        return self.job_ids[0].split("_")[0] if self.job_ids else ""

    def progress_file(self, index: int) -> Path:
        return progress_path(self.folder, index)

    def log_file(self, index: int) -> Path:
        return self.folder / f"{self.job_ids[index]}_0_log.err"

    def save(self) -> None:
        with atomic.replacing(self.folder / SUBMISSION) as temporary:
            temporary.write_bytes(pickle.dumps(self))

    @classmethod
    def load(cls, folder: Path) -> Submission:
        path = Path(folder) / SUBMISSION
        try:
            return pickle.loads(path.read_bytes())
        except FileNotFoundError:
            raise BenchError(f"{folder} holds no submission ({SUBMISSION}); give the folder that `--executor slurm` "
                             "printed") from None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise BenchError(f"cannot read the submission in {folder} ({type(exc).__name__}: {exc})".splitlines()[0]
                             + "; it may come from another version of bench") from None


def progress_path(folder: Path, index: int) -> Path:
    """Where task ``index`` of the submission in ``folder`` writes its progress (``StateFile``)."""
    return folder / f"progress-{index}.json"


def require_slurm() -> None:
    """Refuse ``--executor slurm`` where Slurm's commands are not on PATH."""
    missing = [command for command in ("sbatch", "srun", "sacct") if shutil.which(command) is None]
    if missing:
        raise BenchError(f"--executor slurm needs Slurm's {', '.join(missing)} on PATH, and this machine has none; "
                         "run on a login node of your cluster (or load Slurm's module), or use --executor local")


def new_folder(settings: SlurmSettings, kind: str) -> Path:
    """A fresh submission folder under the settings' ``folder``."""
    base = Path(settings.folder).expanduser().resolve()
    return base / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def request(submission: Submission, parameters: dict) -> dict:
    """The parameters of the array of ``submission``: ``parameters``, and unless a task can be checkpointed
    (a sweep worker), SIGURG, which a process ignores, in place of submitit's warning before the time
    limit (SIGUSR2, meant for checkpointing, whose default action would end the task at once if it came
    before submitit's handler is set, as it may under a short limit). A run cannot resume where it
    stopped: it uses all its time, and Slurm's TIMEOUT is how it ends."""
    if any(hasattr(task.call, "checkpoint") for task in submission.tasks):
        return parameters
    extra = {**parameters.get("additional_parameters", {}), "signal": f"URG@{WARNING_S}"}
    return {**parameters, "additional_parameters": extra}


def sbatch_script(submission: Submission, parameters: dict) -> str:
    """The sbatch script submitit writes for the array of ``submission`` (``--dry-run`` shows it).
    submitit has no public call for it: this is ``SlurmExecutor``'s own (submitit is pinned exactly)."""
    from submitit.slurm.slurm import _make_sbatch_string

    parameters = request(submission, parameters)
    command = f"{_executor(submission.folder, parameters)._submitit_command_str}"
    return _make_sbatch_string(command=command, folder=submission.folder, map_count=len(submission.tasks),
                               **parameters)


def test_request(submission: Submission, parameters: dict) -> str:
    """Ask Slurm whether it would take the array (``sbatch --test-only``): its refusal of an unknown
    partition, account or QoS, or a time over the partition's limit, is a ``BenchError`` quoting it.
    Returns Slurm's answer (when the array would start)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="bench-test-") as script:
        script.write(sbatch_script(submission, parameters))
        script.flush()
        answer = subprocess.run(["sbatch", "--test-only", script.name], capture_output=True, text=True, timeout=120)
    said = "; ".join(line.strip() for line in (answer.stderr + answer.stdout).splitlines() if line.strip())
    if answer.returncode != 0:
        raise BenchError(f"Slurm refused the request: {said}; fix the [slurm] table of your config or the --slurm "
                         "options")
    return said


def submit(submission: Submission, parameters: dict, environment: dict[str, str]) -> None:
    """Submit every task as one job array (one sbatch call), with ``environment`` added to what the
    tasks inherit; record the job ids and save the submission."""
    from submitit.core.utils import FailedJobError, environment_variables

    submission.folder.mkdir(parents=True, exist_ok=True)
    executor = _executor(submission.folder, request(submission, parameters))
    try:
        with environment_variables(**environment):
            jobs = executor.submit_array([task.call for task in submission.tasks])
    except FailedJobError as exc:
        said = "; ".join(line.strip() for line in str(exc).splitlines() if "error" in line.lower()) or str(exc)
        raise BenchError(f"sbatch refused the array: {said}") from None
    submission.job_ids = [job.job_id for job in jobs]
    submission.save()


def _executor(folder: Path, parameters: dict):
    from submitit import SlurmExecutor

    executor = SlurmExecutor(folder=folder)
    executor.update_parameters(**parameters)
    return executor


def watch(submission: Submission, display: Display, done: Callable[[int, Outcome], None]) -> None:
    """Follow every task until it ends: ``display`` shows each from its start (phase from its progress
    file) and the queue; ``done(index, outcome)`` hears each end. A task's ``BenchError`` (bad input)
    cancels the array and is raised."""
    from submitit.core.utils import JobPaths
    from submitit.slurm.slurm import SlurmInfoWatcher

    states = SlurmInfoWatcher(delay_s=int(SACCT_S))
    for job_id in submission.job_ids:
        states.register_job(job_id)
    paths = [JobPaths(submission.folder, job_id=job_id, task_id=0) for job_id in submission.job_ids]
    waiting, running = set(range(len(submission.tasks))), set()
    ended_at: dict[int, float] = {}
    seen: dict[int, bytes] = {}
    last: dict[int, str] = {}
    recorded = {index: text for index in waiting if (text := _recorded(submission, index))}  # by an earlier watch
    asked = float("-inf")
    while waiting or running:
        if time.monotonic() - asked >= SACCT_S:
            states.update()
            asked = time.monotonic()
        for index in sorted(waiting | running):
            state = states.get_state(submission.job_ids[index], mode="cache").split()[0]
            progress = _read_bytes(submission.progress_file(index))
            if index in waiting and (state == "RUNNING" or progress or paths[index].result_pickle.exists()):
                waiting.discard(index)
                running.add(index)
                display.start(index, submission.tasks[index].label)
            if progress and progress != seen.get(index):
                seen[index] = progress
                display.update(index, **_state(progress))
            if index in running and state in REQUEUED and last.get(index) not in REQUEUED:
                display.update(index, f"requeued by Slurm ({state.lower()}), waiting to start again")
            last[index] = state
            outcome = Outcome(error=recorded[index]) if index in recorded else \
                _outcome(paths[index], submission, index, state, ended_at)
            if outcome is None:
                continue
            if index in waiting:  # it ended before it was seen running (e.g. cancelled while pending)
                display.start(index, submission.tasks[index].label)
            waiting.discard(index)
            running.discard(index)
            if isinstance(outcome.value, BenchError):
                cancel(submission)
                raise outcome.value
            done(index, outcome)
            display.finish(index, "finished" if outcome.error is None else "failed")
        finished = len(submission.tasks) - len(waiting) - len(running)
        display.note(f"slurm job {submission.array_id}: {len(waiting)} pending, {len(running)} running, "
                     f"{finished} ended")
        if waiting or running:
            time.sleep(POLL_S)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes() or None
    except FileNotFoundError:
        return None


def _state(progress: bytes) -> dict:
    try:
        return json.loads(progress)
    except ValueError:
        return {}


def _outcome(paths, submission: Submission, index: int, state: str, ended_at: dict[int, float]) -> Outcome | None:
    """The task's outcome once it has one: its result file, or Slurm's end state after a grace period
    for the result file to appear; None while it may still run."""
    from submitit.core.utils import pickle_load

    if paths.result_pickle.exists():
        kind, value = pickle_load(paths.result_pickle)
        if kind == "success":
            return Outcome(value=value)
        lines = [line.strip() for line in str(value).splitlines() if line.strip()]
        return Outcome(error=(lines[-1] if lines else "the task failed") + f" (log: {submission.log_file(index)})")
    if state in ACTIVE:
        ended_at.pop(index, None)
        return None
    first = ended_at.setdefault(index, time.monotonic())
    if time.monotonic() - first < RESULT_GRACE_S:
        return None
    hint = HINTS.get(state, "")
    return Outcome(error=f"Slurm ended the task: {state}" + (f" ({hint})" if hint else "")
                   + f"; log: {submission.log_file(index)}")


def record_failure(submission: Submission, index: int, outcome: Outcome) -> RunResult | None:
    """The FAILED run of a run task that ended without a result, logged to the tracking store once: the
    first watch to claim the task (a file holding the error, which later watches read back) logs it.
    None for other tasks."""
    template = submission.tasks[index].failed
    if template is None or outcome.error is None:
        return None
    result = replace(template, status="FAILED", error=outcome.error, ended_ms=now_ms())
    if _claim(_record_path(submission, index), outcome.error) and submission.track:
        from bench.workflows.slurm_tasks import JOB_TAG

        tracking.log_run(result, extra_tags={JOB_TAG: submission.job_ids[index]})
    return result


def _record_path(submission: Submission, index: int) -> Path:
    return submission.folder / f"failed-{index}.txt"


def _recorded(submission: Submission, index: int) -> str | None:
    try:
        return _record_path(submission, index).read_text() or None
    except FileNotFoundError:
        return None


def _claim(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists (then False)."""
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return True


def cancel(submission: Submission) -> None:
    if submission.array_id:
        subprocess.run(["scancel", submission.array_id], capture_output=True, timeout=60)


def node_local_warning(partition: str | None, places: dict[str, Path]) -> str | None:
    """A warning when a place the tasks must share (the tracking store's SQLite file, the submission
    folder) lies on this machine's own disk while the partition has nodes other than this one."""
    local = [f"{what} {path}" for what, path in places.items() if _node_local(path)]
    if not local:
        return None
    command = ["sinfo", "-h", "-N", "-o", "%N", *(["-p", partition] if partition else [])]
    try:
        nodes = set(subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        return None
    host = socket.gethostname()
    if not nodes - {host, host.split(".")[0]}:
        return None
    return (f"warning: {' and '.join(local)} lie on this machine's own disk, but tasks may run on other nodes "
            f"({', '.join(sorted(nodes)[:3])}{'…' if len(nodes) > 3 else ''}), which do not see this disk; use a "
            "shared filesystem (--slurm folder=/shared/… and MLFLOW_TRACKING_URI=sqlite:////shared/…/mlflow.db), "
            "or a tracking server (http://… or postgresql://…)")


def _node_local(path: Path) -> bool:
    """Whether ``path`` lies in a node-local folder (/tmp, /dev/shm, …) or on a local filesystem type."""
    resolved = str(Path(path).resolve())
    if any(resolved == top or resolved.startswith(top + "/") for top in NODE_LOCAL):
        return True
    best, kind = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and (resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/")) \
                and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind in LOCAL_FILESYSTEMS


def store_path() -> Path | None:
    """The tracking store's SQLite file, when it is one."""
    from sqlalchemy.engine import make_url

    uri = tracking.tracking_uri()
    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    return Path(database) if database not in (None, "", ":memory:") else None
