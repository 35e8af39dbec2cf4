#!/usr/bin/env bash
# Thread pool under contention: the CPU backend's training step (cnnelm-bench-backend --mode
# train, default network) with 1 and 2 threads, first on the machine as it is ("quiet"), then
# with one core kept busy by a busy loop this script starts and kills. Runs alternate 1 and 2
# threads for ROUNDS rounds so that load from elsewhere hits both alike; each run prints the
# median of its repeats, and this script the median over rounds and the ratio 1-thread / 2-thread
# time (above 1: 2 threads are faster). Figures, not a test.
# usage: bench/bench_contention.sh [build/bin/cnnelm-bench-backend] [rounds] [extra bench args...]
#   CNNELM_PLUGIN_PATH=dir picks another build of the CPU plugin (e.g. an older one, to compare).
set -euo pipefail
BENCH=${1:-build/bin/cnnelm-bench-backend}
ROUNDS=${2:-5}
shift $(($# > 2 ? 2 : $#))
EXTRA=("$@")

run() { # run THREADS: median ms per batch of one bench run
  "$BENCH" --mode train --no-peer --threads "$1" --repeats 9 "${EXTRA[@]}" |
    sed -n 's/.*median \([0-9.]*\) ms per batch.*/\1/p'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

busy_pid=
stop_busy() {
  if [ -n "$busy_pid" ]; then
    kill "$busy_pid" 2>/dev/null || true
    wait "$busy_pid" 2>/dev/null || true
  fi
  busy_pid=
}
trap stop_busy EXIT

measure() { # measure LABEL
  local one=() two=() r
  for ((r = 0; r < ROUNDS; r++)); do
    one+=("$(run 1)")
    two+=("$(run 2)")
  done
  local m1 m2
  m1=$(printf '%s\n' "${one[@]}" | median)
  m2=$(printf '%s\n' "${two[@]}" | median)
  printf '%-22s 1 thread %8.2f ms   2 threads %8.2f ms   1-thread/2-thread %5.2fx\n' "$1" "$m1" "$m2" \
    "$(awk -v a="$m1" -v b="$m2" 'BEGIN { print a / b }')"
  printf '  runs, 1 thread:  %s\n  runs, 2 threads: %s\n' "${one[*]}" "${two[*]}"
}

echo "training step, batch 1000, default network; median ms per batch over $ROUNDS alternating rounds"
echo "(load average at start: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores)"
measure "quiet"
( while :; do :; done ) &
busy_pid=$!
measure "one core busy"
stop_busy
