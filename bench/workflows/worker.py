"""A worker process of ``bench.workflows.parallel``: run one RunSpec read from a pickle file and write its result
to another (a RunResult, or the BenchError that stopped it), and its progress to a third."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def main(task_file: str, result_file: str, progress_file: str) -> None:
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
