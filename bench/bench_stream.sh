#!/usr/bin/env bash
# Streamed against in-memory data sets on the same run, printed together: the default run
# (conf/default.cfg: 60,000 Fashion-MNIST training images, 10,000 test) with data.stream = true
# (images read by row from the decompressed copy in data.cache_dir) and data.stream = false
# (the whole set decompressed into memory, as before streaming). Each mode runs REPEATS times,
# alternating, and the fastest run of each is shown: images/s = training images / the report's
# train_s, CPU = user + system seconds of the whole process, peak RSS from /usr/bin/time -v.
# A first streamed run with a tiny limit fills the cache, so no timed run decompresses.
# Figures, not a test.
# usage: bench/bench_stream.sh [build/bin/cnnelm] [REPEATS] [-s KEY=VALUE]...
#   e.g. bench/bench_stream.sh build/bin/cnnelm 1 -s 'data.extend=["gaussian","salt_pepper","poisson"]' \
#        -s 'model.layers="6c-2s-12c-2s"'      (the 240,000-image run with the paper's network)
set -euo pipefail
CNNELM=${1:-build/bin/cnnelm}
REPEATS=${2:-2}
shift $(( $# >= 2 ? 2 : $# ))
SRC=$(cd "$(dirname "$0")/.." && pwd)
CFG=$SRC/conf/default.cfg
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ -x /usr/bin/time ] || { echo "bench_stream: /usr/bin/time (GNU time) is needed for peak RSS" >&2; exit 1; }

"$CNNELM" train -q -c "$CFG" "$@" -s data.train_limit=100 -s data.test_limit=100 \
  -o "$tmp/warm.model" >/dev/null 2>&1 || { echo "bench_stream: the warm-up run failed" >&2; exit 1; }

run() { # run MODE I: one training run, appends "MODE train_s wall cpu rss_kb n" to $tmp/results
  local mode=$1
  shift 2
  if ! /usr/bin/time -v -o "$tmp/time" "$CNNELM" train -q -c "$CFG" "$@" -s "data.stream=$mode" \
       -o "$tmp/m-$mode.model" --report "$tmp/r.json" >"$tmp/out" 2>&1; then
    echo "bench_stream: the run with data.stream=$mode failed:" >&2
    tail -3 "$tmp/out" >&2
    exit 1
  fi
  local train_s n wall cpu rss
  train_s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timings"]["train_s"])' "$tmp/r.json")
  n=$(grep -o '"training_examples": *[0-9]*' "$tmp/r.json" | head -1 | grep -o '[0-9]*$')
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (k = 1; k <= n; k++) s = s * 60 + t[k]; print s}' "$tmp/time")
  cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {print u + s}' "$tmp/time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time")
  echo "$mode $train_s $wall $cpu $rss $n" >>"$tmp/results"
}
shift_args=("$@")
for ((i = 0; i < REPEATS; i++)); do
  run true "$i" "${shift_args[@]}"
  run false "$i" "${shift_args[@]}"
done
cmp -s "$tmp/m-true.model" "$tmp/m-false.model" && same=yes || same=NO

N=$(awk '{print $6}' "$tmp/results" | head -1)
python3 - "$tmp/results" "$N" "$same" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
n = int(sys.argv[2])
best = {}
for mode, train_s, wall, cpu, rss, _ in rows:
    t, c = float(train_s), float(cpu)
    b = best.get(mode)
    # each figure's best over the repeats: the fastest run, the least CPU, the largest RSS
    best[mode] = (min(t, b[0]), min(float(wall), b[1]), min(c, b[2]), max(int(rss), b[3])) if b else \
        (t, float(wall), c, int(rss))
print("| data.stream | train s | images/s | wall s | CPU s | images/CPU s | peak RSS MB |")
print("|---|---|---|---|---|---|---|")
for mode, label in (("true", "true (streamed)"), ("false", "false (in memory)")):
    t, wall, cpu, rss = best[mode]
    print("| %s | %.2f | %.0f | %.2f | %.2f | %.0f | %.1f |" % (label, t, n / t, wall, cpu, n / cpu, rss / 1024))
ratio = best["false"][0] / best["true"][0]
cpu_ratio = best["false"][2] / best["true"][2]
print("\nstreamed throughput: %.1f%% of in-memory by training wall time, %.1f%% by process CPU time "
      "(best of %d each, %d training images); models byte-identical: %s" %
      (100 * ratio, 100 * cpu_ratio, len(rows) // 2, n, sys.argv[3]))
print("(on a loaded machine the wall time follows the scheduler; the CPU time is the steadier figure)")
PY
