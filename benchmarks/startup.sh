#!/bin/bash
# Time to the first lines of the :cpu main job: runs launch/train.py with
# simgan_jax/configs/default.py:cpu, prefixes every console line with the seconds
# since start, and stops the run (SIGTERM, which saves a checkpoint) at the first
# checkpoint line ("step N: ..."). Use an empty CACHE_DIR for a first run (the
# target cache is rendered, nothing is compiled yet), the same one again for a warm run.
#
#   bash benchmarks/startup.sh CACHE_DIR WORKDIR [FLAGS...]   # e.g. /tmp/cold runs/startup_cold
#
# Extra FLAGS go to launch/train.py (e.g. --config.conv_impl=hybrid to time the
# XLA-based convolutions against the default native ones).
set -euo pipefail
cache=${1:?usage: startup.sh CACHE_DIR WORKDIR [FLAGS...]}
workdir=${2:?usage: startup.sh CACHE_DIR WORKDIR [FLAGS...]}
shift 2
cd "$(dirname "$0")/.."
export SIMGAN_JAX_CACHE=$cache
start=$(date +%s.%N)
python launch/train.py --config=simgan_jax/configs/default.py:cpu --workdir="$workdir" "$@" 2>&1 |
while IFS= read -r line; do
  printf "%s s  %s\n" "$(awk -v now="$(date +%s.%N)" -v t0="$start" 'BEGIN { printf "%7.1f", now - t0 }')" "$line"
  if [[ "$line" =~ ^step\ [0-9]+:\  ]]; then pkill -TERM -f -- "--workdir=$workdir" || true; fi
done
