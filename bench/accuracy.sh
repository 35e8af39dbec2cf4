#!/usr/bin/env bash
# Accuracy against training time on Fashion-MNIST, our configurations and the peers measured in
# one run: the paper's network (conf/paper-fashion.cfg), wide one-layer networks, the default
# run (conf/default.cfg), the most accurate (conf/fashion-92.cfg: 4 partitions, refit), then
# PyTorch LeNet-5 trained with Adam (bench/lenet_peer.py) and hpelm on pixels
# (bench/hpelm_peer.py, only where the hpelm package is installed).
# "train s" is training wall time (cnnelm: the report's train_s; peers: their epochs / fit),
# "CPU s" the whole process's user+system time (loading and testing included): on a shared
# machine the wall time grows with others' load, the CPU time much less.
# Prints a Markdown table (the README's). Figures, not a test.
# usage: bench/accuracy.sh [build/bin/cnnelm] [--quick]   (--quick: no 256c-6s or fashion-92, LeNet 2 epochs)
set -euo pipefail
CNNELM=${1:-build/bin/cnnelm}
QUICK=${2:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
EPOCHS=5
[ "$QUICK" = --quick ] && EPOCHS=2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

row() { printf '| %-50s | %6s | %7s | %6s |\n' "$@"; }

ours() { # ours LABEL CONFIG [-s ...]: one cnnelm run, its test accuracy and training seconds
  local label=$1 cfg=$2
  shift 2
  if ! /usr/bin/time -f '%U %S' -o "$tmp/cpu" "$CNNELM" train -q -c "$cfg" "$@" \
       -o "$tmp/m.model" --report "$tmp/r.json" >"$tmp/out" 2>&1; then
    row "$label" "failed" "" ""
    sed 's/^/    /' "$tmp/out" | tail -3 >&2
    return
  fi
  read -r acc train < <("$PY" -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("%.2f %.2f" % (100 * r["test"]["accuracy"], r["timings"]["train_s"]))' "$tmp/r.json")
  row "$label" "$acc" "$train" "$(awk '{ printf "%.1f", $1 + $2 }' "$tmp/cpu")"
}

peer() { # peer LABEL SCRIPT ARGS...: a python peer printing "peer NAME ACC SECONDS ..."
  local label=$1 script=$2
  shift 2
  if ! /usr/bin/time -f '%U %S' -o "$tmp/cpu" "$PY" "$script" "$@" >"$tmp/out" 2>&1; then
    row "$label" "failed" "" ""
    tail -3 "$tmp/out" >&2
    return
  fi
  read -r _ _ acc train _ < <(grep '^peer ' "$tmp/out")
  row "$label" "$acc" "$train" "$(awk '{ printf "%.1f", $1 + $2 }' "$tmp/cpu")"
}

echo "Fashion-MNIST, 60,000 training and 10,000 test images, seed 1, $(nproc) cores"
echo "(load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%d))"
echo
row "configuration" "test %" "train s" "CPU s"
echo "|----------------------------------------------------|--------|---------|--------|"
ours "cnnelm \`6c-2s-12c-2s\`, lambda 100 (the paper's)" "$SRC/conf/paper-fashion.cfg"
ours "cnnelm \`32c-6s\`, lambda 1000 (L = 512)" "$SRC/conf/default.cfg" -s model.layers=32c-6s
ours "cnnelm \`128c-6s\`, lambda 1000 (conf/default.cfg)" "$SRC/conf/default.cfg"
[ "$QUICK" = --quick ] ||
  ours "cnnelm \`256c-6s\`, lambda 1000 (L = 4096)" "$SRC/conf/default.cfg" -s model.layers=256c-6s
# the most accurate: 4 partitions, refit, L = 14080 (about 9 minutes of CPU, 9.5 GiB planned)
[ "$QUICK" = --quick ] ||
  ours "cnnelm \`352c-(4s,12s)-sqrt\`, 4 partitions, refit (conf/fashion-92.cfg)" "$SRC/conf/fashion-92.cfg"
peer "PyTorch LeNet-5, Adam, $EPOCHS epochs" "$SRC/bench/lenet_peer.py" --epochs "$EPOCHS" --threads 2
if "$PY" -c 'import hpelm' 2>/dev/null; then
  peer "hpelm, 4000 tanh neurons on pixels" "$SRC/bench/hpelm_peer.py" --neurons 4000
else
  echo "(hpelm not installed: no hpelm row)"
fi
