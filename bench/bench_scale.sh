#!/usr/bin/env bash
# Scale figures (issue 14 item 5): images/s and peak resident memory per rank, for 1 rank (a
# plain process) and 2 ranks (mpirun -np 2 on this machine), on
#   default   conf/default.cfg: the 60,000 Fashion-MNIST training images
#   extended  the same with data.extend = gaussian, salt_pepper, poisson: 240,000 images
# Every run trains the same 2 partitions with one CPU thread per rank, so 1 and 2 ranks do the
# same work and must give the same model (checked). Peak RSS is each rank's own maximum resident
# set (/usr/bin/time -v around each rank). images/s: training images over the training phase
# (the report's timings.train_s, or the wall time where a report has none), and over the whole
# wall time (start, reading, training, evaluation, saving). A benchmark, not a test.
# usage: bench/bench_scale.sh [--cnnelm PATH] [--limit N] [--sets "default extended"] [--ranks "1 2"]
#   --limit N   only the first N training images (N x 4 extended) and N/6 test images: a quick
#               look; the full sets take about 10 minutes on 2 cores
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
CNNELM=$SRC/build/bin/cnnelm
LIMIT=0
SETS="default extended"
RANKS="1 2"
while [ $# -gt 0 ]; do
  case $1 in
    --cnnelm) CNNELM=$2; shift ;;
    --limit) LIMIT=$2; shift ;;
    --sets) SETS=$2; shift ;;
    --ranks) RANKS=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench_scale.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$CNNELM" ] || { echo "bench_scale.sh: $CNNELM is not an executable cnnelm (build it, or --cnnelm PATH)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_scale.sh: needs GNU time as /usr/bin/time (apt-get install time)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench_scale.sh: needs python3 (to read the JSON reports)" >&2; exit 1; }
case $LIMIT in ''|*[!0-9]*) echo "bench_scale.sh: --limit $LIMIT: not a number of images" >&2; exit 2 ;; esac
for r in $RANKS; do
  case $r in 1) ;; [2-9]) command -v mpirun >/dev/null || { echo "bench_scale.sh: $r ranks need mpirun (openmpi-bin)" >&2; exit 1; } ;;
    *) echo "bench_scale.sh: --ranks: 1 to 9 ranks, not '$r'" >&2; exit 2 ;; esac
done
for s in $SETS; do
  case $s in default|extended) ;; *) echo "bench_scale.sh: --sets: default or extended, not '$s'" >&2; exit 2 ;; esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader

# every rank under its own /usr/bin/time, its figures in a file named by its rank
cat >"$tmp/timed" <<'EOF'
#!/bin/sh
exec /usr/bin/time -v -o "$BENCH_TIMES/rank${OMPI_COMM_WORLD_RANK:-0}" "$@"
EOF
chmod +x "$tmp/timed"

test_limit=0
[ "$LIMIT" -gt 0 ] && test_limit=$(( LIMIT / 6 > 0 ? LIMIT / 6 : 1 ))
base=(train -q -c "$SRC/conf/default.cfg" -s train.partitions=2 -s data.train_limit="$LIMIT"
      -s data.test_limit="$test_limit" -s 'workers=({backend="cpu";threads=1;})')
rows=()
for set in $SETS; do
  extra=()
  [ "$set" = extended ] && extra=(-s 'data.extend=["gaussian","salt_pepper","poisson"]')
  for np in $RANKS; do
    dir=$tmp/$set-$np
    mkdir -p "$dir"
    echo "bench_scale.sh: $set set, $np rank(s)..." >&2
    launch=()
    [ "$np" -gt 1 ] && launch=(mpirun --oversubscribe -np "$np")
    t0=$(date +%s.%N)
    BENCH_TIMES=$dir "${launch[@]}" "$tmp/timed" "$CNNELM" "${base[@]}" "${extra[@]}" -o "$dir/model" \
      --report "$dir/report.json" >"$dir/out" 2>&1 || { echo "bench_scale.sh: the $set run with $np rank(s) failed:" >&2; tail -5 "$dir/out" >&2; exit 1; }
    t1=$(date +%s.%N)
    rows+=("$set $np $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $dir")
  done
done

python3 - "$LIMIT" "${rows[@]}" <<'PY'
import filecmp, glob, json, os, re, sys
limit, rows = int(sys.argv[1]), [r.split() for r in sys.argv[2:]]
print(f"\n2 partitions, 1 CPU thread per rank, conf/default.cfg{f', --limit {limit}' if limit else ''}")
print(f"{'set':<9} {'ranks':>5} {'images':>8} {'wall s':>8} {'train s':>8} {'images/s':>9} "
      f"{'img/s wall':>10}   peak RSS per rank (MB)")
first = {}
for set_, np, wall, d in rows:
    rep = json.load(open(os.path.join(d, "report.json")))
    n = rep["runs"][0]["training_examples"]
    train_s = rep.get("timings", {}).get("train_s") or float(wall)
    rss = []
    for f in sorted(glob.glob(os.path.join(d, "rank*")), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)))):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f).read())
        rss.append(f"{int(m.group(1)) / 1024:.0f}" if m else "?")
    print(f"{set_:<9} {np:>5} {n:>8} {float(wall):8.1f} {train_s:8.1f} {n / train_s:9.0f} "
          f"{n / float(wall):10.0f}   {' '.join(rss)}")
    model = os.path.join(d, "model")
    if set_ in first and not filecmp.cmp(first[set_], model, shallow=False):
        print(f"  warning: the {set_} model from {np} ranks differs from the one from {rows[0][1]} rank(s)")
    first.setdefault(set_, model)
PY
