#!/bin/sh
# Joins the N shard folders deploy/run-shard.sh wrote under PPGN_RUNS into
# one run folder (PPGN_MERGED, default PPGN_RUNS/merged): samples.npy and
# labels.npy byte-identical to the unsharded run's. Refuses a missing or
# duplicated shard, or shards of different settings, by name.
set -eu
ppgn=${PPGN_BIN:-ppgn}
n=${PPGN_SHARDS:?set PPGN_SHARDS to the number of shards}
runs=${PPGN_RUNS:?set PPGN_RUNS to the shared runs folder}
set --
k=1
while [ "$k" -le "$n" ]; do
  set -- "$@" "$runs/shard-$k-of-$n"
  k=$((k + 1))
done
exec "$ppgn" merge "$@" --out "${PPGN_MERGED:-$runs/merged}"
