#!/usr/bin/env bash
# Two figures of the plugin contract, each pair measured in one run (figures only, no pass/fail;
# each side the median of REPEATS runs, default 5, alternating):
#  1. end-to-end ELM fit (`cnnelm train`, Fashion-MNIST) against the backend benchmark's
#     forward + U/V chain on the same network, chunk, backend and threads (target: >= 85%), for the
#     default config (conf/default.cfg) and the paper's network (conf/paper-fashion.cfg, where
#     fetching and widening the images weigh most);
#  2. the convolution-only test plugin's fine-tuning step (every other op on the CPU reference,
#     through the core's persistent fallback buffers) against the CPU backend's (target: <= 1.3x),
#     both on one thread: the figure is meant to show what the fallback costs, not what a
#     second core buys. Both run the same
#     convolution kernel (the test plugin links the CPU backend's), so the gap is the fallback's.
# usage: bench/bench_abi.sh [BUILD_DIR] [FASHION_DIR] [BACKEND] [THREADS]
set -eu
BUILD=$(cd "${1:-build}" && pwd)  # absolute: a relative plugin_path is relative to the config file
FASHION=${2:-/usr/share/datasets/fashion-mnist}
BACKEND=${3:-cpu}
THREADS=${4:-0}
SRC=$(cd "$(dirname "$0")/.." && pwd)
CNNELM=$BUILD/bin/cnnelm
data=(-s "data.train_images=\"$FASHION/train-images-idx3-ubyte.gz\"" -s "data.train_labels=\"$FASHION/train-labels-idx1-ubyte.gz\""
      -s "data.test_images=\"$FASHION/t10k-images-idx3-ubyte.gz\"" -s "data.test_labels=\"$FASHION/t10k-labels-idx1-ubyte.gz\"")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rate() { tr '\r' '\n' | grep -E "$1.* images in [0-9.]+ s \([0-9]+ images/s\)" | head -1 | grep -oE '\(([0-9]+) images/s' | grep -oE '[0-9]+'; }

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

bench_threads=$THREADS
[ "$bench_threads" = 0 ] && bench_threads=$(nproc)
# Each figure is the median of REPEATS runs, the two sides alternating, so that a burst of load
# from other jobs on a shared machine moves both sides' medians alike.
REPEATS=${REPEATS:-5}
# The benchmark's side is given twice: its median batch (the quiet moments of a shared machine)
# and its sustained rate over as many batches as the fit has chunks (all images over all time,
# what the fit itself is measured by); the ratio is printed against both.
elm_fit() { # CONFIG: the median figures of both sides and their ratios
  local cfg=$1 layers kernel chunk chains= sustained= fits=
  layers=$(sed -nE 's/^ *layers = "([^"]*)".*/\1/p' "$cfg" | head -1)
  kernel=$(sed -nE 's/^ *kernel = ([0-9]+).*/\1/p' "$cfg" | head -1)
  chunk=$(sed -nE 's/^ *chunk = ([0-9]+).*/\1/p' "$cfg" | head -1)
  chunk=${chunk:-1000}
  for _ in $(seq "$REPEATS"); do
    "$BUILD/bin/cnnelm-bench-backend" --backend "$BACKEND" --mode forward --no-peer --threads "$bench_threads" \
      --batch "$chunk" --repeats $(( (60000 + chunk - 1) / chunk )) --layers "$layers" --kernel "${kernel:-5}" \
      >"$out/chain.txt"
    [ -n "${blas_said:-}" ] || { grep -m1 "^OpenBLAS" "$out/chain.txt" || true; blas_said=1; } # once per run
    chains="$chains $(grep -m1 "^forward" "$out/chain.txt" | grep -oE '= [0-9]+ images/s' | grep -oE '[0-9]+')"
    sustained="$sustained $(grep -m1 "^forward" "$out/chain.txt" | grep -oE 'sustained [0-9]+' | grep -oE '[0-9]+')"
    fits="$fits $("$CNNELM" train -c "$cfg" "${data[@]}" -s "workers=({backend=\"$BACKEND\";threads=$THREADS;})" \
          -o "$out/fit.model" 2>&1 >/dev/null | rate "ELM fit:")"
  done
  local chain sus fit
  chain=$(echo "$chains" | median)
  sus=$(echo "$sustained" | median)
  fit=$(echo "$fits" | median)
  echo "ELM fit, $(basename "$cfg") ($layers, chunk $chunk; $BACKEND, $bench_threads threads, median of $REPEATS):" \
       "backend benchmark forward+U/V median batch $chain images/s (runs:$chains), sustained $sus images/s" \
       "(runs:$sustained); cnnelm train $fit images/s (runs:$fits):" \
       "$(awk -v a="$fit" -v b="$sus" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the sustained rate," \
       "$(awk -v a="$fit" -v b="$chain" 'BEGIN { printf "%.0f%%", 100 * a / b }') of the median batch"
}
elm_fit "$SRC/conf/default.cfg"
elm_fit "$SRC/conf/paper-fashion.cfg"

# The convolution-only plugin runs the CPU backend's own convolution kernel (tests/stubs/
# convonly_cpu.c): the difference is what the core's fallback costs for every other op.
ft=(-c "$SRC/conf/finetune.cfg" "${data[@]}" -s data.train_limit=10000 -s data.test_limit=1000 -s train.iterations=1
    -s "plugin_path=\"$BUILD/tests/stubs\"" -o "$out/ft.model")
cpus= convs=
for _ in $(seq "$REPEATS"); do
  cpus="$cpus $("$CNNELM" train "${ft[@]}" -s 'workers=({backend="cpu";threads=1;})' 2>&1 >/dev/null | rate "fine-tune")"
  convs="$convs $("$CNNELM" train "${ft[@]}" -s 'workers=({backend="convonly";threads=1;})' 2>&1 >/dev/null | rate "fine-tune")"
done
cpu=$(echo "$cpus" | median)
conv=$(echo "$convs" | median)
echo "fine-tuning step (conf/finetune.cfg, 10000 images, chunk 100, 1 thread, median of $REPEATS): cpu $cpu images/s" \
     "(runs:$cpus), convonly $conv images/s (runs:$convs): convonly costs" \
     "$(awk -v a="$cpu" -v b="$conv" 'BEGIN { printf "%.2fx", a / b }') the CPU backend's"
