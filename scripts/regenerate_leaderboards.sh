#!/usr/bin/env bash
# The runs behind the committed leaderboards, all into one tracking store: DIR/mlflow.db (default
# ./leaderboard-store). Every command resumes (--resume), so the script can be stopped and started again on
# the same store.
# On two cores it takes hours (the model rows in the README's Timings table, per seed). Run it from a clean
# checkout of one commit, e.g. `git worktree add /tmp/ref <commit>` and PYTHONPATH=/tmp/ref, so that every
# run records the same commit while the working tree changes. Then `bench leaderboard --dataset D` for
# norman_subset and synthetic, with the same MLFLOW_TRACKING_URI.
set -uo pipefail
store=$(realpath -m "${1:-leaderboard-store}")
mkdir -p "$store"
export MLFLOW_TRACKING_URI="sqlite:///$store/mlflow.db"
cd "$store"  # unlogged runs, if the store failed, are kept here
scbig=scbig,scbig_pca_latent,scbig_random_clusters,scbig_no_structure_loss
step() { echo "=== $(date +%T) $*"; "$@"; local code=$?; echo "=== $(date +%T) exit $code"; }
step bench env create cellflow
for split in simulation additive; do
    step bench run --model control,mean,additive,linear --dataset norman_subset --split $split --seeds 1-5 --resume
done
step bench run --model gears,$scbig,cpa,latent_additive,cellflow,scouter,biolord --dataset norman_subset --split simulation --seeds 1-5 --jobs 2 --resume
step bench run --model control,mean,additive,linear --dataset synthetic --split simulation --seeds 1-5 --resume
step bench run --model gears --dataset synthetic --split simulation --seeds 1-5 --jobs 2 --resume
step bench run --model cpa,latent_additive,$scbig,cellflow,scouter,biolord --preset fast --dataset synthetic --split simulation --seeds 1-5 --jobs 2 --resume
step bench run --model $scbig,cellflow,scouter,biolord --dataset norman_subset --split additive --seeds 1-5 --jobs 2 --resume
echo "=== $(date +%T) all done"
