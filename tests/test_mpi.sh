#!/usr/bin/env bash
# Multi-process runs under Open MPI: `mpirun -np 2` and `-np 3` (oversubscribed, localhost) give
# the single-process model bit for bit and the same reduced test metrics, for the mean and the
# refit reduce (also after fine-tuning), with more partitions than ranks, and with lambda chosen
# on held-out rows (train.validation); rank 0's progress covers the whole job (plain lines and
# the live line), -q prints nothing; a failing rank ends the whole job with its message and a
# non-zero exit, without hanging.
# usage: test_mpi.sh PATH/TO/cnnelm SOURCE_DIR FASHION_DIR
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

if ! command -v mpirun >/dev/null || [ ! -r "$FASHION/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: mpirun or Fashion-MNIST missing"
  echo "mpi: 0 passed, 0 failed"
  exit 0
fi
# CI runs as root; Open MPI refuses that unless told. Open MPI's own allocations are not ours
# to leak-check.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0"
run=(train -q -c "$SRC/conf/paper-fashion.cfg" -s data.train_limit=4000 -s data.test_limit=1000
     -s train.partitions=4 -s 'workers=({backend="cpu";threads=1;})')
# reduce:partitions:iterations[:sync_every]; partitions > ranks, and refit after fine-tuning
# (the second pass over the partitions runs on every rank); with sync_every the label-skew
# partitions (of unequal sizes) average their kernels every 3 batches across the ranks, and
# with :beta (train.sync_beta) sum their U and V increments too, every batch or every 3
for case in mean:4:0 refit:4:0 refit:5:1 refit:5:2:3 refit:5:2:1:beta mean:5:1:3:beta; do
  IFS=: read -r reduce parts iters sync beta <<<"$case"
  args=("${run[@]}" -s "train.reduce=\"$reduce\"" -s train.partitions=$parts -s train.iterations=$iters)
  if [ -n "$sync" ]; then
    args+=(-s train.sync_every=$sync -s train.batch=100 -s 'train.partitioning="label-skew"')
  fi
  if [ -n "$beta" ]; then
    args+=(-s train.sync_beta=true)
  fi
  "$CNNELM" "${args[@]}" -o "$tmp/one-$case.model" --report "$tmp/one.json" >/dev/null 2>&1 || bad "single process ($case) failed"
  # the reduced model is evaluated by every rank on its share: the metrics must not change
  want=$(grep -A3 '"reduced": {' "$tmp/one.json" | tr -d ' \n')
  for np in 2 3; do
    if timeout 300 mpirun --oversubscribe -np $np "$CNNELM" "${args[@]}" \
         -o "$tmp/np$np-$case.model" --report "$tmp/np$np.json" >"$tmp/out" 2>&1; then
      if cmp -s "$tmp/one-$case.model" "$tmp/np$np-$case.model"; then ok; else bad "-np $np ($case): model differs from the single-process one"; fi
      if grep -q '"processes": '$np "$tmp/np$np.json" && grep -q '"rank": '$((np - 1)) "$tmp/np$np.json"; then ok; else bad "-np $np: the report does not say which rank trained what"; fi
      got=$(grep -A3 '"reduced": {' "$tmp/np$np.json" | tr -d ' \n')
      if [ -n "$want" ] && [ "$got" = "$want" ]; then ok; else bad "-np $np ($case): reduced metrics $got, one process $want"; fi
    else
      bad "-np $np ($case) failed: $(tail -3 "$tmp/out")"
    fi
  done
done
# train.validation: the same rows are held out whatever the layout, so 2 ranks give the single
# process's model bit for bit, and rank 1's partitions' held-out curves reach rank 0's report
val=("${run[@]}" -s 'model.lambda="auto"' -s train.validation=0.2)
"$CNNELM" "${val[@]}" -o "$tmp/val1.model" >/dev/null 2>&1 || bad "train.validation, one process, failed"
if timeout 300 mpirun --oversubscribe -np 2 "$CNNELM" "${val[@]}" -o "$tmp/val2.model" --report "$tmp/val2.json" >"$tmp/out" 2>&1; then
  if cmp -s "$tmp/val1.model" "$tmp/val2.model"; then ok; else bad "train.validation: -np 2 model differs from the single-process one"; fi
  if python3 - "$tmp/val2.json" <<'PY'
import json, sys
parts = json.load(open(sys.argv[1]))["runs"][0]["partitions"]
assert {p["rank"] for p in parts} == {0, 1}, parts
for p in parts:
    ch = p["lambda_choice"]
    assert ch["rule"] == "validation" and ch["held_out_rows"] > 0, ch
    assert all(0 < c["held_out_accuracy"] <= 1 for c in ch["curve"]), ch
PY
  then ok; else bad "train.validation: -np 2 report lacks a partition's held-out curve"; fi
else
  bad "train.validation -np 2 failed: $(tail -3 "$tmp/out")"
fi
# whole-job progress: rank 0's lines cover every rank's work. Without -q and not on a terminal,
# rank 0's summary counts the images of the whole job (the single process's count, which covers
# all partitions), its timestamped lines end at 100%, and rank 1 prints no progress of its own;
# two workers per rank report from their own threads. With -q nothing at all is printed.
prog=(train -c "$SRC/conf/paper-fashion.cfg" -s data.train_limit=4000 -s data.test_limit=1000
      -s train.partitions=4 -s train.iterations=1
      -s 'workers=({backend="cpu";threads=1;},{backend="cpu";threads=1;})')
"$CNNELM" "${prog[@]}" -o "$tmp/prog1.model" 2>"$tmp/prog1.err" >/dev/null
want=$(sed -n 's/.*run done: \([0-9]*\) images in .*/\1/p' "$tmp/prog1.err")
if timeout 300 mpirun --oversubscribe -np 2 "$CNNELM" "${prog[@]}" -o "$tmp/prog2.model" 2>"$tmp/prog2.err" >/dev/null; then
  got=$(sed -n 's/.*run done: \([0-9]*\) images on 2 ranks in .*/\1/p' "$tmp/prog2.err")
  last=$(grep -oE '^[0-9:]+ \[ *[0-9]+%' "$tmp/prog2.err" | tail -1 | grep -oE '[0-9]+%')
  if [ -n "$want" ] && [ "$got" = "$want" ]; then ok; else bad "2 ranks: rank 0's run done counts '$got' images, the whole job is '$want'"; fi
  if [ "$last" = "100%" ]; then ok; else bad "2 ranks: rank 0's last line is at '$last', not 100%: $(tail -2 "$tmp/prog2.err")"; fi
  if ! grep -q "rank 1:" "$tmp/prog2.err" && [ "$(grep -c "run done" "$tmp/prog2.err")" = 1 ]; then ok; else bad "2 ranks: rank 1 printed progress: $(grep -m2 "rank 1:\|run done" "$tmp/prog2.err")"; fi
else
  bad "2 ranks with progress failed: $(tail -3 "$tmp/prog2.err")"
fi
if timeout 300 mpirun --oversubscribe -np 2 "$CNNELM" "${prog[@]}" -q -o "$tmp/prog3.model" >/dev/null 2>"$tmp/prog3.err" &&
   [ ! -s "$tmp/prog3.err" ]; then ok; else bad "2 ranks with -q printed: $(head -3 "$tmp/prog3.err")"; fi
# on a terminal (mpirun's stderr is one; the ranks' is a pipe, so CNNELM_PROGRESS=tty tells rank 0):
# the live line's total is the whole job's images once the ranks have reported, and the
# summary that replaces it counts all of them done
if command -v script >/dev/null; then
  printf '#!/bin/sh\nexec timeout 300 mpirun --oversubscribe -np 2 -x CNNELM_PROGRESS=tty "$@" >/dev/null\n' >"$tmp/tty.sh"
  q=$(printf '%q ' sh "$tmp/tty.sh" "$CNNELM" "${prog[@]}" -o "$tmp/prog4.model")
  script -qec "$q" "$tmp/tty.log" >/dev/null 2>&1
  tr '\r' '\n' <"$tmp/tty.log" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' >"$tmp/tty.txt"
  total=$(grep -aoE '^run +[0-9]+%: [0-9]+/[0-9]+ images on 2 ranks' "$tmp/tty.txt" | tail -1 | sed 's|.*/\([0-9]*\) images.*|\1|')
  if [ -n "$want" ] && [ "$total" = "$want" ] && grep -aq "run done: $want images on 2 ranks" "$tmp/tty.txt"; then ok
  else bad "2 ranks on a terminal: live line's total '$total', whole job $want: $(grep -a 'run' "$tmp/tty.txt" | tail -2 | tr '\n' '|')"; fi
fi
# every rank's device fails: the job ends, non-zero, with a rank's message (the CPU backend
# behind the forwarding test plugin tests/stubs/faulty_plugin.c)
timeout 120 mpirun --oversubscribe -np 2 -x CNNELM_FAULTY_FAIL_AFTER=15 "$CNNELM" "${run[@]}" \
  -s "plugin_path=\"$(dirname "$CNNELM")/../tests/stubs\"" -s 'workers=({backend="faulty";threads=1;})' -o "$tmp/fail.model" >"$tmp/out" 2>&1
code=$?
if [ $code != 0 ] && [ $code != 124 ] && grep -q "cnnelm: error: rank [01]: .*injected device failure" "$tmp/out" && [ ! -e "$tmp/fail.model" ]; then ok; else bad "failing ranks: exit $code: $(head -3 "$tmp/out")"; fi
# one rank's device hangs in an op (tests/stubs/buggy_plugin.c): its watchdog ends the whole
# job within workers[i].op_timeout, naming the op; the other rank does not wait forever
STUBS="$(dirname "$CNNELM")/../tests/stubs"
if [ -f "$STUBS/libcnnelm-buggyhang.so" ]; then
  start=$(date +%s)
  timeout 120 mpirun --oversubscribe -np 2 -x CNNELM_BUGGY_HANG_RANK=1 "$CNNELM" "${run[@]}" -s "plugin_path=\"$STUBS\"" \
    -s train.chunk=50 -s 'workers=({backend="buggyhang";op_timeout=4;})' -o "$tmp/hang.model" >"$tmp/out" 2>&1
  code=$?
  took=$(( $(date +%s) - start ))
  if [ $code != 0 ] && [ $code != 124 ] && [ $took -lt 60 ] && grep -q "cnnelm: error: rank 1: .*pool_forward .*did not return within 4 s" "$tmp/out" && [ ! -e "$tmp/hang.model" ]; then ok; else bad "hung rank: exit $code after $took s: $(head -3 "$tmp/out")"; fi
fi
# rank 0 stopped (SIGSTOP) once it has dealt the partitions: rank 1's wait for the reduce's
# collectives (or its send of its facts) lasts at most CNNELM_MPI_TIMEOUT, then the job ends
# with a message
rm -f "$tmp/out"
loud=("${run[@]:0:1}" "${run[@]:2}") # without -q: rank 0's map line
timeout 120 mpirun --oversubscribe -np 2 -x CNNELM_MPI_TIMEOUT=5 "$CNNELM" "${loud[@]}" -s train.partitions=2 \
  -s train.iterations=2 -s train.learning_rate=0.001 -s 'train.reduce="refit"' -o "$tmp/stop.model" >"$tmp/out" 2>&1 &
mpid=$!
for _ in $(seq 1200); do grep -qE "^[0-9:]+ (\[[^]]*\] )?map: " "$tmp/out" 2>/dev/null && break; sleep 0.05; done
rank0=""
for p in $(pgrep -P "$mpid") $(for c in $(pgrep -P "$mpid"); do pgrep -P "$c"; done); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=0" && rank0=$p
done
if [ -n "$rank0" ]; then
  kill -STOP "$rank0"
  start=$(date +%s)
  # a stopped process cannot act on the launcher's SIGTERM: continued once rank 1 has spoken
  for _ in $(seq 1200); do
    grep -q "cnnelm: error: rank 1: " "$tmp/out" 2>/dev/null && break
    kill -0 "$mpid" 2>/dev/null || break
    sleep 0.05
  done
  took=$(( $(date +%s) - start ))
  kill -CONT "$rank0" 2>/dev/null
  wait "$mpid"
  code=$?
  kill -KILL "$rank0" 2>/dev/null
  if [ $code != 0 ] && [ $code != 124 ] && [ $took -lt 30 ] && [ ! -e "$tmp/stop.model" ] &&
     grep -qE "cnnelm: error: rank 1: .*(rank 0 took nothing of partition 2's [a-z]+ for 5 s|(reduce|broadcast) of .* did not complete in 5 s)" "$tmp/out"; then
    ok
  else
    bad "stopped rank 0: exit $code after $took s: $(grep -m3 -E 'error|rank 1' "$tmp/out")"
  fi
else
  wait "$mpid"
  echo "SKIP: rank 0 of the MPI job not found (it finished first?): $(tail -2 "$tmp/out")"
fi
echo "mpi: $passed passed, $failed failed"
[ "$failed" = 0 ]
