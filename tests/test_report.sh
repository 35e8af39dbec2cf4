#!/usr/bin/env bash
# What a run tells its user: warnings in every mode (divergence of a partition, a reduced model
# worse than every partition) on stderr with or without -q, in the report and as --strict's exit;
# k-fold estimates and a final model on all the data; summarised tables; worker names; timestamped
# progress lines; eval's account of the model file; plots (legend entries once each, bars).
# usage: test_report.sh PATH/TO/cnnelm SOURCE_DIR FASHION_DIR
set -u
CNNELM=$1
SRC=$2
FASHION=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
has() { grep -qE -- "$1" "$2"; }

if [ ! -r "$FASHION/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: Fashion-MNIST missing"
  exit 0
fi
ft="$SRC/conf/finetune.cfg"
def="$SRC/conf/paper-fashion.cfg"

# 1. divergence of a partition, named with its iteration, with and without -q (issue 17)
div=(-c "$ft" -s train.learning_rate=1e10 -s train.iterations=2 -s train.partitions=2 -s data.train_limit=2000)
for q in -q ""; do
  "$CNNELM" train "${div[@]}" $q -s data.test_limit=500 -o "$tmp/div.model" --report "$tmp/div.json" >"$tmp/out" 2>"$tmp/err"
  code=$?
  if [ $code = 0 ] && has "^cnnelm: warning: partition [12]/2 diverged at iteration 1: .*learning_rate" "$tmp/err"; then ok
  else bad "divergence ($q): exit $code, no warning naming the partition and iteration: $(grep -m2 warning "$tmp/err")"; fi
done
if has "LAPACKE|returned -" "$tmp/err"; then bad "the divergence warning shows a LAPACK code: $(grep -m1 LAPACK "$tmp/err")"; else ok; fi
# in the report: counted and listed
if python3 - "$tmp/div.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["warning_count"] == len(r["warnings"]) >= 1, r.get("warnings")
assert any("diverged at iteration 1" in w for w in r["warnings"]), r["warnings"]
assert any(p["diverged"] for p in r["runs"][0]["partitions"])
PY
then ok; else bad "the report does not carry the divergence warning"; fi
# --strict: the same run fails, after writing the model
rm -f "$tmp/div.model"
"$CNNELM" train "${div[@]}" -q --strict -s data.test_limit=500 -o "$tmp/div.model" >"$tmp/out" 2>&1
code=$?
if [ $code = 1 ] && has "cnnelm: error: .*warning.*--strict" "$tmp/out" && [ -s "$tmp/div.model" ]; then ok
else bad "--strict with warnings: exit $code: $(tail -2 "$tmp/out")"; fi
"$CNNELM" train -q --strict -c "$def" -s data.train_limit=2000 -s data.test_limit=500 -o "$tmp/clean.model" >"$tmp/out" 2>&1
code=$?
if [ $code = 0 ]; then ok; else bad "--strict without warnings exited $code: $(tail -2 "$tmp/out")"; fi
expect_usage=$("$CNNELM" eval --strict -m "$tmp/clean.model" -c "$def" 2>&1)
if [ $? = 2 ] && echo "$expect_usage" | grep -q "strict is an option of train"; then ok; else bad "eval --strict: $expect_usage"; fi

# 2. the paper config with 4 partitions: the mean is worse than every partition; refit is suggested
data=(-s "data.train_images=\"$FASHION/train-images-idx3-ubyte.gz\"" -s "data.train_labels=\"$FASHION/train-labels-idx1-ubyte.gz\""
      -s "data.test_images=\"$FASHION/t10k-images-idx3-ubyte.gz\"" -s "data.test_labels=\"$FASHION/t10k-labels-idx1-ubyte.gz\"")
"$CNNELM" train -q -c "$SRC/conf/paper-mnist.cfg" "${data[@]}" -s train.partitions=4 -s data.train_limit=8000 \
  -s data.test_limit=1000 -o "$tmp/pm.model" --report "$tmp/pm.json" >"$tmp/out" 2>"$tmp/err"
code=$?
if [ $code = 0 ] && has "^cnnelm: warning: the reduced model \(mean\) has test accuracy .*worse than every partition.*train.reduce = \"refit\"" "$tmp/err"; then ok
else bad "paper config, 4 partitions: exit $code, no worse-than-every-partition warning: $(head -3 "$tmp/err")"; fi
# the warning is true: the report's figures agree
if python3 - "$tmp/pm.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["runs"][0]
worst = min(p["test"]["accuracy"] for p in run["partitions"])
assert run["reduced"]["accuracy"] < worst and run["reduced_worse_than_every_partition"] is True
PY
then ok; else bad "the report does not mark the reduced model worse than every partition"; fi
# refit rescues it: no such warning
"$CNNELM" train -q -c "$SRC/conf/paper-mnist.cfg" "${data[@]}" -s train.partitions=4 -s data.train_limit=8000 \
  -s data.test_limit=1000 -s 'train.reduce="refit"' -o "$tmp/pmr.model" >"$tmp/out" 2>"$tmp/err"
code=$?
# (a run that failed would have no warning either: it must have succeeded)
if [ $code = 0 ] && ! has "worse than every partition" "$tmp/err"; then ok
else bad "refit: exit $code, or still warned: $(grep -m1 -E "worse|error" "$tmp/err")"; fi

# 3. k-fold: fold numbers in the log, each fold in the table, the saved model on all the data
"$CNNELM" train -c "$def" -s data.train_limit=3000 -s train.folds=3 -o "$tmp/kf.model" --report "$tmp/kf.json" >"$tmp/out" 2>"$tmp/err"
if has "fold 2/3: seed 1, 2000 training examples, 1000 validation examples" "$tmp/err" && \
   has "final model: trained on all 3000 training examples" "$tmp/err"; then ok; else bad "k-fold log: $(grep -m3 fold "$tmp/err")"; fi
if has "^  model +[0-9.]+% \+- +[0-9.]+" "$tmp/out" && has "^    fold 3 +[0-9.]+%" "$tmp/out" && \
   has "saved model: trained on all 3000 training examples" "$tmp/out"; then ok; else bad "k-fold table: $(head -6 "$tmp/out")"; fi
if python3 - "$tmp/kf.json" "$SRC" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["model"]["training_examples"] == 3000, r["model"]
assert r["model_trained_on_all_training_data"] is True
assert [x.get("fold") for x in r["runs"]] == [1, 2, 3, None] and r["runs"][3]["all_training_data"]
PY
then ok; else bad "k-fold: the saved model is not the one trained on all 3000 examples"; fi

# 4. more than 20 partitions: min / median / max and the worst ones; all of them in the JSON
"$CNNELM" train -q -c "$def" -s data.train_limit=5000 -s data.test_limit=500 -s train.partitions=25 -o "$tmp/p25.model" \
  --report "$tmp/p25.json" >"$tmp/out" 2>&1
rows=$(grep -c "^  partition " "$tmp/out")
if [ "$rows" = 0 ] && has "^  25 partitions .*min [0-9.]+%, median [0-9.]+%, max [0-9.]+%" "$tmp/out" && \
   [ "$(grep -c "^  worst: partition" "$tmp/out")" = 3 ]; then ok; else bad "25-partition table: $(head -6 "$tmp/out")"; fi
if python3 -c "import json,sys; assert len(json.load(open(sys.argv[1]))['runs'][0]['partitions']) == 25" "$tmp/p25.json"; then ok; else bad "the JSON lacks partitions"; fi

# 5. two CPU workers are told apart; plain lines carry a timestamp and the run's progress
"$CNNELM" train -c "$def" -s data.train_limit=2000 -s data.test_limit=500 -s train.partitions=2 \
  -s 'workers=({backend="cpu";threads=1;},{backend="cpu";threads=1;})' -o "$tmp/w2.model" --report "$tmp/w2.json" >"$tmp/out" 2>"$tmp/err"
if has "\[cpu:0#0\]" "$tmp/err" && has "\[cpu:0#1\]" "$tmp/err"; then ok; else bad "two CPU workers not told apart: $(grep -m2 partition "$tmp/err")"; fi
if has "^[0-9]{2}:[0-9]{2}:[0-9]{2} \[ *[0-9]+%, ETA [^]]+\] partition 1/2" "$tmp/err"; then ok; else bad "no timestamped progress lines: $(head -3 "$tmp/err")"; fi
if grep -q '"worker_label": "cpu:0#1"' "$tmp/w2.json"; then ok; else bad "the report does not name worker cpu:0#1"; fi

# 6. eval: the model file's architecture wins, and eval says so; iterations and divergence shown
"$CNNELM" eval -m "$tmp/kf.model" -c "$def" -s model.kernel=3 -s data.test_limit=300 >"$tmp/out" 2>"$tmp/err"
if has "model .*kf.model: 6c-2s-12c-2s, kernel 5, .*trained on 3000 examples, 0 fine-tuning iterations" "$tmp/err" && \
   has "config's model.\* settings differ .* ignored" "$tmp/err"; then ok; else bad "eval's account of the model: $(head -3 "$tmp/err")"; fi
"$CNNELM" eval -q -m "$tmp/div.model" -c "$ft" -s data.test_limit=300 >"$tmp/out" 2>"$tmp/err"
if has "warning: .*div.model: fine-tuning of this model diverged" "$tmp/err"; then ok; else bad "eval hides the diverged flag: $(head -2 "$tmp/err")"; fi

# 7. plots: a 3-trial, 4-partition fine-tuning run: every series once, labelled, the reduced model marked
if command -v gnuplot >/dev/null; then
  "$CNNELM" train -q -c "$ft" -s train.partitions=4 -s train.trials=3 -s train.iterations=2 -s data.train_limit=2000 \
    -s data.test_limit=500 -s train.compare_single=true -o "$tmp/t3.model" --report "$tmp/t3.json" >/dev/null 2>&1
  "$CNNELM" plot "$tmp/t3.json" -o "$tmp/t3.svg" >"$tmp/out" 2>&1 && "$CNNELM" plot "$tmp/t3.json" -o "$tmp/t3.png" >>"$tmp/out" 2>&1
  if [ $? = 0 ] && [ -s "$tmp/t3.png" ]; then ok; else bad "plot of the 3-trial run failed: $(cat "$tmp/out")"; fi
  once=1
  for title in "partition 1: training" "partition 4: training" "single model (all data): test" "partitions: test, final"; do
    [ "$(grep -c ">$title<" "$tmp/t3.svg")" = 1 ] || { once=0; echo "  '$title' appears $(grep -c ">$title<" "$tmp/t3.svg") times"; }
  done
  [ "$(grep -cE ">reduced \(mean\): test [0-9.]+%<" "$tmp/t3.svg")" = 1 ] || once=0
  has ">cnnelm: 4 partitions, reduce = mean \(mean \+- std, 3 runs\)<" "$tmp/t3.svg" || once=0
  if grep -q ">partition 5" "$tmp/t3.svg"; then once=0; fi
  if [ $once = 1 ]; then ok; else bad "the 3-trial plot's legend is not one labelled entry per series"; fi
  # without fine-tuning: bars of the partitions, the reduced and the single model
  "$CNNELM" train -q -c "$def" -s data.train_limit=2000 -s data.test_limit=500 -s train.partitions=3 -s train.compare_single=true \
    -o "$tmp/b.model" --report "$tmp/b.json" >/dev/null 2>&1
  if "$CNNELM" plot "$tmp/b.json" -o "$tmp/b.svg" >"$tmp/out" 2>&1 && grep -q ">P3<" "$tmp/b.svg" && \
     grep -q ">reduced (mean)<" "$tmp/b.svg" && grep -q ">single<" "$tmp/b.svg"; then ok; else bad "no-fine-tuning bars: $(cat "$tmp/out")"; fi
  # an eval report has no runs: a clear error
  "$CNNELM" eval -q -m "$tmp/b.model" -c "$def" -s data.test_limit=300 --report "$tmp/e.json" >/dev/null 2>&1
  out=$("$CNNELM" plot "$tmp/e.json" -o "$tmp/e.png" 2>&1)
  if [ $? = 1 ] && echo "$out" | grep -q "no training runs to plot"; then ok; else bad "plot of an eval report: $out"; fi
fi

# --resume with nowhere to resume from is said, not ignored
"$CNNELM" train -q --resume -c "$def" -s data.train_limit=1000 -s data.test_limit=300 -o "$tmp/r.model" >"$tmp/out" 2>"$tmp/err"
if [ $? != 0 ] && has "resume reuses partitions saved in train.checkpoint_dir, which is not set" "$tmp/err"; then ok; else bad "--resume without checkpoint_dir: $(head -2 "$tmp/err")"; fi

# on a terminal the live line is gone before the results are printed (they must not overwrite it)
if command -v script >/dev/null; then
  script -qfec "$(printf '%q ' "$CNNELM" train -c "$ft" -s train.partitions=2 -s data.train_limit=1000 -s data.test_limit=300 \
    -s train.iterations=1 -o "$tmp/tty.model")" /dev/null >"$tmp/tty" 2>&1
  if python3 - "$tmp/tty" <<'PY'
import sys
d = open(sys.argv[1], "rb").read().decode("utf8", "replace")
i = d.index("test results")
before = d[:i]
# the last thing before the results: the erased live line, a "run done" line and a newline
assert "run done: " in before[before.rindex("\x1b[J"):] and before.endswith("\n"), repr(before[-200:])
assert d.count("run ") > 3  # the live line was drawn
PY
  then ok; else bad "on a terminal the results land on the live line"; fi
fi

# 8. MPI: rank 0's lines are the job's, other ranks print no progress of their own (they were
# "rank 1: rank 1: map: ...", then one line per stage of each rank)
if command -v mpirun >/dev/null; then
  # leaks inside the MPI runtime are not what this checks (LeakSanitizer reports them at exit)
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -x ASAN_OPTIONS --oversubscribe -np 2 "$CNNELM" train \
    -c "$def" -s data.train_limit=2000 -s data.test_limit=500 -s train.partitions=2 -o "$tmp/mpi.model" >"$tmp/out" 2>&1
  code=$?
  if [ $code = 0 ] && grep -q "^[0-9:]* \[[^]]*\] map: 1 of 2 partitions" "$tmp/out" && ! grep -q "rank 1:" "$tmp/out" &&
     grep -q "run done: [0-9]* images on 2 ranks" "$tmp/out"; then ok
  else bad "mpirun -np 2: exit $code, rank prefix: $(grep -m2 "rank 1" "$tmp/out")"; fi
fi

echo "test_report: $passed passed, $failed failed"
[ $failed = 0 ]
