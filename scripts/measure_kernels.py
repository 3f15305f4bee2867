"""How the values of the reference of ``bench check`` move with the CPU's numeric kernels, with and without the
pinned numeric profile of ``bench check``.

    python scripts/measure_kernels.py [--reference FILE] [--jobs 2]

Each setting emulates another CPU on this one (baseline ATen kernels, MKL's SSE2 branch, OpenBLAS's
oldest kernels with numpy's AVX2 paths). Every configuration of the reference is re-run under each
setting twice, on one thread: as the setting leaves it (unpinned) and under the profile (pinned, as
``bench check`` runs). Prints, per reference line, the reference mean and the value of each run, then
per setting the largest change and the lines beyond tolerance.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.core import numeric_env, paths
from bench.workflows import reference_check
from bench.workflows.execution import execute

SETTINGS = {
    "native": {},
    "ATen default": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "OpenBLAS Prescott": {"OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=paths.reference_file())
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    table = reference_check.read_reference(args.reference)
    specs, datasets = reference_check.run_specs(table, "cpu"), reference_check.prepared_datasets(table)
    columns, summary = {}, []
    for name, setting in SETTINGS.items():
        for pinned in (False, True):
            environment = {**setting, **numeric_env.profile_environment()} if pinned else setting
            label = f"{name}, {'pinned' if pinned else 'unpinned'}"
            print(f"running {label}", flush=True)
            runs = execute(specs, datasets, workers=args.jobs, environment=environment)
            verdicts = reference_check.compare(table, reference_check.by_config(table, runs))
            columns[label] = verdicts["now"].round(4)
            beyond = verdicts["verdict"].isin(["regressed", "improved"])
            summary.append({"setting": label, "largest |change|": round(verdicts["change"].abs().max(), 4),
                            "lines beyond tolerance": f"{int(beyond.sum())} of {len(verdicts)}"})
    lines = table[["dataset", "model", "preset", "seeds", "metric"]].assign(reference=table["mean"].round(4))
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(pd.concat([lines, pd.DataFrame(columns)], axis=1).to_string(index=False))
        print()
        print(pd.DataFrame(summary).to_string(index=False))


if __name__ == "__main__":
    main()
