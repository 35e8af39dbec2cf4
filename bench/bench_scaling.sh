#!/usr/bin/env bash
# Scaling benchmark: the same 4 partitions of Fashion-MNIST (one fine-tuning iteration, batch
# 100, so there is real work) trained by
#   (a) 1 worker with 1 thread,   (b) 2 workers with 1 thread each (one process),
#   (c) mpirun -np 1 and -np 2, one worker thread per rank (when MPI is built).
# Prints wall-clock seconds and the speed-up ratios measured in this one run. Figures, not a test.
# usage: bench/bench_scaling.sh [build/bin/cnnelm] [iterations]
set -euo pipefail
CNNELM=${1:-build/bin/cnnelm}
ITER=${2:-5}
SRC=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run=(train -q -c "$SRC/conf/default.cfg" -s train.partitions=4 -s train.iterations="$ITER"
     -s train.batch=100 -s train.chunk=100 -s train.learning_rate=0.1 -s train.momentum=0.9)
one='workers=({backend="cpu";threads=1;})'
two='workers=({backend="cpu";threads=1;},{backend="cpu";threads=1;})'

seconds() { # seconds CMD...: wall-clock of one run
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; return 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "4 partitions of 60,000 Fashion-MNIST images, $ITER fine-tuning iteration(s), batch 100"
a=$(seconds "$CNNELM" "${run[@]}" -s "$one" -o "$tmp/a.model")
b=$(seconds "$CNNELM" "${run[@]}" -s "$two" -o "$tmp/b.model")
printf '1 worker x 1 thread:        %6.2f s\n' "$a"
printf '2 workers x 1 thread:       %6.2f s   speed-up %sx\n' "$b" "$(ratio "$a" "$b")"
cmp -s "$tmp/a.model" "$tmp/b.model" && echo "  (the same model, bit for bit)"
if command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
  c=$(seconds mpirun -np 1 "$CNNELM" "${run[@]}" -s "$one" -o "$tmp/c.model")
  d=$(seconds mpirun -np 2 "$CNNELM" "${run[@]}" -s "$one" -o "$tmp/d.model")
  printf 'mpirun -np 1 (1 thread):    %6.2f s\n' "$c"
  printf 'mpirun -np 2 (1 thread each): %4.2f s   speed-up %sx\n' "$d" "$(ratio "$c" "$d")"
  cmp -s "$tmp/c.model" "$tmp/d.model" && cmp -s "$tmp/a.model" "$tmp/d.model" && echo "  (the same model as the single-process runs, bit for bit)"
fi
