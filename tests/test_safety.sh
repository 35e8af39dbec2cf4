#!/usr/bin/env bash
# Safety tests of the command line (issue 15): outputs are regular files or nothing, nothing is
# lost or half-written, stale checkpoints are not reused, hostile data files are clear errors.
# Small generated IDX data sets keep every run to a second or two.
# usage: test_safety.sh PATH/TO/cnnelm SOURCE_DIR
set -u
CNNELM=$1
SRC=$2
tmp=$(mktemp -d)
cleanup() {
  for m in "$tmp/ro" "$tmp/full"; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { echo "SKIP: $*"; }

# expect CODE PATTERN -- command...: exit status CODE and stderr+stdout matching PATTERN
expect() {
  local code=$1 pattern=$2
  shift 3
  "$@" >"$tmp/out" 2>&1
  local got=$?
  if [ "$got" != "$code" ]; then
    bad "$* exited $got, expected $code: $(head -3 "$tmp/out")"
  elif [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/out"; then
    bad "$*: output lacks /$pattern/: $(head -3 "$tmp/out")"
  else
    ok
  fi
}

# idx DIR N [BAD_LABEL]: raw IDX images (N of 28x28, random) and labels (i % 4; with BAD_LABEL,
# example 7 gets that label) as DIR/img and DIR/lab
idx() {
  python3 - "$@" <<'PY'
import os, random, struct, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
rng = random.Random(n)
with open(os.path.join(d, "img"), "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28))
    f.write(bytes(rng.randrange(256) for _ in range(n * 784)))
labels = [i % 4 for i in range(n)]
if len(sys.argv) > 3:
    labels[7] = int(sys.argv[3])
with open(os.path.join(d, "lab"), "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(labels))
PY
}

cfg="$SRC/conf/paper-fashion.cfg"
# data D: the -s settings that train and test on the generated set in D
data() {
  echo -s "data.train_images=\"$1/img\"" -s "data.train_labels=\"$1/lab\"" \
       -s "data.test_images=\"$1/img\"" -s "data.test_labels=\"$1/lab\""
}
idx "$tmp/d" 200
# shellcheck disable=SC2207
D=($(data "$tmp/d"))
one='workers=({backend="cpu";threads=1;})'
base=(-q -c "$cfg" "${D[@]}" -s "$one")

expect 0 "model saved to" -- "$CNNELM" train "${base[@]}" -o "$tmp/ok.model"

# ---- 6: a stray training label is an error naming the file, the example and the value ----
idx "$tmp/badlab" 200 200
expect 1 "badlab/lab: label 200 of example 7 is out of range" -- "$CNNELM" train "${base[@]}" $(data "$tmp/badlab") -o "$tmp/x.model"
# ---- 6: zero-mean kernels of size 1 would all be 0 ----
expect 1 "model.kernel = 1" -- "$CNNELM" train "${base[@]}" -s model.kernel=1 -o "$tmp/x.model"
expect 0 "model saved" -- "$CNNELM" train "${base[@]}" -s model.kernel=1 -s 'model.init="uniform"' -o "$tmp/x.model"

# ---- 1: outputs are a regular file or nothing ----
if mknod "$tmp/null" c 1 3 2>/dev/null; then
  expect 1 "null: is a character device, not a regular file" -- "$CNNELM" train "${base[@]}" -o "$tmp/null"
  expect 1 "null: is a character device" -- "$CNNELM" train "${base[@]}" -o "$tmp/y.model" --report "$tmp/null"
  expect 1 "null: is a character device" -- "$CNNELM" eval -q -c "$cfg" "${D[@]}" -m "$tmp/ok.model" --report "$tmp/null"
  expect 1 "null: is a character device" -- "$CNNELM" average -o "$tmp/null" "$tmp/ok.model"
  if [ -c "$tmp/null" ]; then ok; else bad "the character device was replaced"; fi
else
  skip "mknod not permitted: the character-device output cases"
fi
mkfifo "$tmp/fifo"
expect 1 "fifo: is a FIFO" -- timeout 20 "$CNNELM" train "${base[@]}" -o "$tmp/fifo"
if [ -p "$tmp/fifo" ]; then ok; else bad "the FIFO was replaced"; fi
expect 1 "is a directory" -- "$CNNELM" train "${base[@]}" -o "$tmp"
# a symbolic link is written through: the link stays, its target gets the model
ln -s "$tmp/real.model" "$tmp/link.model"
expect 0 "model saved" -- "$CNNELM" train "${base[@]}" -o "$tmp/link.model"
if [ -L "$tmp/link.model" ] && cmp -s "$tmp/real.model" "$tmp/ok.model"; then ok; else bad "symlinked output: the link was replaced or the target not written"; fi
# extend never writes over the data it reads, whatever the spelling of the directory
mkdir -p "$tmp/src"
gzip -c "$tmp/d/img" >"$tmp/src/train-images-idx3-ubyte.gz"
gzip -c "$tmp/d/lab" >"$tmp/src/train-labels-idx1-ubyte.gz"
S=(-s "data.train_images=\"$tmp/src/train-images-idx3-ubyte.gz\"" -s "data.train_labels=\"$tmp/src/train-labels-idx1-ubyte.gz\""
   -s 'data.test_images=""' -s 'data.test_labels=""' -s 'data.extend=["gaussian"]')
before=$(cksum <"$tmp/src/train-images-idx3-ubyte.gz")
expect 1 "is the input .*train-images-idx3-ubyte.gz: refusing to overwrite it" -- "$CNNELM" extend -q -c "$cfg" "${S[@]}" -o "$tmp/src"
ln -s "$tmp/src" "$tmp/src-link"
expect 1 "refusing to overwrite it" -- "$CNNELM" extend -q -c "$cfg" "${S[@]}" -o "$tmp/src-link/."
if [ "$(cksum <"$tmp/src/train-images-idx3-ubyte.gz")" = "$before" ]; then ok; else bad "extend overwrote its own input"; fi
expect 0 "train-images-idx3-ubyte.gz" -- "$CNNELM" extend -q -c "$cfg" "${S[@]}" -o "$tmp/src-out"
# plot: gnuplot exiting 0 with a cut-off file (a full disk) is an error and keeps the earlier figure
ft=(-s train.iterations=1 -s train.batch=100 -s train.chunk=100 -s train.learning_rate=0.05)
expect 0 "" -- "$CNNELM" train "${base[@]}" "${ft[@]}" -o "$tmp/ft.model" --report "$tmp/ft.json"
printf '\211PNG\r\n\032\nearlier figure' >"$tmp/fig.png"
mkdir -p "$tmp/fakebin"
cat >"$tmp/fakebin/gnuplot" <<'SH'
#!/bin/sh
# writes 5 bytes of a PNG to the output gnuplot was given, then exits 0 (as on a full disk)
out=$(sed -n "s/^set output '\(.*\)'$/\1/p" | head -1)
printf '\211PNG\r' >"$out"
exit 0
SH
chmod +x "$tmp/fakebin/gnuplot"
before=$(cksum <"$tmp/fig.png")
expect 1 "fig.png: gnuplot exited 0 but wrote an incomplete PNG" -- env PATH="$tmp/fakebin:$PATH" "$CNNELM" plot "$tmp/ft.json" -o "$tmp/fig.png"
if [ "$(cksum <"$tmp/fig.png")" = "$before" ]; then ok; else bad "plot truncated the earlier figure"; fi
if [ -z "$(ls -A "$tmp" | grep '^\.fig.png.tmp')" ]; then ok; else bad "plot left its temporary file"; fi
printf '#!/bin/sh\ncat >/dev/null; echo "gnuplot: cannot write"; exit 1\n' >"$tmp/fakebin/gnuplot"
expect 1 "gnuplot failed \(exit status 1\)" -- env PATH="$tmp/fakebin:$PATH" "$CNNELM" plot "$tmp/ft.json" -o "$tmp/fig.png"
if [ "$(cksum <"$tmp/fig.png")" = "$before" ]; then ok; else bad "a failed gnuplot changed the earlier figure"; fi
if command -v gnuplot >/dev/null; then
  expect 0 "plot written" -- "$CNNELM" plot "$tmp/ft.json" -o "$tmp/fig.png"
fi
if mknod "$tmp/dev.png" c 1 3 2>/dev/null; then
  expect 1 "dev.png: is a character device" -- "$CNNELM" plot "$tmp/ft.json" -o "$tmp/dev.png"
fi

# ---- 2: unwritable outputs are found before training; a failed final save keeps the model ----
: >"$tmp/plain"
"$CNNELM" train -c "$cfg" "${D[@]}" -s "$one" -o "$tmp/plain/x.model" >"$tmp/out" 2>&1
if [ $? = 1 ] && grep -q "^cnnelm: error: -o: .*plain/x.model: .*Not a directory" "$tmp/out" &&
   ! grep -q "ELM fit" "$tmp/out"; then ok; else bad "an unwritable -o was not refused before training: $(tail -2 "$tmp/out")"; fi
"$CNNELM" train -c "$cfg" "${D[@]}" -s "$one" -o "$tmp/z.model" --report "$tmp/plain/r.json" >"$tmp/out" 2>&1
if [ $? = 1 ] && grep -q "error: --report: .*Not a directory" "$tmp/out" && ! grep -q "ELM fit" "$tmp/out"; then ok; else bad "an unwritable --report was not refused before training: $(tail -2 "$tmp/out")"; fi
mounts=()
mkdir -p "$tmp/ro" "$tmp/full" "$tmp/ck"
if mount --bind -o ro "$tmp/ro" "$tmp/ro" 2>/dev/null; then
  mounts+=("$tmp/ro")
  "$CNNELM" train -c "$cfg" "${D[@]}" -s "$one" -o "$tmp/ro/x.model" >"$tmp/out" 2>&1
  if [ $? = 1 ] && grep -q "ro/x.model: cannot create: Read-only file system" "$tmp/out" && ! grep -q "ELM fit" "$tmp/out"; then ok; else bad "a read-only -o directory was not refused before training: $(tail -2 "$tmp/out")"; fi
  expect 1 "train.checkpoint_dir: .*Read-only file system" -- "$CNNELM" train "${base[@]}" -s "train.checkpoint_dir=\"$tmp/ro\"" -o "$tmp/x.model"
else
  skip "no read-only bind mount (needs root): the read-only directory case"
fi
if mount -t tmpfs -o size=64k tmpfs "$tmp/full" 2>/dev/null; then
  mounts+=("$tmp/full")
  # an empty probe file fits, the 300 kB model does not: the save fails at the end
  "$CNNELM" train "${base[@]}" -s "train.checkpoint_dir=\"$tmp/ck\"" -o "$tmp/full/x.model" >"$tmp/out" 2>&1
  kept=$(grep -oE "saved to [^ ]+ instead" "$tmp/out" | sed 's/saved to //; s/ instead//')
  if grep -q "full/x.model: cannot write: No space left on device" "$tmp/out" && [ -n "$kept" ] &&
     cmp -s "$kept" "$tmp/ok.model"; then ok; else bad "a failed final save lost the model: $(tail -2 "$tmp/out")"; fi
  if [ -z "$(ls -A "$tmp/full")" ]; then ok; else bad "the failed save left files behind: $(ls -A "$tmp/full")"; fi
else
  skip "no tmpfs mount (needs root): the full-disk save case"
fi
for m in "${mounts[@]}"; do umount "$m"; done

# ---- 3: checkpoints are reused only for exactly the same partition ----
p2=(-s train.partitions=2 -s "train.checkpoint_dir=\"$tmp/cks\"")
expect 1 "--resume reuses partitions saved in train.checkpoint_dir, which is not set" -- "$CNNELM" train "${base[@]}" --resume -o "$tmp/x.model"
expect 0 "model saved" -- "$CNNELM" train "${base[@]}" "${p2[@]}" -o "$tmp/l100.model"
if [ -s "$tmp/cks/seed1-fold1-part1of2.model.fingerprint" ]; then ok; else bad "no fingerprint beside the checkpoint"; fi
expect 0 "" -- "$CNNELM" train "${base[@]}" -s train.partitions=2 -s model.lambda=0.01 -o "$tmp/l001.model"
# a changed lambda: both retrained, the model is the fresh run's, not the old partitions'
resume=(train -c "$cfg" "${D[@]}" -s "$one" "${p2[@]}" --resume)
expect 0 "part1of2.model is not this run's partition 1, training again: model.lambda differs \(now 0.01; the checkpoint's 100\)" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/r.model"
if cmp -s "$tmp/r.model" "$tmp/l001.model"; then ok; else bad "resume after a lambda change gave another model than a fresh run"; fi
# the same settings again: reused
expect 0 "resumed from its checkpoint" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/r2.model"
if cmp -s "$tmp/r2.model" "$tmp/l001.model"; then ok; else bad "a resumed run differs from a fresh one"; fi
for change in 'model.init="uniform"' 'model.init="patches"' 'train.partitioning="contiguous"' 'train.iterations=1 -s train.learning_rate=0.01' 'train.sums="double"' 'data.augment=["hflip"]'; do
  key=${change%%=*}
  # shellcheck disable=SC2086
  expect 0 "training again: $key differs" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -s $change -o "$tmp/x.model"
  "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/x.model" >/dev/null 2>&1 # back to the base checkpoints
done
# whitened patches against plain ones (checkpoints of patches first)
"$CNNELM" "${resume[@]}" -s model.lambda=0.01 -s 'model.init="patches"' -o "$tmp/x.model" >/dev/null 2>&1
expect 0 "training again: model.whiten differs \(now 0\.10*1?; the checkpoint's none\)" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -s 'model.init="patches"' -s model.whiten=0.1 -o "$tmp/x.model"
"$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/x.model" >/dev/null 2>&1
# other training files (same names, new contents): retrained
idx "$tmp/d2" 220
cp "$tmp/d2/img" "$tmp/d/img.new" && cp "$tmp/d2/lab" "$tmp/d/lab.new"
expect 0 "training again: partition.examples differs|training again: data.train_images differs" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -s "data.train_images=\"$tmp/d/img.new\"" -s "data.train_labels=\"$tmp/d/lab.new\"" -o "$tmp/x.model"
"$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/x.model" >/dev/null 2>&1
cp "$tmp/d/img" "$tmp/img.keep"
printf '\377' | dd of="$tmp/d/img" bs=1 seek=100 conv=notrunc 2>/dev/null
expect 0 "training again: data.train_images differs" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/x.model"
cp "$tmp/img.keep" "$tmp/d/img"
# a corrupt checkpoint is said to be corrupt
printf 'X' | dd of="$tmp/cks/seed1-fold1-part2of2.model" bs=1 seek=300 conv=notrunc 2>/dev/null
expect 0 "checkpoint is corrupt, training again: .*part2of2.model: checksum mismatch" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/x.model"
rm "$tmp/cks/seed1-fold1-part1of2.model.fingerprint"
expect 0 "it has no fingerprint" -- "$CNNELM" "${resume[@]}" -s model.lambda=0.01 -o "$tmp/x.model"

# ---- 5: sizes from headers; more partitions than the data can fill ----
gzip -c "$tmp/d/lab" >"$tmp/lab.gz"
expect 1 "lab.gz: header says 200 labels \(200 bytes\), more than data.max_bytes \(199 bytes\) allows" -- "$CNNELM" train "${base[@]}" -s "data.train_labels=\"$tmp/lab.gz\"" -s data.max_bytes=199 -o "$tmp/x.model"
expect 0 "warning: train.partitions = 4 leaves about 50 training examples per partition, fewer than the model's 192 hidden units" -- "$CNNELM" train "${base[@]}" -s train.partitions=4 -o "$tmp/x.model"

# ---- 9: messages: one line, escaped, naming files and the real cause ----
"$CNNELM" train -c "$cfg" -s $'model.layers="6c\n\x1b[2J-2s"' >"$tmp/out" 2>&1
if [ "$(wc -l <"$tmp/out")" = 1 ] && grep -q '^cnnelm: error: -s "model.layers=\\"6c\\x0a\\x1b\[2J-2s\\"": ' "$tmp/out" &&
   ! grep -q $'\x1b' "$tmp/out"; then ok; else bad "an -s value with a newline and an escape: $(cat -A "$tmp/out" | head -3)"; fi
expect 1 "^cnnelm: error: -s model.kernel=0: model.kernel = 0 is out of range" -- "$CNNELM" train -c "$cfg" -s model.kernel=0
python3 - "$tmp/one" <<'PY'
import os, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True)
open(d + "/img", "wb").write(struct.pack(">IIII", 0x803, 50, 28, 28) + bytes(range(50)) * 784)
open(d + "/lab", "wb").write(struct.pack(">II", 0x801, 50) + bytes([0] * 50))
PY
expect 1 "one/lab: the training labels have a single class \(every label is 0\)" -- "$CNNELM" train "${base[@]}" $(data "$tmp/one") -o "$tmp/x.model"
# a corrupt gzip: the message names the file, not zlib's <fd:N>
gzip -c "$tmp/d/img" >"$tmp/bad.gz"
size=$(stat -c %s "$tmp/bad.gz")
printf '\xff\xff\xff\xff\xff\xff\xff\xff' | dd of="$tmp/bad.gz" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
"$CNNELM" train "${base[@]}" -s "data.train_images=\"$tmp/bad.gz\"" -o "$tmp/x.model" >"$tmp/out" 2>&1
if grep -q "bad.gz: " "$tmp/out" && ! grep -q "<fd:" "$tmp/out"; then ok; else bad "gzip error: $(head -2 "$tmp/out")"; fi

# ---- 8: a stopped MPI rank does not hang the job: rank 0's wait is bounded ----
if command -v mpirun >/dev/null && "$CNNELM" --version >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader
  # rank 1 is stopped once rank 0 has loaded its data (all ranks past MPI_Init; only rank 0
  # prints progress), before rank 1 sends its model
  timeout 120 mpirun --oversubscribe -np 2 -x CNNELM_MPI_TIMEOUT=3 "$CNNELM" train -c "$cfg" "${D[@]}" \
    -s "$one" -s train.partitions=2 -s train.iterations=8 -s train.batch=50 -s train.chunk=50 \
    -s train.learning_rate=0.01 -o "$tmp/mpi.model" >"$tmp/mpi.out" 2>&1 &
  mpid=$!
  for _ in $(seq 1200); do
    grep -q "load data" "$tmp/mpi.out" 2>/dev/null && break  # rank 0 has its data: every rank is past MPI_Init
    sleep 0.05
  done
  rank1=""
  for _ in $(seq 200); do
    for p in $(pgrep -P "$mpid" 2>/dev/null) $(for c in $(pgrep -P "$mpid" 2>/dev/null); do pgrep -P "$c"; done); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then rank1=$p; fi
    done
    [ -n "$rank1" ] && break
    sleep 0.05
  done
  if [ -n "$rank1" ]; then
    kill -STOP "$rank1"
    # rank 0 gives up after CNNELM_MPI_TIMEOUT and aborts the job; a stopped process cannot
    # act on the launcher's SIGTERM until it is continued, so it is continued once rank 0 spoke
    for _ in $(seq 1200); do
      grep -q "sent nothing" "$tmp/mpi.out" 2>/dev/null && break
      kill -0 "$mpid" 2>/dev/null || break
      sleep 0.05
    done
    kill -CONT "$rank1" 2>/dev/null
    wait "$mpid"
    rc=$?
    kill -KILL "$rank1" 2>/dev/null
    if [ "$rc" = 0 ]; then
      skip "rank 1 finished before it could be stopped"
    # stopped before it sent its facts, rank 1 is named; stopped later, inside the reduce's
    # collective sums, no rank can be named, only the wait that ran out
    elif [ "$rc" != 124 ] && grep -qE "rank 1 sent nothing for 3 s|did not complete in 3 s: a rank is stopped" "$tmp/mpi.out"; then ok; else bad "a stopped rank: exit $rc: $(grep -E "error|sent|stopped|did not" "$tmp/mpi.out" | head -3 | tr "\n" "|")"; fi
  else
    wait "$mpid"
    skip "rank 1 of the MPI job not found (it finished first?): $(tail -2 "$tmp/mpi.out")"
  fi
else
  skip "no mpirun: the stopped-rank case"
fi

# ---- 8: SIGINT/SIGTERM during training: the last complete iteration is kept, and said ----
# (a script's background job ignores SIGINT: python restores the default, then runs cnnelm)
# (timeout --foreground passes a signal on to cnnelm once; without it timeout signals cnnelm and
# then its whole process group, and a second SIGINT that arrives apart quits at once, by design)
dfl=(python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])')
# wait_for FILE PATTERN: up to 60 s for a line matching PATTERN in FILE
wait_for() {
  for _ in $(seq 1200); do grep -qE -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}
"${dfl[@]}" timeout --foreground 120 "$CNNELM" train -c "$cfg" "${D[@]}" -s "$one" -s train.iterations=1000 -s train.batch=50 \
  -s train.learning_rate=0.001 -o "$tmp/int.model" --report "$tmp/int.json" >"$tmp/int.out" 2>&1 &
ipid=$!
wait_for "$tmp/int.out" "iteration 2/1000" && kill -INT "$ipid"
wait "$ipid"
rc=$?
if [ "$rc" = 130 ] &&
   grep -qE "^cnnelm: error: interrupted at iteration [0-9]+ of 1000 \(SIGINT\): the model of iteration [0-9]+ was saved to $tmp/int.model" "$tmp/int.out"; then
  ok
else
  bad "SIGINT during fine-tuning: exit $rc: $(grep -m2 -E 'error|interrupt' "$tmp/int.out")"
fi
its=$("$CNNELM" info "$tmp/int.model" 2>&1 | sed -n 's/^iterations *\([0-9][0-9]*\) .*/\1/p')
if [ -n "$its" ] && [ "$its" -ge 1 ]; then ok; else bad "the model kept on SIGINT: iterations '$its': $("$CNNELM" info "$tmp/int.model" 2>&1 | head -2)"; fi
if [ ! -e "$tmp/int.json" ]; then ok; else bad "an interrupted run wrote its report"; fi
left=$(find "$tmp" -name '.*.tmp*')
if [ -z "$left" ]; then ok; else bad "temporary files left after SIGINT: $left"; fi

# several partitions: the finished ones stay checkpointed, --resume continues
mkdir -p "$tmp/icks"
part=(train -c "$cfg" "${D[@]}" -s "$one" -s train.partitions=4 -s train.iterations=100 -s train.batch=50
      -s train.learning_rate=0.001 -s "train.checkpoint_dir=\"$tmp/icks\"" -o "$tmp/ip.model")
"${dfl[@]}" timeout --foreground 120 "$CNNELM" "${part[@]}" >"$tmp/ip.out" 2>&1 &
ipid=$!
wait_for "$tmp/ip.out" "partition 1/4 .*trained in" && kill -INT "$ipid"
wait "$ipid"
rc=$?
if [ "$rc" = 130 ] && [ ! -e "$tmp/ip.model" ] &&
   grep -qE "interrupted by SIGINT: partitions? [0-9, ]+ of 4 (was|were) finished and checkpointed in $tmp/icks; the same command with --resume continues with the others; nothing was saved to $tmp/ip.model" "$tmp/ip.out"; then
  ok
else
  bad "SIGINT with 4 partitions: exit $rc: $(grep -E "error|interrupt|warning" "$tmp/ip.out" | tail -3 | tr "\n" " ")"
fi
expect 0 "partition 1/4 .*resumed from its checkpoint" -- "$CNNELM" "${part[@]}" --resume

# without fine-tuning (one pass) SIGTERM ends it between chunks, and nothing is written
python3 - "$tmp/big" <<'PY'
import os, struct, sys
n = 40000
os.makedirs(sys.argv[1], exist_ok=True)
with open(os.path.join(sys.argv[1], "img"), "wb") as f:
    f.write(struct.pack(">IIII", 0x803, n, 28, 28) + os.urandom(n * 784))
with open(os.path.join(sys.argv[1], "lab"), "wb") as f:
    f.write(struct.pack(">II", 0x801, n) + bytes(i % 4 for i in range(n)))
PY
# shellcheck disable=SC2046
timeout --foreground 120 "$CNNELM" train -c "$cfg" $(data "$tmp/big") -s "$one" -o "$tmp/big.model" --report "$tmp/big.json" \
  >"$tmp/big.out" 2>&1 &
ipid=$!
wait_for "$tmp/big.out" "^[0-9:]+ model " && kill -TERM "$ipid"
wait "$ipid"
rc=$?
if [ "$rc" = 143 ] && [ ! -e "$tmp/big.model" ] && [ ! -e "$tmp/big.json" ] &&
   grep -q "^cnnelm: error: interrupted by SIGTERM in iteration 0 (the ELM fit): nothing was saved to $tmp/big.model" "$tmp/big.out"; then
  ok
else
  bad "SIGTERM without fine-tuning: exit $rc: $(grep -m2 -E 'error|interrupt' "$tmp/big.out")"
fi
rm -rf "$tmp/big"

echo "safety: $passed passed, $failed failed"
[ "$failed" = 0 ]
