#!/bin/bash
# Submits a sharded `ppgn sample` run to Slurm: a job array of N tasks
# (deploy/slurm/sample-array.sbatch) and a merge job that starts only when
# all of them succeeded (--dependency=afterok).
# Usage: deploy/slurm/submit.sh N RUNS_DIR -- SAMPLE_FLAGS...
#   e.g. deploy/slurm/submit.sh 8 /shared/runs/sneakers -- --class all --chains 5000 --batch 100
# Run it from the repository (or set PPGN_DEPLOY to where deploy/ is);
# ppgn must be on the PATH of the compute nodes (or set PPGN_BIN).
set -euo pipefail
n=${1:?number of shards}
runs=${2:?shared runs folder}
shift 2
[ "${1:-}" = "--" ] && shift
mkdir -p "$runs"
export PPGN_SHARDS=$n PPGN_RUNS=$runs PPGN_SAMPLE_ARGS="$*"
export PPGN_DEPLOY=${PPGN_DEPLOY:-$(cd "$(dirname "$0")/.." && pwd)}
here=$PPGN_DEPLOY/slurm
array=$(sbatch --parsable --export=ALL --array="1-$n" "$here/sample-array.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency="afterok:${array%%;*}" "$here/merge.sbatch")
echo "array job $array ($n shards), merge job $merge; the run lands in $runs/merged"
