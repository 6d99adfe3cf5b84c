#!/bin/sh
# One shard of a sharded `ppgn sample` run, whichever scheduler started it.
#   K (1..N): SLURM_ARRAY_TASK_ID (a Slurm job array --array=1-N), or
#             JOB_COMPLETION_INDEX + 1 (a Kubernetes Indexed Job, from 0)
#   N:        PPGN_SHARDS
#   flags:    PPGN_SAMPLE_ARGS, the same in every shard (--batch included,
#             or left to its default, which depends only on the settings)
#   output:   PPGN_RUNS/shard-K-of-N (a shared folder)
# A shard that finished exits at once; one that was killed or pre-empted
# resumes from its checkpoint to the same bits. deploy/merge.sh joins them.
set -eu
ppgn=${PPGN_BIN:-ppgn}
n=${PPGN_SHARDS:?set PPGN_SHARDS to the number of shards}
runs=${PPGN_RUNS:?set PPGN_RUNS to the shared runs folder}
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  k=$SLURM_ARRAY_TASK_ID
elif [ -n "${JOB_COMPLETION_INDEX:-}" ]; then
  k=$((JOB_COMPLETION_INDEX + 1))
else
  echo "run-shard.sh: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set" >&2
  exit 2
fi
out="$runs/shard-$k-of-$n"
[ -d "$out" ] && exit 0
resume=
[ -d "$runs/.shard-$k-of-$n.partial" ] && resume=--resume
# shellcheck disable=SC2086
exec "$ppgn" sample ${PPGN_SAMPLE_ARGS:-} --shard "$k/$n" --out "$out" $resume -q
