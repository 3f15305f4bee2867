"""A worker process of ``bench.workflows.parallel``: end with its parent (whose pid is its first argument), run one
RunSpec read from a pickle file and write its result to another (a RunResult, or the BenchError that stopped it),
and its progress to a third."""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def end_with(parent: int) -> None:
    """End this process when ``parent``, the process that started it, ends, however it ends: by the kernel's
    parent-death signal on Linux, elsewhere by a thread that watches."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it ended before
        os._exit(1)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def main(parent: str, task_file: str, result_file: str, progress_file: str) -> None:
    end_with(int(parent))
    import torch
    from threadpoolctl import threadpool_limits

    from bench.core import atomic
    from bench.core.errors import BenchError
    from bench.core.progress import StateFile
    from bench.core.threads import set_interop
    from bench.data.knowledge import StoreGeneKnowledge
    from bench.workflows import runner

    spec, data_file, threads = pickle.loads(Path(task_file).read_bytes())
    prepared = pickle.loads(Path(data_file).read_bytes())
    torch.set_num_threads(threads)
    set_interop(torch, 1)
    try:
        with threadpool_limits(threads), StateFile(Path(progress_file)) as state:
            outcome = runner.run(spec, prepared, knowledge=StoreGeneKnowledge(), report=state.report,
                                 progress=state.phase)
    except BenchError as exc:
        outcome = exc
    with atomic.replacing(Path(result_file)) as temporary:
        temporary.write_bytes(pickle.dumps(outcome))


if __name__ == "__main__":
    main(*sys.argv[1:])
