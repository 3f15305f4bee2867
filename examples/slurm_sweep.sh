#!/usr/bin/env bash
# N sweep workers on a Slurm cluster, one GPU each, all joining one Optuna study in PostgreSQL.
#
#   sbatch --array=1-8 examples/slurm_sweep.sh scbig norman_subset 200
#
# Every array task is one `bench sweep` worker; the study is created once by whichever starts first,
# and the workers together run the requested number of trials. A worker killed by Slurm (time limit,
# preemption) leaves its trial to be failed and retried by another worker after the heartbeat's grace
# period. Set BENCH_SWEEP_DB (e.g. in ~/.bashrc) to the team's database, and MLFLOW_TRACKING_URI to
# the team's MLflow server so that every trial is logged under the sweep's parent run.
#SBATCH --job-name=bench-sweep
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --output=sweep-%A_%a.log
set -euo pipefail

model=${1:?model card, e.g. scbig}
dataset=${2:?dataset, e.g. norman_subset}
trials=${3:-100}
: "${BENCH_SWEEP_DB:?set BENCH_SWEEP_DB=postgresql://user:password@dbhost/bench}"

source "${BENCH_VENV:-$HOME/bench/.venv}/bin/activate"
bench sweep --model "$model" --dataset "$dataset" --split simulation --seed 1 \
    --trials "$trials" --storage "$BENCH_SWEEP_DB" --study "$model@$dataset-simulation-seed1" \
    --device cuda --timeout 40000
