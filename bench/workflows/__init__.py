"""The workflows layer: one run, many runs (serial or in workers), tracking in MLflow, sweeps, the reference
check and external predictions. Imports every layer below it; never the command line."""
