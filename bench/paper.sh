#!/usr/bin/env bash
# The paper's experiments ("Distributed Averaging CNN-ELM for Big Data", Budiman, Fanany,
# Basaruddin) on the data at hand, in one command:
#   Tables 2-5: k = 2, 3, 4, 5 partitions of the extended data (one noisy copy per noise type:
#     gaussian, salt_pepper, poisson), fine-tuned with the paper's iteration schedule
#     (conf/paper-mnist.cfg: 6c-2s-12c-2s, ELM update interval 60,000, alpha/iteration); for each
#     k: the single model on all the data, each partition's model, and the reduced model by
#     mean (the paper), weighted mean and refit; accuracy and Cohen's kappa.
#   Fig. 7: test accuracy per iteration of the single model for several learning rates.
# The partitions are trained once per k (checkpointed); weighted and refit combine the same
# partition models with `cnnelm average`.
#
# The paper's published figures are not in this repository and were not found: the "paper"
# columns print "-" unless you give them with --paper-figures FILE (lines "TABLE ROW ACC KAPPA",
# e.g. "3 mean 0.9512 0.9458"; ROW is single, partitionN, mean, weighted or refit). The paper used
# MNIST; on other data (Fashion-MNIST by default) its figures are not expected to match.
#
# usage: bench/paper.sh [--quick] [--cnnelm PATH] [--data DIR] [--out DIR] [--paper-figures FILE]
#   --data DIR   MNIST-format IDX files: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
#                t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]
#                (default /usr/share/datasets/fashion-mnist)
#   --quick      a slice of the data and fewer iterations: under 5 minutes on 2 cores
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
CNNELM=$SRC/build/bin/cnnelm
DATA=/usr/share/datasets/fashion-mnist
OUT=paper-results
PAPER=""
QUICK=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --cnnelm) CNNELM=$2; shift ;;
    --data) DATA=$2; shift ;;
    --out) OUT=$2; shift ;;
    --paper-figures) PAPER=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "paper.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
command -v python3 >/dev/null || { echo "paper.sh: needs python3 (the tables are read from the JSON reports)" >&2; exit 1; }
[ -x "$CNNELM" ] || { echo "paper.sh: $CNNELM is not an executable cnnelm (build it, or --cnnelm PATH)" >&2; exit 1; }
[ -z "$PAPER" ] || [ -r "$PAPER" ] || { echo "paper.sh: --paper-figures $PAPER: cannot read it" >&2; exit 1; }
find_idx() { # find_idx NAME: DIR/NAME or DIR/NAME.gz
  if [ -r "$DATA/$1" ]; then echo "$DATA/$1"; elif [ -r "$DATA/$1.gz" ]; then echo "$DATA/$1.gz"
  else echo "paper.sh: $DATA has no $1 or $1.gz (--data DIR: MNIST-format IDX files)" >&2; exit 1; fi
}
tri=$(find_idx train-images-idx3-ubyte); trl=$(find_idx train-labels-idx1-ubyte)
tei=$(find_idx t10k-images-idx3-ubyte); tel=$(find_idx t10k-labels-idx1-ubyte)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ $QUICK = 1 ]; then
  TRAIN=3000; TEST=1000; ITER=2; RATES="1 5 10 25"; FIG_ITER=3
else
  TRAIN=0; TEST=0; ITER=5; RATES="1 5 10 25 50"; FIG_ITER=10
fi
cfg=(-c "$SRC/conf/paper-mnist.cfg"
     -s "data.train_images=\"$tri\"" -s "data.train_labels=\"$trl\""
     -s "data.test_images=\"$tei\"" -s "data.test_labels=\"$tel\""
     -s 'data.extend=["gaussian","salt_pepper","poisson"]'
     -s data.train_limit=$TRAIN -s data.test_limit=$TEST -s train.iterations=$ITER)

# How long: time a small probe, then scale by the images each experiment passes through
# (forward passes; a fine-tuning pass costs about 3).
# a run's fixed cost (start, reading and extending the data) apart from its per-image work
tl=$(date +%s.%N)
"$CNNELM" train -q "${cfg[@]}" -s data.train_limit=10 -s data.test_limit=10 -s train.iterations=0 \
  -o "$OUT/probe.model" >/dev/null 2>"$OUT/probe.err" || { cat "$OUT/probe.err" >&2; exit 1; }
t0=$(date +%s.%N)
"$CNNELM" train -q "${cfg[@]}" -s data.train_limit=500 -s data.test_limit=250 -s train.iterations=1 \
  -o "$OUT/probe.model" >/dev/null 2>"$OUT/probe.err" || { cat "$OUT/probe.err" >&2; exit 1; }
t1=$(date +%s.%N)
rm -f "$OUT/probe.model" "$OUT/probe.err"
full_train=$(python3 -c "import gzip,sys
def n(p):
    f = gzip.open(p) if open(p,'rb').read(2) == b'\x1f\x8b' else open(p,'rb')
    h = f.read(8); return int.from_bytes(h[4:8], 'big')
print(n(sys.argv[1]), n(sys.argv[2]))" "$tri" "$tei")
read -r NTR NTE <<<"$full_train"
[ $TRAIN -gt 0 ] && [ $TRAIN -lt $NTR ] && NTR=$TRAIN
[ $TEST -gt 0 ] && [ $TEST -lt $NTE ] && NTE=$TEST
estimate=$(python3 - "$tl" "$t0" "$t1" "$NTR" "$NTE" "$ITER" "$FIG_ITER" $RATES <<'PY'
import sys
tl, t0, t1 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
ntr, nte, it, fit = 4 * int(sys.argv[4]), 4 * int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
rates = len(sys.argv) - 8
fixed = t0 - tl                                        # seconds a run costs before any image
def model(n, t, e):       # forward-pass units of one trained model: fits, accuracies, fine-tuning
    return n * (2 + e) + 3 * e * n + t
probe = model(4 * 500, 4 * 250, 1) + 4 * 250 * 2
per_unit = max(t1 - t0 - fixed, 0.01) / probe
runs = 4 + 4 * 2 * 2 + rates                           # train per k, average + eval per reduce, Fig. 7
units = model(ntr, nte * (1 + it), it)                 # the single model, once
for k in (2, 3, 4, 5):
    units += model(ntr, 0, it) + k * nte + nte         # the partitions, their tests, the mean
    units += 2 * nte + ntr                             # weighted, refit (a pass over the data)
units += rates * model(ntr, nte * (1 + fit), fit)
print(f"{(units * per_unit + runs * fixed) / 60:.1f}")
PY
)
echo "paper.sh: $NTR training and $NTE test images from $DATA, 4x with the three noises;"
echo "  $ITER fine-tuning iteration(s) (Tables 2-5), $FIG_ITER for Fig. 7 at learning rates $RATES."
echo "  Estimated time on this machine: about $estimate min (from a timed probe run; a shared machine varies)."
echo "  Results, reports and figures: $OUT"
start=$(date +%s)

# --- Tables 2-5: k = 2..5 ---
single_done=0
for k in 2 3 4 5; do
  ck="$OUT/k$k-checkpoints"
  rm -rf "$ck"
  single=false
  [ $single_done = 0 ] && single=true
  echo "paper.sh: k = $k: training $k partitions$([ $single = true ] && echo " and the single model")..."
  "$CNNELM" train -q "${cfg[@]}" -s train.partitions=$k -s train.reduce='"mean"' -s train.compare_single=$single \
    -s "train.checkpoint_dir=\"$ck\"" -o "$OUT/k$k-mean.model" --report "$OUT/k$k.json" >"$OUT/k$k.txt" 2>"$OUT/k$k.err" \
    || { cat "$OUT/k$k.err" >&2; exit 1; }
  [ $single = true ] && cp "$OUT/k$k.json" "$OUT/single.json"
  single_done=1
  parts=()
  for p in $(seq 1 $k); do parts+=("$ck/seed1-fold1-part${p}of$k.model"); done
  for reduce in weighted refit; do
    extra=()
    [ $reduce = refit ] && extra=("${cfg[@]}")
    "$CNNELM" average -q -o "$OUT/k$k-$reduce.model" --reduce $reduce "${extra[@]}" "${parts[@]}" >/dev/null 2>"$OUT/k$k-$reduce.err" \
      || { cat "$OUT/k$k-$reduce.err" >&2; exit 1; }
    "$CNNELM" eval -q -m "$OUT/k$k-$reduce.model" "${cfg[@]}" --report "$OUT/k$k-$reduce.json" >/dev/null 2>"$OUT/k$k-$reduce.err" \
      || { cat "$OUT/k$k-$reduce.err" >&2; exit 1; }
  done
  "$CNNELM" plot "$OUT/k$k.json" -o "$OUT/table$k.png" >/dev/null 2>&1 || true
done

# --- Fig. 7: the single model's test accuracy per iteration for several learning rates ---
for lr in $RATES; do
  echo "paper.sh: Fig. 7: learning rate $lr..."
  "$CNNELM" train -q "${cfg[@]}" -s train.iterations=$FIG_ITER -s train.learning_rate=$lr -s train.partitions=1 \
    -o "$OUT/fig7-lr$lr.model" --report "$OUT/fig7-lr$lr.json" >/dev/null 2>"$OUT/fig7-lr$lr.err" \
    || { cat "$OUT/fig7-lr$lr.err" >&2; exit 1; }
done

python3 - "$OUT" "$PAPER" "$ITER" $RATES <<'PY'
import json, os, subprocess, sys
out, paper_file, iters, rates = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
paper = {}
if paper_file:
    for line in open(paper_file):
        f = line.split()
        if len(f) == 4 and not line.startswith("#"):
            paper[(int(f[0]), f[1])] = (float(f[2]), float(f[3]))
def cell(v, fmt):
    return fmt % v if v is not None else "-"
single = json.load(open(os.path.join(out, "single.json")))["runs"][0]["single"]["test"]
for k in (2, 3, 4, 5):
    rep = json.load(open(os.path.join(out, f"k{k}.json")))
    run = rep["runs"][0]
    rows = [("single", "single model (all data)", single)]
    for p, part in enumerate(run["partitions"]):
        rows.append((f"partition{p + 1}", f"partition {p + 1} ({part['examples']} examples)", part["test"]))
    rows.append(("mean", "averaged: mean (the paper)", run["reduced"]))
    for red in ("weighted", "refit"):
        rows.append((red, f"averaged: {red}", json.load(open(os.path.join(out, f"k{k}-{red}.json")))["test"]))
    print(f"\nTable {k}: {k} partitions of {rep['runs'][0]['training_examples']} extended training images, "
          f"{run['test_examples']} test images, train.iterations = {iters}")
    print(f"  {'model':<36} {'accuracy':>9} {'kappa':>8}   {'paper acc':>9} {'paper kappa':>11}")
    for key, name, m in rows:
        pa = paper.get((k, key))
        print(f"  {name:<36} {100 * m['accuracy']:8.2f}% {m['kappa']:8.4f}   "
              f"{cell(pa and 100 * pa[0], '%8.2f%%'):>9} {cell(pa and pa[1], '%.4f'):>11}")
    for w in rep.get("warnings", []):
        print(f"  warning: {w}")
if not paper:
    print("\n(paper columns: the published figures are not in this repository; give them with --paper-figures)")

# Fig. 7: one series per learning rate
series = []
for lr in rates:
    rep = json.load(open(os.path.join(out, f"fig7-lr{lr}.json")))
    its = rep["runs"][0]["partitions"][0].get("iterations", [])  # none: diverged at once
    pts = [(s["iteration"], 100 * s["test_accuracy"]) for s in its if s["test_accuracy"] is not None]
    series.append((lr, pts, rep["runs"][0]["partitions"][0].get("diverged", False)))
print("\nFig. 7: test accuracy (%) per iteration of the single model")
width = max([len(p) for _, p, _ in series] + [1])
print("  " + f"{'rate':>6}" + "".join(f"{i:>8}" for i in range(width)))
for lr, pts, div in series:
    print("  " + f"{lr:>6}" + "".join(f"{a:8.2f}" for _, a in pts) + ("   (diverged)" if div else ""))
script = ["set terminal pngcairo size 900,560 noenhanced", f"set output '{os.path.join(out, 'fig7.png')}'",
          "set title 'Fig. 7: test accuracy of the single model per iteration, by learning rate'",
          "set xlabel 'iteration'", "set ylabel 'test accuracy (%)'", "set grid", "set key bottom right",
          "set xtics 1", "plot " + ", ".join(f"'-' using 1:2 with linespoints title 'learning rate {lr}"
                                             f"{' (diverged)' if div else ''}'" for lr, _, div in series)]
data = []
for _, pts, _ in series:
    data += [f"{i} {a}" for i, a in pts] + ["e"]
r = subprocess.run(["gnuplot"], input="\n".join(script + data) + "\n", text=True, capture_output=True)
print(f"\nfigures: {os.path.join(out, 'fig7.png')}" + ("" if r.returncode == 0 else f" (gnuplot failed: {r.stderr.strip()})"))
print("         " + ", ".join(os.path.join(out, f"table{k}.png") for k in (2, 3, 4, 5)))
PY
echo "paper.sh: done in $(( $(date +%s) - start )) s (estimated about $estimate min)"
